"""Codec-degraded LR for training and measuring a compression-aware upscaler (``train --lr-codec h264:24-40``).

Today's upscalers learn from clean MATLAB-bicubic LR; on x264-decoded frames at low rates they barely beat
bicubic upsampling, because blocking, ringing and smoothed texture are not in what they learned to invert.
Here the LR passes through a real x264 (PyAV, :func:`.video.roundtrip`) as the 8-bit frame the phone decodes.

Why precomputed, and why an I-frame. A codec is not differentiable and far too slow to run per patch, and a
patch-sized clip would not show the artefacts of a whole frame (macroblock grid, rate control). So each
training image is downscaled once, whole (MATLAB bicubic, 8 bits), and that LR frame is encoded and decoded
at every CRF level of the range: a one-frame clip, hence an IDR (intra) frame. Intra coding is what every
frame of a clip shares (P/B macroblocks fall back to it, and their residual goes through the same transform
and quantiser). Motion-compensation artefacts proper would need a clip with synthetic motion whose HR patches
move with it; the Vid4 measurement (:func:`vid4_codec_images`: one clip, real I/P/B frames) is the check
that the I-frame stand-in is enough.

The CRF of a one-frame clip is not the CRF of a clip. A lone frame is coded much coarser: x264's macroblock
tree lowers the QP of blocks that later frames reference, and for a single frame nothing does. Measured on
Vid4 (x2 bicubic LR, decoded vs clean RGB PSNR): clip CRF 26 / 32 / 38 average 33.6 / 30.2 / 26.9 dB on city
(12 frames) and 32.3 / 28.6 / 25.2 dB on walk; a one-frame clip reaches those at CRF ~23 / 28 / 33.5 (city)
and ~24.5 / 30 / 35.7 (walk). So ``--lr-codec`` CRFs are one-frame CRFs: ``h264:18-36`` covers clip CRFs of
about 21-40, the low-rate range video is sent at. (A first try at one-frame 24-40, stopped at step 4000,
trained on frames much worse than a clip at CRF 26 sends: 1.5 dB down on clean Set5 for ~0 gain on Vid4 city.)

Samples stay a pure function of ``(seed, step, index)``: the image, crop, rotation and flip are drawn exactly as
:class:`.datasets.TrainPatches` draws them, then (from the same generator) the CRF level and whether the
sample is coded at all; the decoded frames are deterministic (x264 is, at fixed settings) and cached on disk,
so a resumed or DDP run replays the same batches.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .datasets import BenchmarkImage, TrainPatches, Warn
from .imresize import imresize, quantize
from .video import even_crop

CODECS = ("h264", "hevc", "av1")  # the names of data.video.ENCODERS
CACHE_VERSION = 1  # bump when the way cached frames are made changes


def cache_root() -> Path:
    """``$MOBILE_SR_CACHE`` (default ``~/.cache/mobile-sr``), ``codec_lr/``: decoded LR frames of training images."""
    return Path(os.environ.get("MOBILE_SR_CACHE") or Path.home() / ".cache" / "mobile-sr") / "codec_lr"


@dataclass(frozen=True)
class CodecRange:
    """``--lr-codec CODEC:LO-HI[/STEP][@P]``: a share P (default 1) of the samples get their LR through CODEC at a
    CRF drawn uniformly from the levels LO, LO+STEP, ..., HI (STEP default 2); the others keep the clean LR."""

    codec: str
    lo: int
    hi: int
    step: int = 2
    prob: float = 1.0

    @classmethod
    def parse(cls, text: str) -> CodecRange:
        usage = f"--lr-codec {text!r}: expected CODEC:LO-HI[/STEP][@P], e.g. h264:24-40 or h264:24-40/4@0.9"
        codec, sep, rest = text.strip().lower().partition(":")
        if not sep:
            raise ValueError(usage)
        if codec not in CODECS:
            raise ValueError(f"--lr-codec {text!r}: unknown codec {codec!r} (choose one of: {', '.join(CODECS)})")
        rest, _, prob = rest.partition("@")
        span, _, step = rest.partition("/")
        lo, dash, hi = span.partition("-")
        try:
            rng = cls(codec, int(lo), int(hi) if dash else int(lo), int(step) if step else 2,
                      float(prob) if prob else 1.0)
        except ValueError:
            raise ValueError(usage) from None
        top = 63 if codec == "av1" else 51
        if not 0 <= rng.lo <= rng.hi <= top or rng.step < 1 or not 0 < rng.prob <= 1:
            raise ValueError(f"--lr-codec {text!r}: CRFs must be 0 <= LO <= HI <= {top}, STEP >= 1 and 0 < P <= 1")
        return rng

    @property
    def levels(self) -> tuple[int, ...]:
        """The CRFs precomputed and drawn from: LO to HI by STEP, HI always included."""
        out = list(range(self.lo, self.hi + 1, self.step))
        return tuple(out if out[-1] == self.hi else [*out, self.hi])

    def __str__(self) -> str:
        return (f"{self.codec}:{self.lo}-{self.hi}" + (f"/{self.step}" if self.step != 2 else "")
                + (f"@{self.prob:g}" if self.prob < 1 else ""))


def bicubic_lr(hr_u8: torch.Tensor, scale: int) -> torch.Tensor:
    """The MATLAB-bicubic LR of an 8-bit HR image (3, H, W), as 8-bit levels (what would be encoded)."""
    lr = quantize(imresize(hr_u8.double() / 255.0, 1 / scale))
    return (lr * 255).round().to(torch.uint8)


def code_frames(frames: list[torch.Tensor], codec: str, crf: int) -> list[torch.Tensor]:
    """``frames`` (uint8 (3, h, w), even sides) through ``codec`` at ``crf`` and back: what the phone decodes."""
    from .video import roundtrip

    # One x264 thread: the training data is made beside other jobs (and is exact run to run on patches this small).
    return roundtrip(frames, codec=codec, crf=crf, threads=1)[0]


@lru_cache(maxsize=4)
def codec_fingerprint(codec: str) -> str:
    """A digest of what the round trip does today to a fixed 16x16 test pattern at CRF 30: the PyAV build, the
    encoder, its settings and the colour conversion all show in it, so a change to any of them remakes the cache
    instead of training on frames the current pipeline no longer produces."""
    g = torch.Generator().manual_seed(0)
    pattern = torch.randint(256, (3, 16, 16), generator=g, dtype=torch.int64).to(torch.uint8)
    return hashlib.sha256(code_frames([pattern], codec, 30)[0].numpy().tobytes()).hexdigest()[:16]


def _key(hr_u8: torch.Tensor, scale: int, codec: str) -> str:
    """Cache key of one training image: its pixels, the scale, the codec and the round trip's fingerprint."""
    h = hashlib.sha256(hr_u8.numpy().tobytes())
    h.update(f"{tuple(hr_u8.shape)}|x{scale}|{codec}|{codec_fingerprint(codec)}|v{CACHE_VERSION}".encode())
    return h.hexdigest()[:32]


def coded_levels(hr_u8: torch.Tensor, scale: int, codec: str, levels: Sequence[int],
                 cache: Path | None) -> dict[int, torch.Tensor]:
    """{crf: decoded LR (uint8)} of one even-cropped HR image; read from and added to ``cache`` (one file per
    image, written atomically), so a resumed run and every DDP rank reuse what the first run encoded."""
    from ..core.files import atomic_write

    path = cache / f"{_key(hr_u8, scale, codec)}.pt" if cache is not None else None
    have: dict[int, torch.Tensor] = {}
    if path is not None and path.exists():
        try:
            have = {int(k): v for k, v in torch.load(path, weights_only=True).items()}
        except Exception:  # a damaged cache file is remade, never trusted
            have = {}
    missing = [c for c in levels if c not in have]
    if missing:
        lr = bicubic_lr(hr_u8, scale)
        for crf in missing:
            have[crf] = code_frames([lr], codec, crf)[0].contiguous()
        if path is not None:
            import io
            path.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            torch.save({str(k): v for k, v in have.items()}, buf)
            atomic_write(path, buf.getvalue())
    return {c: have[c] for c in levels}


class CodecTrainPatches(TrainPatches):
    """:class:`TrainPatches` whose LR is the codec-decoded full-image LR (or, for a share 1-P, the clean one).

    Memory: per image the clean LR and one decoded LR per level, all uint8 (T91 + BSD200 at x2, 9 levels:
    ~0.4 GB)."""

    def __init__(self, folders: list[str | Path], scale: int, patch: int, codec: CodecRange | str,
                 holdout_every: int = 0, warn: Warn | None = None, cache: Path | None = None,
                 progress: bool = False) -> None:
        super().__init__(folders, scale, patch, holdout_every=holdout_every, warn=warn)
        self.codec = CodecRange.parse(codec) if isinstance(codec, str) else codec
        cache = cache_root() if cache is None else cache
        from tqdm import tqdm

        self.clean: list[torch.Tensor] = []
        self.coded: list[dict[int, torch.Tensor]] = []
        images = []
        for img in tqdm(self.images, desc=f"LR through {self.codec}", disable=not progress, unit="img"):
            img = even_crop(img, scale).contiguous()
            images.append(img)
            self.clean.append(bicubic_lr(img, scale))
            self.coded.append(coded_levels(img, scale, self.codec.codec, self.codec.levels, cache))
        self.images = images

    def sample(self, seed: int, step: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` of the global batch at ``step``: (LR 3xpxp/s, HR 3xpxp), float in [0,1]. The LR is a
        crop of the decoded full-image LR, aligned with the HR crop on the scale grid."""
        g = torch.Generator().manual_seed(hash((seed, step, index)) & 0x7FFFFFFFFFFF)
        i = int(torch.randint(len(self.images), (1,), generator=g))
        img, s, p = self.images[i], self.scale, self.patch
        h, w = img.shape[-2:]
        top = int(torch.randint((h - p) // s + 1, (1,), generator=g))  # in LR pixels
        left = int(torch.randint((w - p) // s + 1, (1,), generator=g))
        rot, flip = int(torch.randint(4, (1,), generator=g)), bool(torch.randint(2, (1,), generator=g))
        levels = self.codec.levels
        crf = levels[int(torch.randint(len(levels), (1,), generator=g))]
        coded = float(torch.rand((1,), generator=g)) < self.codec.prob
        lr_full = self.coded[i][crf] if coded else self.clean[i]
        q = p // s
        lr = lr_full[:, top : top + q, left : left + q]
        hr = img[:, top * s : top * s + p, left * s : left * s + p]
        out = []
        for t in (lr, hr):
            t = torch.rot90(t.to(torch.float32) / 255.0, rot, (1, 2))
            out.append((t.flip(-1) if flip else t).contiguous())
        return out[0], out[1]


def codec_images(frames: Sequence[torch.Tensor], scale: int, codec: str = "h264", crf: int = 32,
                 name: str = "frame") -> list[BenchmarkImage]:
    """Benchmark pairs of a clip as it reaches the phone: HR frames (uint8, even-cropped to ``2*scale``) ->
    MATLAB bicubic -> 8-bit -> ``codec`` at ``crf`` (one clip, so real P/B frames) -> decoded LR. Score an
    upscaler on them with ``evaluation.evaluate(Pipeline(upscaler, scale), images)``."""
    hrs = [even_crop(f, scale).contiguous() for f in frames]
    decoded = code_frames([bicubic_lr(f, scale) for f in hrs], codec, crf)
    return [BenchmarkImage(f"{name}_{k:03d}", lr.float() / 255.0, hr.float() / 255.0)
            for k, (lr, hr) in enumerate(zip(decoded, hrs, strict=True))]


def vid4_codec_images(folder: Path, scale: int, crf: int, codec: str = "h264", frames: int | None = None,
                      size: int | None = None) -> list[BenchmarkImage]:
    """:func:`codec_images` of a Vid4 sequence (a folder of PNG frames), optionally its first ``frames`` frames
    and a centre ``size`` x ``size`` HR crop (tests keep it small)."""
    from .images import list_images, read_rgb

    hrs = []
    for p in list_images(folder)[:frames]:
        hr = (read_rgb(p) * 255).round().to(torch.uint8)
        if size is not None:
            h, w = hr.shape[-2:]
            top, left = (h - size) // 2, (w - size) // 2
            hr = hr[:, top : top + size, left : left + size]
        hrs.append(hr)
    return codec_images(hrs, scale, codec, crf, name=folder.name)
