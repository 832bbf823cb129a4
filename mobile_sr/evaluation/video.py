"""Rate-distortion of video delivery methods: what Y-PSNR a viewer gets for how many bits.

A *method* is what happens to a sequence of reference frames between the server and the phone's screen::

    reference -> [downscale, rounded to 8 bits] -> encode/decode at a CRF -> [upscale, tiled] -> scored

- ``full``: the reference itself is encoded (no downscaling, no upscaling): the anchor of every BD-rate;
- ``bicubic-bicubic``: MATLAB-bicubic down, MATLAB-bicubic up;
- ``bicubic-sr``: MATLAB-bicubic down, a generic upscaler (default ``elsr``);
- ``learned-sr``: a pair's own downscaler and upscaler (default ``rescale``);
- ``finetuned-sr``: bicubic down, and per rate point the upscaler fine-tuned on that rate's decoded frames
  (NAS): the fine-tuned model is streamed with the video, so its bytes are added to the rate;
- ``codec-sr``: bicubic down, the compression-aware upscaler ``elsr-h264`` (trained on x264-decoded LR).

Scores: Y-PSNR and SSIM-Y (BT.601, :mod:`mobile_sr.metrics`) of each decoded, upscaled frame against the
reference, averaged over frames, with **no border crop** for every method, ``full`` included. The image
protocol crops ``scale`` pixels because published MATLAB LR files treat the border arbitrarily; here every
method makes its own LR and the viewer sees the whole frame, so a crop would only hide the downscaled
methods' edge errors and flatter them against ``full``.

Rates: the bits of the video stream's packets (:func:`mobile_sr.data.video.roundtrip`, container overhead
excluded) over the clip's duration at ``fps``, plus the bits of a model that is sent with the video.

BD-rate (Bjontegaard, VCEG-M33) is the average rate difference at equal Y-PSNR over the overlap of the two
curves' PSNR ranges, computed by the maintained ``bjontegaard`` package with Akima interpolation (the
JCTVC CTC sheet uses PCHIP; Akima follows the curves more closely, Herglotz et al. 2022). Curves that do
not overlap in PSNR have no BD-rate: it is reported as null with the reason, never as a number.

The convex hull is what per-title encoding ships: for each rate the better of full resolution and the best
downscaled method. It is the upper envelope of the two RD curves (each joined linearly in log rate) over a
wider sweep, so it is never below ``full`` at any of ``full``'s rate points.

This module imports no training code: fine-tuning arrives as an :data:`Adapt` callable.
"""

from __future__ import annotations

import importlib.util
import io
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from ..data.imresize import imresize, quantize
from ..data.video import PRESET, VideoError, check_codec, even_crop, kbps_of, roundtrip
from ..inference import Upscale, upscale_tiled
from ..metrics import psnr, ssim
from ..models import MODELS, Model, ModelError, load_model
from ..models.deploy import deploy
from .pipeline import Downscale, bicubic

SCHEMA = Path(__file__).with_name("video_rd.schema.json")

METHODS = ("full", "bicubic-bicubic", "bicubic-sr", "learned-sr", "finetuned-sr", "codec-sr")
CODEC_SR_MODEL = "elsr-h264"
DEFAULT_UPSCALER = "elsr"
DEFAULT_PAIR = "rescale"

# Rate points of x264 (preset medium, 25 fps) on Vid4 at full resolution: CRF 32 gives about 32 dB Y-PSNR
# on city (31.9) and CRF 47 about 24 dB (23.5 at 48), the low-rate regime. Each +3 CRF is about a
# 1.4x lower rate.
FULL_CRFS = (32, 35, 38, 41, 44, 47)
# The downscaled video at the same CRF has 1/scale^2 of the pixels and about 3-4x fewer bits at x2; x264's rate
# roughly halves per +6 CRF, so CRF - 10 puts the downscaled curves at about the same kbps as full's.
DOWN_CRF_OFFSET = 10
# The hull's wider sweep: full from about 38 dB (CRF 20 on city: 37.6) down to 24 dB.
HULL_CRFS = (20, 23, 26, 29, *FULL_CRFS)
FULL_SPAN_DB = (24.0, 32.0)  # what full should span on the main sweep (checked, reported)
CRF_RANGE = (0, 51)  # x264 and x265; SVT-AV1 takes 1..63 and refuses what it cannot use

Frames = list[torch.Tensor]  # (3, H, W) uint8 RGB
Adapt = Callable[[Model, Frames, Frames], tuple[Model, int]]  # (upscaler, decoded LR, HR) -> (tuned model, bytes sent)


class CompareError(ValueError):
    """A comparison that cannot run as asked (an unknown method, a bad CRF list, too few frames): one line."""


@dataclass(frozen=True)
class RDPoint:
    crf: int
    kbps: float  # video stream plus any model sent with it
    psnr_y: float
    ssim_y: float
    model_bytes: int = 0
    # A method that adapts its model per rate point: the same stream with the model as shipped (no update sent),
    # the alternative :func:`choose_updates` weighs the update against.
    base_kbps: float | None = None
    base_psnr_y: float | None = None
    base_ssim_y: float | None = None

    @property
    def base(self) -> RDPoint | None:
        if self.base_kbps is None or self.base_psnr_y is None or self.base_ssim_y is None:
            return None
        return RDPoint(self.crf, self.base_kbps, self.base_psnr_y, self.base_ssim_y)

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kbps": self.kbps, "psnr_y": self.psnr_y, "ssim_y": self.ssim_y, "crf": self.crf}
        if self.model_bytes:
            doc["model_bytes"] = self.model_bytes
        if self.base is not None:
            doc["without_update"] = {"kbps": self.base_kbps, "psnr_y": self.base_psnr_y, "ssim_y": self.base_ssim_y}
        return doc


@dataclass
class Method:
    """One way of delivering the frames. ``downscale`` None is full resolution (and then ``upscale`` is None);
    ``adapt`` re-tunes ``model`` (the upscaler's Model) on each rate point's decoded frames."""

    name: str
    downscale: Downscale | None = None
    upscale: Upscale | None = None
    model: Model | None = None
    adapt: Adapt | None = None
    label: str = ""

    @property
    def full(self) -> bool:
        return self.downscale is None


def default_methods(scale: int = 2, finetune: bool = False) -> tuple[str, ...]:
    """Every method this installation can run: ``codec-sr`` where ``elsr-h264`` ships at this scale,
    ``finetuned-sr`` only with a fine-tuning budget."""
    names = ["full", "bicubic-bicubic", "bicubic-sr", "learned-sr"]
    if finetune:
        names.append("finetuned-sr")
    if CODEC_SR_MODEL in MODELS and MODELS[CODEC_SR_MODEL].weights_path(scale).exists():
        names.append("codec-sr")
    return tuple(names)


def bicubic_down(scale: int) -> Downscale:
    """MATLAB-bicubic downscaling (what ``bicubic`` the built-in downscaler does), in float64 like imresize."""
    return lambda hr: imresize(hr.double(), 1 / scale).float()


def bicubic_up(scale: int) -> Upscale:
    return lambda lr: bicubic(lr, scale)


def _upscaler(spec: str, scale: int) -> Model:
    model = load_model(spec, scale)
    if model.role == "downscaler":
        raise ModelError(f"{spec}: {model.name} is a downscaler, not an upscaler")
    if model.scale != scale:
        raise ModelError(f"{spec}: a x{model.scale} model, the comparison is x{scale}")
    return model


def build_methods(names: Sequence[str], scale: int = 2, upscaler: str = DEFAULT_UPSCALER, pair: str = DEFAULT_PAIR,
                  adapt: Adapt | None = None) -> list[Method]:
    """The methods named, in ``METHODS`` order; CompareError / ModelError (one line) for what cannot be built.

    ``full`` is always included: every BD-rate is against it."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise CompareError(f"unknown method {unknown[0]!r} (choose from: {', '.join(METHODS)})")
    wanted = {"full", *names}
    if "finetuned-sr" in wanted and adapt is None:
        raise CompareError("finetuned-sr needs a fine-tuning budget (--finetune-minutes)")
    if "codec-sr" in wanted and CODEC_SR_MODEL not in MODELS:
        raise CompareError(f"codec-sr needs the built-in {CODEC_SR_MODEL}, which this version does not have")
    down = bicubic_down(scale)
    out: list[Method] = []
    for name in METHODS:
        if name not in wanted:
            continue
        if name == "full":
            out.append(Method(name, label="full resolution"))
        elif name == "bicubic-bicubic":
            out.append(Method(name, down, bicubic_up(scale), label="bicubic down, bicubic up"))
        elif name in ("bicubic-sr", "finetuned-sr", "codec-sr"):
            spec = CODEC_SR_MODEL if name == "codec-sr" else upscaler
            model = _upscaler(spec, scale)
            if model.downscaler is not None and name != "codec-sr":
                raise CompareError(f"--upscaler {upscaler}: a pair; name a pair with --pair (learned-sr)")
            label = f"bicubic down, {model.name}" + (" fine-tuned per rate" if name == "finetuned-sr" else "")
            out.append(Method(name, down, deploy(model).upscaler, model=model,
                              adapt=adapt if name == "finetuned-sr" else None, label=label))
        elif name == "learned-sr":
            model = load_model(pair, scale)
            if model.role != "pair":
                raise CompareError(f"--pair {pair}: {model.name} is an {model.role}, not a pair")
            if model.scale != scale:
                raise ModelError(f"--pair {pair}: a x{model.scale} pair, the comparison is x{scale}")
            d = deploy(model)
            out.append(Method(name, d.downscaler, d.upscaler, model=model, label=f"{model.name} pair"))
    return out


def crop_reference(frames: Frames, scale: int) -> Frames:
    """Crop each frame (top-left kept) to sides that are multiples of ``2 * scale``: the LR then has even sides,
    as yuv420p needs, and the full-resolution video is the same picture as the downscaled ones."""
    h, w = frames[0].shape[-2:]
    if min(even_crop(frames[0], scale).shape[-2:]) == 0:
        raise CompareError(f"frames of {w}x{h} are too small to compare at x{scale}")
    return [even_crop(f, scale) for f in frames]


def _float(frame: torch.Tensor) -> torch.Tensor:
    return frame.float().div(255)


def _u8(img: torch.Tensor) -> torch.Tensor:
    return img.clamp(0, 1).mul(255).round().to(torch.uint8)


def low_res(method: Method, ref: Frames) -> Frames:
    """The 8-bit LR frames the server encodes (a learned downscaler never gets to send floats)."""
    if method.downscale is None:
        return ref
    with torch.no_grad():
        return [_u8(quantize(method.downscale(_float(f)[None])[0])) for f in ref]


def reconstruct(upscale: Upscale, decoded: Frames, scale: int, tile: int | None = None) -> list[torch.Tensor]:
    """Upscale each decoded frame through :func:`inference.upscale_tiled`, as evaluation's Pipeline does."""
    with torch.no_grad():
        return [upscale_tiled(upscale, _float(f), scale, tile=tile) for f in decoded]


def score(out: Sequence[torch.Tensor], ref: Frames, ssim_every: int = 1) -> tuple[float, float]:
    """Mean over frames of Y-PSNR (every frame) and SSIM-Y (every ``ssim_every``-th frame from the first), no
    border crop; ``out`` float in [0, 1] or uint8."""
    ps, ss = [], []
    for i, (o, r) in enumerate(zip(out, ref, strict=True)):
        o = _float(o) if o.dtype == torch.uint8 else o
        rf = _float(r)
        ps.append(psnr(o, rf, crop_border=0, test_y_channel=True))
        if i % ssim_every == 0:
            ss.append(ssim(o, rf, crop_border=0, test_y_channel=True))
    return sum(ps) / len(ps), sum(ss) / len(ss)


@dataclass
class Setup:
    """What every rate point of a comparison shares."""

    scale: int = 2
    codec: str = "h264"
    fps: Fraction = Fraction(25)
    preset: str = PRESET
    threads: int = 0  # x264 threads (0: x264 decides; 1 for a quiet machine; see data.video on determinism)
    ssim_every: int = 1  # SSIM-Y of every k-th frame only: metrics.ssim costs ~2 s a 704x576 frame on one core
    tile: int | None = None  # LR tile side of the upscaler (None: one pass per frame)


def rd_point(method: Method, ref: Frames, crf: int, setup: Setup, lr: Frames | None = None) -> RDPoint:
    """One rate point of ``method``: encode at ``crf``, decode, reconstruct, score against ``ref``."""
    lr = low_res(method, ref) if lr is None else lr
    decoded, bits = roundtrip(lr, setup.codec, crf=crf, fps=setup.fps, preset=setup.preset, threads=setup.threads)
    if method.full:
        return RDPoint(crf, kbps_of(bits, len(ref), setup.fps), *score(decoded, ref, setup.ssim_every))
    assert method.upscale is not None
    p, s = score(reconstruct(method.upscale, decoded, setup.scale, setup.tile), ref, setup.ssim_every)
    kbps = kbps_of(bits, len(ref), setup.fps)
    if method.adapt is None:
        return RDPoint(crf, kbps, p, s)
    assert method.model is not None
    tuned, model_bytes = method.adapt(method.model, decoded, ref)
    tp, ts = score(reconstruct(deploy(tuned).upscaler, decoded, setup.scale, setup.tile), ref, setup.ssim_every)
    return RDPoint(crf, kbps_of(bits + 8 * model_bytes, len(ref), setup.fps), tp, ts, model_bytes, kbps, p, s)


def choose_updates(points: Sequence[RDPoint]) -> list[RDPoint]:
    """Per rate point of an adapting method, send the model update only where it pays for its bits.

    The server has both outcomes of each point: the stream with the update (higher PSNR, more bits) and without
    it (the model as shipped). Without-update points form a curve, joined linearly in log rate (extended along
    its end segments); an update is kept where its point lies above that curve, i.e. where its PSNR is more than
    the same bits would buy as video. Elsewhere the point is the stream alone. Points without an alternative
    (measured with a budget-free model) are kept as they are."""
    bases = sorted((p.base for p in points if p.base is not None), key=lambda q: q.kbps)
    curve = [(math.log10(q.kbps), q.psnr_y) for q in monotone(bases)]
    out = []
    for p in points:
        base = p.base
        if base is None or len(curve) < 2:
            out.append(p)
            continue
        x = math.log10(p.kbps)
        (x1, y1), (x2, y2) = next(((a, b) for a, b in zip(curve, curve[1:], strict=False) if x <= b[0]),
                                  (curve[-2], curve[-1]))
        worth = y1 + (y2 - y1) * (x - x1) / (x2 - x1)
        out.append(p if p.psnr_y > worth else
                   RDPoint(p.crf, base.kbps, base.psnr_y, base.ssim_y, 0, base.kbps, base.psnr_y, base.ssim_y))
    return out


def parse_crfs(text: str, option: str = "--crf") -> tuple[int, ...]:
    """``32,35,38`` or ``32-47:3`` (a range with a step) -> CRFs; CompareError for anything else."""
    text = text.strip()
    try:
        if "-" in text and "," not in text:
            span, _, step = text.partition(":")
            lo, hi = (int(x) for x in span.split("-"))
            crfs = tuple(range(lo, hi + 1, int(step) if step else 1))
        else:
            crfs = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise CompareError(f"{option} {text!r}: expected CRFs like 32,35,38 or 32-47:3") from None
    check_crfs(crfs, option)
    return crfs


def check_crfs(crfs: Sequence[int], option: str = "--crf") -> None:
    if len(crfs) < 2:
        raise CompareError(f"{option}: a curve needs at least 2 rate points, got {len(crfs)}")
    if len(set(crfs)) != len(crfs):
        raise CompareError(f"{option}: a CRF is repeated ({', '.join(map(str, crfs))})")
    bad = [c for c in crfs if not CRF_RANGE[0] <= c <= CRF_RANGE[1]]
    if bad:
        raise CompareError(f"{option}: CRF {bad[0]} is outside {CRF_RANGE[0]}..{CRF_RANGE[1]}")


def down_crfs_for(full_crfs: Sequence[int], offset: int = DOWN_CRF_OFFSET) -> tuple[int, ...]:
    """The downscaled methods' CRFs: ``full``'s less ``offset`` (so that the rates overlap), then on in ``full``'s
    smallest step up to just below ``full``'s last CRF. At one CRF the downscaled video sits several dB below
    ``full`` (Vid4 x2: 2-3 dB at CRF 37-47), so without the extension its curve would stop short of ``full``'s
    lowest PSNR, and BD-rate, which only integrates where both curves are, would leave out the bottom of the
    low-rate regime: the issue's trial range (full at 23-31 dB) needs the downscaled points down to ~23 dB."""
    crfs = sorted({max(CRF_RANGE[0], c - offset) for c in full_crfs})
    if len(crfs) >= 2:
        step = min(b - a for a, b in zip(crfs, crfs[1:], strict=False))
        while crfs[-1] + step < max(full_crfs) and crfs[-1] + step <= CRF_RANGE[1]:
            crfs.append(crfs[-1] + step)
    return tuple(crfs)


# ---- BD-rate ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BDResult:
    percent: float | None  # None: undefined (the reason says why)
    note: str | None = None
    overlap_db: tuple[float, float] | None = None


def monotone(points: Sequence[RDPoint]) -> list[RDPoint]:
    """The points of a curve on which PSNR rises with rate (sorted by rate): a point that costs more bits than
    another for no more PSNR is dominated, and an interpolator over PSNR needs strictly increasing PSNR."""
    out: list[RDPoint] = []
    for p in sorted(points, key=lambda q: q.kbps):
        if not out or p.psnr_y > out[-1].psnr_y:
            out.append(p)
    return out


def bd_rate(anchor: Sequence[RDPoint], test: Sequence[RDPoint], method: str = "akima",
            interval: tuple[float, float] | None = None) -> BDResult:
    """BD-rate of ``test`` against ``anchor`` in percent (negative: fewer bits at equal Y-PSNR), by ``bjontegaard``.

    Over the two curves' PSNR overlap, as Bjontegaard defines it, or over ``interval`` (dB), which must lie
    inside both: the package's interpolation of each curve, integrated there (:func:`common_interval`). Undefined
    (percent None, with the reason) when a curve has fewer than 2 usable points or the PSNR ranges do not overlap
    (or do not cover ``interval``): extrapolating a curve past its last point is what BD-rate must not do."""
    try:
        import bjontegaard as bd
    except ImportError as exc:  # it imports matplotlib at import time
        raise CompareError(f"BD-rate needs the bjontegaard package ({exc}): pip install bjontegaard matplotlib") from None
    a, t = monotone(anchor), monotone(test)
    if len(a) < 2 or len(t) < 2:
        return BDResult(None, f"fewer than 2 points with rising PSNR (anchor {len(a)}, test {len(t)})")
    lo, hi = max(a[0].psnr_y, t[0].psnr_y), min(a[-1].psnr_y, t[-1].psnr_y)
    if lo >= hi:
        return BDResult(None, f"no Y-PSNR overlap: anchor {a[0].psnr_y:.2f}-{a[-1].psnr_y:.2f} dB, "
                              f"test {t[0].psnr_y:.2f}-{t[-1].psnr_y:.2f} dB")
    if interval is not None:
        if not lo - 1e-9 <= interval[0] < interval[1] <= hi + 1e-9:
            return BDResult(None, f"the curves overlap at {lo:.2f}-{hi:.2f} dB, not over {interval[0]:.2f}-"
                                  f"{interval[1]:.2f}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its 'insufficient overlap' warning: the overlap is reported instead
        value, f_a, f_t = bd.bd_rate([p.kbps for p in a], [p.psnr_y for p in a], [p.kbps for p in t],
                                     [p.psnr_y for p in t], method=method, require_matching_points=False,
                                     interpolators=True)
    if interval is not None:  # the same interpolants (log10 rate over PSNR), integrated over the interval
        lo, hi = interval
        value = (10 ** ((f_t.integrate(lo, hi) - f_a.integrate(lo, hi)) / (hi - lo)) - 1) * 100
    value = float(value)
    if not math.isfinite(value):
        return BDResult(None, "the interpolated curves gave no finite BD-rate", (lo, hi))
    dropped = len(anchor) + len(test) - len(a) - len(t)
    note = f"{dropped} dominated point(s) left out" if dropped else None
    return BDResult(value, note, (lo, hi))


def common_interval(curves: Sequence[Sequence[RDPoint]]) -> tuple[float, float] | None:
    """The PSNR interval every curve covers (None if there is none). BD-rate over each pair's own overlap ranks
    methods over different intervals: a method whose curve reaches higher PSNR is charged for the expensive top
    it adds (fine-tuning lifts Vid4 city's CRF 22 point to 30.7 dB, where full resolution costs half the bits),
    so :func:`compare` also scores the SR methods over the one interval they and ``full`` all cover."""
    ranges = [(c[0].psnr_y, c[-1].psnr_y) for c in (monotone(x) for x in curves) if len(c) >= 2]
    if len(ranges) != len(curves):
        return None
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    return (lo, hi) if lo < hi else None


# ---- convex hull -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HullPoint:
    kbps: float
    psnr_y: float
    source: str  # the method whose point this is


def upper_hull(points: Sequence[HullPoint]) -> list[HullPoint]:
    """Per rate, the best Y-PSNR any method reaches: the upper envelope of the methods' RD curves (each its
    points joined linearly in log rate, as BD-rate reads them), as per-title encoding picks a resolution.

    Vertices are the measured points that no other curve beats at their rate, and the rates where two curves
    cross (where the envelope changes method). Where one method covers a rate that another does not reach,
    that method alone counts there. Points that cost more bits for no more PSNR are dropped, so PSNR rises
    along the envelope. The concave envelope in log rate would also draw chords past measured points,
    claiming qualities no encode reaches (switching between two encodes mixes their rates linearly, not their
    logarithms): it is not what is computed here."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        curves.setdefault(p.source, []).append(_xy(p))
    for name in curves:
        curves[name] = sorted(curves[name])
    measured = {_xy(p)[0]: p.kbps for p in points}  # a measured rate keeps its exact value (no 10**log10 drift)
    xs = set(measured)
    names = list(curves)
    for a in range(len(names)):  # where two curves cross inside both their segments
        for b in range(a + 1, len(names)):
            for (x1, y1), (x2, y2) in zip(curves[names[a]], curves[names[a]][1:], strict=False):
                for (u1, v1), (u2, v2) in zip(curves[names[b]], curves[names[b]][1:], strict=False):
                    lo, hi = max(x1, u1), min(x2, u2)
                    if lo >= hi:
                        continue
                    da, db = (y2 - y1) / (x2 - x1), (v2 - v1) / (u2 - u1)
                    if da == db:
                        continue
                    x = (v1 - db * u1 - y1 + da * x1) / (da - db)
                    if lo < x < hi:
                        xs.add(x)
    env: list[HullPoint] = []
    for x in sorted(xs):
        best: tuple[float, bool, str] | None = None
        for name, c in curves.items():
            y = _on_curve(c, x)
            if y is None:
                continue
            # ties (within float error, as at a crossing) go to full: the envelope switches to full resolution
            # where the curves meet
            if best is None or y > best[0] + 1e-9 or (abs(y - best[0]) <= 1e-9 and name == "full"):
                best = (y, name == "full", name)
        assert best is not None
        if not env or best[0] > env[-1].psnr_y:
            env.append(HullPoint(measured.get(x, 10**x), best[0], best[2]))
    out: list[HullPoint] = []  # a vertex on the straight line of its neighbours is no vertex (one segment)
    for i, v in enumerate(env):
        if 0 < i < len(env) - 1:
            (x1, y1), (x2, y2), (x3, y3) = _xy(out[-1]), _xy(v), _xy(env[i + 1])
            if abs((x2 - x1) * (y3 - y1) - (y2 - y1) * (x3 - x1)) < 1e-9:
                continue
        out.append(v)
    return out


def _on_curve(curve: Sequence[tuple[float, float]], x: float) -> float | None:
    """A curve's PSNR at log rate ``x`` (linear between its points); None outside its rate range."""
    for (x1, y1), (x2, y2) in zip(curve, curve[1:], strict=False):
        if x1 <= x <= x2:
            return y1 + (y2 - y1) * (x - x1) / (x2 - x1) if x2 > x1 else max(y1, y2)
    if len(curve) == 1 or math.isclose(x, curve[0][0]) or math.isclose(x, curve[-1][0]):
        near = min(curve, key=lambda q: abs(q[0] - x))
        return near[1] if math.isclose(near[0], x) else None
    return None


def _xy(p: HullPoint) -> tuple[float, float]:
    return math.log10(p.kbps), p.psnr_y


def hull_psnr_at(hull: Sequence[HullPoint], kbps: float) -> float | None:
    """The hull's PSNR at ``kbps`` (linear in log rate between vertices); None outside its rate range."""
    return _on_curve([_xy(v) for v in hull], math.log10(kbps))


@dataclass
class Hull:
    method: str  # the downscaled method it uses
    vertices: list[HullPoint]
    full: list[RDPoint]
    down: list[RDPoint]
    bd: BDResult
    switch_kbps: float | None  # the rate from which on the hull is full resolution (None: downscaled to the top)
    last_down_kbps: float | None  # the highest rate at which it is still the downscaled method (None: never)

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "points": [{"kbps": v.kbps, "psnr_y": v.psnr_y, "source": v.source} for v in self.vertices],
            "full_points": [p.as_json() for p in self.full],
            "down_points": [p.as_json() for p in self.down],
            "bd_rate_vs_full_percent": self.bd.percent,
            "bd_note": self.bd.note,
            "switch_kbps": self.switch_kbps,
            "last_downscaled_kbps": self.last_down_kbps,
        }


def convex_hull(full: Sequence[RDPoint], down: Sequence[RDPoint], method: str) -> Hull:
    """The hull of ``full`` and ``method``'s points, its BD-rate against ``full`` and where it switches."""
    pts = [HullPoint(p.kbps, p.psnr_y, "full") for p in full] + [HullPoint(p.kbps, p.psnr_y, method) for p in down]
    vertices = upper_hull(pts)
    as_rd = [RDPoint(-1, v.kbps, v.psnr_y, math.nan) for v in vertices]
    result = bd_rate(full, as_rd)
    downs = [i for i, v in enumerate(vertices) if v.source != "full"]
    last = downs[-1] if downs else -1  # every vertex above the last downscaled one is full resolution
    switch = vertices[last + 1].kbps if last + 1 < len(vertices) else None
    return Hull(method, vertices, list(full), list(down), result, switch, vertices[last].kbps if downs else None)


# ---- the comparison --------------------------------------------------------------------------------------


@dataclass
class Curve:
    method: Method
    points: list[RDPoint]
    bd: BDResult | None = None  # None for full itself
    bd_common: BDResult | None = None  # over the interval full and every SR method cover (Comparison.common_db)


@dataclass
class Comparison:
    reference: str
    setup: Setup
    frames: int
    size: tuple[int, int]  # (W, H) after the crop
    curves: dict[str, Curve]
    hull: Hull | None
    warnings: list[str] = field(default_factory=list)
    common_db: tuple[float, float] | None = None  # the PSNR interval full and every SR method's curve cover

    def as_json(self) -> dict[str, Any]:
        methods: dict[str, Any] = {}
        for name, c in self.curves.items():
            methods[name] = {
                "label": c.method.label,
                "points": [p.as_json() for p in c.points],
                "bd_rate_vs_full_percent": None if c.bd is None else c.bd.percent,
            }
            if name == "full":
                methods[name]["bd_rate_vs_full_percent"] = 0.0
            else:
                if c.bd is not None and c.bd.note:
                    methods[name]["bd_note"] = c.bd.note
                if c.bd_common is not None:
                    methods[name]["bd_rate_common_interval_percent"] = c.bd_common.percent
        return {
            "methods": methods,
            "common_interval_db": None if self.common_db is None else list(self.common_db),
            "hull": None if self.hull is None else self.hull.as_json(),
            "reference": self.reference,
            "codec": self.setup.codec,
            "preset": self.setup.preset,
            "scale": self.setup.scale,
            "fps": float(self.setup.fps),
            "frames": self.frames,
            "width": self.size[0],
            "height": self.size[1],
            "metric": "Y-PSNR and SSIM-Y (BT.601), no border crop, mean over frames"
                      + (f" (SSIM-Y of every {self.setup.ssim_every}-th frame)" if self.setup.ssim_every > 1 else ""),
            "bd_interpolation": "akima",
            "warnings": self.warnings,
        }


def compare(ref: Frames, methods: Sequence[Method], setup: Setup, full_crfs: Sequence[int] = FULL_CRFS,
            down_crfs: Sequence[int] | None = None, hull_crfs: Sequence[int] | None = HULL_CRFS,
            reference: str = "", on_point: Callable[[str, RDPoint], None] | None = None,
            measured: dict[tuple[str, int], RDPoint] | None = None) -> Comparison:
    """Every method's RD curve on ``ref`` (uint8 frames), its BD-rate against ``full`` and the convex hull.

    ``down_crfs`` defaults to :func:`down_crfs_for` ``full_crfs``. The hull sweeps ``full`` over ``hull_crfs``
    (a superset of points is re-used, not re-encoded) and the best downscaled method (lowest BD-rate) over
    :func:`down_crfs_for` those; ``hull_crfs`` None skips it. A method that adapts its model per point sends the
    update where it pays (:func:`choose_updates`). ``on_point`` sees each point as
    it is measured (progress). ``measured`` ((method, crf) -> point) holds points measured before on the same
    frames and setup, which are re-used, and receives the new ones (a benchmark that adds a method later)."""
    check_codec(setup.codec)
    check_crfs(full_crfs)
    down_crfs = tuple(down_crfs) if down_crfs is not None else down_crfs_for(full_crfs)
    check_crfs(down_crfs, "--down-crf")
    if hull_crfs is not None:
        check_crfs(hull_crfs, "hull CRFs")
    if not ref:
        raise CompareError("no frames to compare")
    ref = crop_reference(ref, setup.scale)
    by_name = {m.name: m for m in methods}
    if "full" not in by_name:
        raise CompareError("the comparison needs full (every BD-rate is against it)")
    cache: dict[tuple[str, int], RDPoint] = {} if measured is None else measured
    lrs: dict[str, Frames] = {}

    def point(m: Method, crf: int) -> RDPoint:
        key = (m.name, crf)
        if key not in cache:
            if m.name not in lrs:
                lrs[m.name] = low_res(m, ref)
            cache[key] = rd_point(m, ref, crf, setup, lrs[m.name])
            if on_point is not None:
                on_point(m.name, cache[key])
        return cache[key]

    curves: dict[str, Curve] = {}
    for m in methods:
        crfs = full_crfs if m.full else down_crfs
        pts = [point(m, c) for c in crfs]
        curves[m.name] = Curve(m, choose_updates(pts) if m.adapt is not None else pts)
    full = curves["full"].points
    notes: list[str] = []
    lo, hi = min(p.psnr_y for p in full), max(p.psnr_y for p in full)
    if lo > FULL_SPAN_DB[0] + 1 or hi < FULL_SPAN_DB[1] - 1:
        notes.append(f"full spans {lo:.1f}-{hi:.1f} dB Y-PSNR, not about {FULL_SPAN_DB[0]:.0f}-{FULL_SPAN_DB[1]:.0f} "
                     "(the low-rate regime): choose other --crf values for this content")
    # Bicubic upsampling saturates over 1 dB below every SR method (Vid4 city: 28.4 dB), so it would confine the
    # shared interval to the rates where downscaling wins most: the interval is that of full and the SR methods.
    shared = [c.points for c in curves.values() if c.method.full or c.method.model is not None]
    common = common_interval(shared) if len(shared) > 2 else None
    for name, c in curves.items():
        if name != "full":
            c.bd = bd_rate(full, c.points)
            if c.bd.percent is None:
                notes.append(f"{name}: no BD-rate ({c.bd.note})")
            if common is not None:
                c.bd_common = bd_rate(full, c.points, interval=common)
    hull = None
    scored = [(c.bd.percent, n) for n, c in curves.items() if n != "full" and c.bd and c.bd.percent is not None]
    if hull_crfs is not None and scored:
        best = by_name[min(scored)[1]]
        full_wide = [point(by_name["full"], c) for c in sorted({*hull_crfs, *full_crfs})]
        down_wide = [point(best, c) for c in sorted({*down_crfs_for(hull_crfs), *down_crfs})]
        if best.adapt is not None:
            down_wide = choose_updates(down_wide)
        hull = convex_hull(full_wide, down_wide, best.name)
    h, w = ref[0].shape[-2:]
    return Comparison(reference, setup, len(ref), (w, h), curves, hull, notes, common)


# ---- report ----------------------------------------------------------------------------------------------


def table(doc: dict[str, Any]) -> str:
    """The comparison as text: one line per method (its points as kbps/dB) and the hull's summary."""
    lines = [f"{doc['reference']}: {doc['width']}x{doc['height']}, {doc['frames']} frames, x{doc['scale']}, "
             f"{doc['codec']} {doc['preset']}, {doc['fps']:g} fps ({doc['metric']})"]
    width = max(len(n) for n in doc["methods"])
    common = doc.get("common_interval_db")
    for name, m in doc["methods"].items():
        bd, bdc = m["bd_rate_vs_full_percent"], m.get("bd_rate_common_interval_percent")
        bd_text = "  anchor" if name == "full" else ("     n/a" if bd is None else f"{bd:+7.1f}%")
        if common and name != "full":
            bd_text += "         n/a" if bdc is None else f" ({bdc:+6.1f}%)"
        elif common:
            bd_text += " " * 12
        pts = "  ".join(f"{p['kbps']:.0f}/{p['psnr_y']:.2f}" for p in sorted(m["points"], key=lambda p: p["kbps"]))
        lines.append(f"  {name:<{width}}  BD-rate {bd_text}   kbps/dB: {pts}")
    if common:
        lines.append(f"  (in brackets: BD-rate over {common[0]:.2f}-{common[1]:.2f} dB, the Y-PSNR that full and every SR "
                     "method cover)")
    hull = doc.get("hull")
    if hull:
        bd = hull["bd_rate_vs_full_percent"]
        switch = hull["switch_kbps"]
        lines.append(f"  hull (full + {hull['method']}, wide sweep): BD-rate "
                     f"{'n/a' if bd is None else f'{bd:+.1f}%'}; switches to full resolution at "
                     f"{'no rate swept' if switch is None else f'{switch:.0f} kbps'}"
                     + ("" if hull["last_downscaled_kbps"] is None else
                        f" (downscaled up to {hull['last_downscaled_kbps']:.0f} kbps)"))
    lines += [f"  note: {w}" for w in doc.get("warnings", [])]
    return "\n".join(lines)


def plot_available() -> bool:
    """matplotlib (the ``bench`` extra) is installed: checked before minutes of encoding, not after."""
    return importlib.util.find_spec("matplotlib") is not None


def plot_png(doc: dict[str, Any]) -> bytes:
    """Every method's RD curve (kbps on a log axis against Y-PSNR) and the hull, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for name, m in doc["methods"].items():
        pts = sorted(m["points"], key=lambda p: p["kbps"])
        bd = m["bd_rate_vs_full_percent"]
        label = name if name == "full" else f"{name} ({'n/a' if bd is None else f'{bd:+.1f}%'})"
        ax.plot([p["kbps"] for p in pts], [p["psnr_y"] for p in pts], marker="o", ms=4,
                lw=2.2 if name == "full" else 1.4, label=label)
    hull = doc.get("hull")
    if hull:
        bd = hull["bd_rate_vs_full_percent"]
        ax.plot([p["kbps"] for p in hull["points"]], [p["psnr_y"] for p in hull["points"]], "k--", lw=1.2,
                label=f"hull: full + {hull['method']} ({'n/a' if bd is None else f'{bd:+.1f}%'})")
        wide = sorted(hull["full_points"], key=lambda p: p["kbps"])
        ax.plot([p["kbps"] for p in wide], [p["psnr_y"] for p in wide], ":", color="grey", lw=1, label="full, wide sweep")
        if hull["switch_kbps"]:
            ax.axvline(hull["switch_kbps"], color="grey", lw=0.8, alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("rate (kbps, log scale; model bits included)")
    ax.set_ylabel("Y-PSNR (dB)")
    ax.set_title(f"{Path(doc['reference']).name}: x{doc['scale']} {doc['codec']} {doc['preset']}, "
                 f"{doc['frames']} frames {doc['width']}x{doc['height']}  (BD-rate vs full)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


__all__ = ["Adapt", "BDResult", "Comparison", "CompareError", "Curve", "default_methods", "FULL_CRFS", "HULL_CRFS",
           "Hull", "HullPoint", "METHODS", "Method", "RDPoint", "SCHEMA", "Setup", "VideoError", "bd_rate",
           "build_methods", "compare", "convex_hull", "crop_reference", "down_crfs_for", "hull_psnr_at", "low_res",
           "monotone", "parse_crfs", "plot_available", "plot_png", "rd_point", "reconstruct", "score", "table",
           "upper_hull"]
