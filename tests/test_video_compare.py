"""``mobile-sr video compare``: rate-distortion points, BD-rate, the convex hull, the JSON and the CLI's refusals.

Real x264 (PyAV) on real frames: the first frames of Vid4 city, cropped small so each test takes seconds.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mobile_sr.cli import main
from mobile_sr.core.schema import validate
from mobile_sr.data.video import load_frames, roundtrip
from mobile_sr.evaluation import video as rd
from mobile_sr.evaluation.video import HullPoint, RDPoint

from .conftest import shared_or_skip

pytestmark = pytest.mark.extras("video")
pytest.importorskip("bjontegaard", reason="BD-rate needs bjontegaard (the video extra): pip install -e '.[video]'")

FULL_CRFS = (30, 38, 46)
SETUP = rd.Setup(threads=1)  # one x264 thread: a quiet machine, and exact bits on crops this small


@pytest.fixture(scope="module")
def city() -> list[torch.Tensor]:
    """4 frames of Vid4 city, a 128x128 crop with texture (buildings), uint8."""
    frames = load_frames(shared_or_skip("video", "vid4", "city"), limit=4)
    return [f[:, 200:328, 300:428].contiguous() for f in frames]


@pytest.fixture(scope="module")
def comparison(city: list[torch.Tensor]) -> rd.Comparison:
    methods = rd.build_methods(["full", "bicubic-bicubic", "bicubic-sr"], 2)
    return rd.compare(city, methods, SETUP, FULL_CRFS, hull_crfs=(22, *FULL_CRFS), reference="city")


def _pts(pairs: list[tuple[float, float]]) -> list[RDPoint]:
    return [RDPoint(i, r, p, math.nan) for i, (r, p) in enumerate(pairs)]


# The bjontegaard package's own example (FAU-LMS, libx265 at four presets; README and example_usage.py).
RATE_A = [9487.76, 4593.60, 2486.44, 1358.24]
PSNR_A = [40.037, 38.615, 36.845, 34.851]
RATE_T = [9787.80, 4469.00, 2451.52, 1356.24]
PSNR_T = [40.121, 38.651, 36.970, 34.987]


def _vceg_m33(rate_a, psnr_a, rate_t, psnr_t) -> float:
    """Bjontegaard's VCEG-M33 (2001) as published: a cubic fit of log rate over PSNR per curve, each integrated
    over the PSNR overlap, the mean log10-rate difference turned into percent. Written here from the paper,
    independently of the package."""
    pa, pt = np.polyfit(psnr_a, np.log10(rate_a), 3), np.polyfit(psnr_t, np.log10(rate_t), 3)
    lo, hi = max(min(psnr_a), min(psnr_t)), min(max(psnr_a), max(psnr_t))
    ia, it = np.polyint(pa), np.polyint(pt)
    avg = ((np.polyval(it, hi) - np.polyval(it, lo)) - (np.polyval(ia, hi) - np.polyval(ia, lo))) / (hi - lo)
    return (10**avg - 1) * 100


def test_bd_rate_worked_examples() -> None:
    # A curve that needs 20% fewer bits at every PSNR has a BD-rate of exactly -20%, whatever the interpolation.
    anchor = _pts(list(zip(RATE_A, PSNR_A, strict=True)))
    cheaper = _pts([(r * 0.8, p) for r, p in zip(RATE_A, PSNR_A, strict=True)])
    for method in ("akima", "pchip", "cubic"):
        assert rd.bd_rate(anchor, cheaper, method).percent == pytest.approx(-20.0, abs=1e-9)
    # The package's own example, against VCEG-M33's cubic computed from the paper's formula.
    test = _pts(list(zip(RATE_T, PSNR_T, strict=True)))
    assert rd.bd_rate(anchor, test, "cubic").percent == pytest.approx(_vceg_m33(RATE_A, PSNR_A, RATE_T, PSNR_T), abs=1e-9)
    # Akima and PCHIP follow the same four points: same sign, within a fraction of a percent of the cubic.
    for method in ("akima", "pchip"):
        value = rd.bd_rate(anchor, test, method).percent
        assert value < 0 and abs(value - _vceg_m33(RATE_A, PSNR_A, RATE_T, PSNR_T)) < 0.5


def test_bd_rate_over_a_given_interval() -> None:
    anchor = _pts(list(zip(RATE_A, PSNR_A, strict=True)))
    test = _pts(list(zip(RATE_T, PSNR_T, strict=True)))
    cheaper = _pts([(r * 0.8, p) for r, p in zip(RATE_A, PSNR_A, strict=True)])
    assert rd.bd_rate(anchor, cheaper, interval=(35.5, 37.0)).percent == pytest.approx(-20.0, abs=1e-9)
    # Over the overlap itself it is Bjontegaard's figure; over a part of it, the same interpolants' mean there.
    whole = rd.bd_rate(anchor, test)
    assert rd.bd_rate(anchor, test, interval=whole.overlap_db).percent == pytest.approx(whole.percent, abs=1e-9)
    low, high = rd.bd_rate(anchor, test, interval=(34.987, 37.0)), rd.bd_rate(anchor, test, interval=(37.0, 40.037))
    span = whole.overlap_db[1] - whole.overlap_db[0]
    mean_log = (math.log10(1 + low.percent / 100) * (37.0 - 34.987) + math.log10(1 + high.percent / 100) * (40.037 - 37.0))
    assert (10 ** (mean_log / span) - 1) * 100 == pytest.approx(whole.percent, abs=1e-9)  # the halves make the whole
    outside = rd.bd_rate(anchor, test, interval=(30.0, 36.0))
    assert outside.percent is None and "not over 30.00-36.00" in outside.note
    # The interval every curve covers, for comparing methods with each other.
    a, b = _pts([(100, 24.0), (400, 30.0)]), _pts([(60, 23.0), (300, 29.0)])
    assert rd.common_interval([a, b]) == (24.0, 29.0)
    assert rd.common_interval([a, _pts([(10, 10.0), (20, 12.0)])]) is None


def test_bd_rate_undefined_without_overlap() -> None:
    low = _pts([(100, 24.0), (200, 26.0), (400, 28.0)])
    high = _pts([(800, 30.0), (1600, 32.0), (3200, 34.0)])
    res = rd.bd_rate(low, high)
    assert res.percent is None and "no Y-PSNR overlap" in res.note
    assert rd.bd_rate(low, low[:1]).percent is None  # one point is no curve


def test_dominated_points_are_left_out() -> None:
    # A point that costs more bits for less PSNR cannot be interpolated over PSNR: it is left out and said so.
    anchor = _pts([(100, 24.0), (200, 27.0), (400, 30.0)])
    test = _pts([(80, 24.5), (160, 27.5), (170, 27.0), (320, 30.5)])
    res = rd.bd_rate(anchor, test)
    assert res.percent is not None and res.percent < 0 and "1 dominated" in res.note


def test_full_gains_psnr_with_bits(comparison: rd.Comparison) -> None:
    full = sorted(comparison.curves["full"].points, key=lambda p: p.crf)
    assert [p.crf for p in full] == list(FULL_CRFS)
    for better, worse in zip(full, full[1:], strict=False):  # a lower CRF: more bits, higher Y-PSNR and SSIM
        assert better.kbps > worse.kbps and better.psnr_y > worse.psnr_y and better.ssim_y > worse.ssim_y
    down = comparison.curves["bicubic-bicubic"].points
    # full's CRFs less 10 (overlapping rates), then on in full's step to just below its last CRF, so the
    # downscaled curve reaches down to full's lowest PSNR
    assert [p.crf for p in down] == [20, 28, 36, 44]
    assert min(p.psnr_y for p in down) < min(p.psnr_y for p in full)


def test_default_down_sweep() -> None:
    assert rd.down_crfs_for(rd.FULL_CRFS) == tuple(range(22, 47, 3))  # 22-37 overlaps full's rates, 40-46 its PSNR
    assert rd.down_crfs_for((5, 8)) == (0,)  # clamped to x264's range, repeats dropped
    assert rd.down_crfs_for((48, 51)) == (38, 41, 44, 47, 50)


def test_bicubic_bicubic_bd_rate_is_finite(comparison: rd.Comparison) -> None:
    full, bb = comparison.curves["full"].points, comparison.curves["bicubic-bicubic"].points
    lo = max(min(p.psnr_y for p in full), min(p.psnr_y for p in bb))
    hi = min(max(p.psnr_y for p in full), max(p.psnr_y for p in bb))
    assert lo < hi  # the CRF offset makes the curves overlap in PSNR, so BD-rate exists
    bd = comparison.curves["bicubic-bicubic"].bd
    assert bd is not None and bd.percent is not None and math.isfinite(bd.percent)


def test_hull_never_below_full(comparison: rd.Comparison) -> None:
    hull = comparison.hull
    assert hull is not None and hull.method in ("bicubic-bicubic", "bicubic-sr")
    assert len(hull.full) == 4  # the wide sweep re-used the three main points and added CRF 22
    for p in hull.full:
        at = rd.hull_psnr_at(hull.vertices, p.kbps)
        assert at is not None and at >= p.psnr_y - 1e-9
    assert hull.bd.percent is not None and hull.bd.percent <= 1e-9  # never worse than full, so never more bits
    assert [v.kbps for v in hull.vertices] == sorted(v.kbps for v in hull.vertices)
    assert all(b.psnr_y > a.psnr_y for a, b in zip(hull.vertices, hull.vertices[1:], strict=False))


def test_hull_keeps_the_better_encode_per_rate() -> None:
    full = _pts([(100, 24.0), (200, 28.0), (400, 32.0), (800, 35.0)])
    down = _pts([(90, 25.0), (180, 28.5), (360, 30.0), (720, 31.0)])
    hull = rd.convex_hull(full, down, "bicubic-sr")
    # Below 200 kbps downscaling wins; full's segment 200-400 crosses down's 180-360 segment, where the hull
    # switches; (360, 30) lies below full's curve (31.5 dB there) and (720, 31) far below: neither is on it.
    sources = [(round(v.kbps, 3), v.source) for v in hull.vertices]
    l2 = math.log10(2)  # both segments span a doubling of the rate
    x = 10 ** ((0.5 + (4 * math.log10(200) - 1.5 * math.log10(180)) / l2) / (2.5 / l2))  # where they meet
    assert sources == [(90, "bicubic-sr"), (180, "bicubic-sr"), (round(x, 3), "full"), (400, "full"), (800, "full")]
    assert hull.switch_kbps == pytest.approx(x) and hull.last_down_kbps == 180
    for p in full:
        assert rd.hull_psnr_at(hull.vertices, p.kbps) >= p.psnr_y
    assert rd.upper_hull([HullPoint(100, 30, "a"), HullPoint(100, 31, "b"), HullPoint(150, 29, "a")]) == \
        [HullPoint(100, 31, "b")]


def test_json_validates(comparison: rd.Comparison) -> None:
    doc = comparison.as_json()
    assert validate(doc, rd.SCHEMA) == []
    assert set(doc["methods"]) == {"full", "bicubic-bicubic", "bicubic-sr"}
    assert {"kbps", "psnr_y", "ssim_y", "crf"} <= set(doc["methods"]["full"]["points"][0])
    broken = json.loads(json.dumps(doc))
    del broken["methods"]["bicubic-sr"]["points"][0]["psnr_y"]
    assert validate(broken, rd.SCHEMA)  # the schema does check the shape the issue asks for


def test_finetuned_counts_model_bits(city: list[torch.Tensor]) -> None:
    calls = []

    def adapt(model, lr, hr):  # noqa: ANN001, ANN202 - a stand-in for train.finetune: the model as it is
        calls.append((len(lr), tuple(lr[0].shape), len(hr), tuple(hr[0].shape)))
        return model, 1000

    methods = {m.name: m for m in rd.build_methods(["bicubic-sr", "finetuned-sr"], 2, adapt=adapt)}
    ref = rd.crop_reference(city, 2)
    plain = rd.rd_point(methods["bicubic-sr"], ref, 30, SETUP)
    tuned = rd.rd_point(methods["finetuned-sr"], ref, 30, SETUP)
    assert calls == [(4, (3, 64, 64), 4, (3, 128, 128))]  # the decoded LR frames and the originals
    duration = len(ref) / 25
    base = tuned.base  # the same stream without the update: bicubic-sr's point
    assert base is not None and tuned.model_bytes == 1000
    assert tuned.kbps - base.kbps == pytest.approx(1000 * 8 / duration / 1000, rel=1e-12)
    assert tuned.psnr_y == base.psnr_y == plain.psnr_y  # the same model, only the rate grew
    assert base.kbps == pytest.approx(plain.kbps, rel=0.05)  # x264 is not always bit-exact from call to call
    assert rd.choose_updates([tuned]) == [tuned]  # one point is no curve to weigh it against: kept


def _with_base(crf: int, kbps: float, psnr: float, base_kbps: float, base_psnr: float) -> RDPoint:
    return RDPoint(crf, kbps, psnr, 0.5, round((kbps - base_kbps) * 1000 / 8 * 2), base_kbps, base_psnr, 0.4)


def test_choose_updates_sends_an_update_only_where_it_pays() -> None:
    # The streams without update: 100 kbps 25 dB, 200 kbps 27 dB, 400 kbps 29 dB (2 dB per doubling).
    pts = [
        _with_base(40, 110, 25.1, 100, 25.0),  # +10% bits buy 0.1 dB; the curve gives 0.28 dB for them: not sent
        _with_base(35, 220, 27.5, 200, 27.0),  # +10% bits, +0.5 dB: above the curve, sent
        _with_base(30, 480, 29.6, 400, 29.0),  # past the last point: weighed on the end segment, 29.53 < 29.6: sent
    ]
    chosen = rd.choose_updates(pts)
    assert chosen[1] == pts[1] and chosen[2] == pts[2]
    skipped = chosen[0]
    assert (skipped.kbps, skipped.psnr_y, skipped.ssim_y, skipped.model_bytes) == (100, 25.0, 0.4, 0)
    assert skipped.base == pts[0].base and "model_bytes" not in skipped.as_json()
    assert skipped.as_json()["without_update"] == {"kbps": 100, "psnr_y": 25.0, "ssim_y": 0.4}
    assert validate({"methods": {"full": {"points": [p.as_json() for p in chosen], "bd_rate_vs_full_percent": None}},
                     "hull": None, "reference": "x", "codec": "h264", "scale": 2, "fps": 25}, rd.SCHEMA) == []


def test_build_methods_refuses() -> None:
    with pytest.raises(rd.CompareError, match="unknown method 'nope'"):
        rd.build_methods(["full", "nope"])
    with pytest.raises(rd.CompareError, match="fine-tuning budget"):
        rd.build_methods(["finetuned-sr"])
    for text in ("", "30", "30,x", "30,30", "10,60", "40-30"):
        with pytest.raises(rd.CompareError):
            rd.parse_crfs(text)
    assert rd.parse_crfs("32-38:3") == (32, 35, 38) and rd.parse_crfs("30, 40") == (30, 40)


def _frame_folder(city: list[torch.Tensor], folder: Path, n: int = 3, side: int = 64) -> Path:
    folder.mkdir()
    for i, f in enumerate(city[:n]):
        Image.fromarray(f[:, :side, :side].permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    return folder


def test_cli_writes_json_and_plot(city: list[torch.Tensor], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    ref = _frame_folder(city, tmp_path / "ref")
    out, png = tmp_path / "rd.json", tmp_path / "rd.png"
    r = CliRunner().invoke(main, ["video", "compare", str(ref), "--methods", "full,bicubic-bicubic", "--crf", "30,40",
                                  "--no-hull", "--threads", "1", "--json", str(out), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert validate(doc, rd.SCHEMA) == [] and doc["frames"] == 3 and doc["fps"] == 25 and doc["hull"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bicubic-bicubic  BD-rate" in r.output


@pytest.mark.parametrize("args, message", [
    (["--codec", "vp7"], "unknown codec 'vp7'"),
    (["--methods", "full,magic"], "unknown method 'magic'"),
    (["--crf", "30,abc"], "--crf '30,abc'"),
    (["--crf", "30"], "at least 2 rate points"),
    (["--crf", "30,99"], "outside 0..51"),
    (["--methods", "full,finetuned-sr"], "fine-tuning budget"),
])
def test_cli_bad_input_is_one_line(city: list[torch.Tensor], tmp_path: Path, args: list[str], message: str) -> None:
    ref = _frame_folder(city, tmp_path / "ref", n=2)
    out, png = tmp_path / "rd.json", tmp_path / "rd.png"
    r = CliRunner().invoke(main, ["video", "compare", str(ref), *args, "--json", str(out), "--plot", str(png)])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ") and message in r.stderr
    assert not out.exists() and not png.exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "not-a-video"])
def test_cli_unreadable_ref(tmp_path: Path, kind: str) -> None:
    ref = tmp_path / "ref.mp4"
    if kind == "empty":
        ref.write_bytes(b"")
    elif kind == "not-a-video":
        ref.write_bytes(b"this is text, not an mp4 file\n" * 20)
    out = tmp_path / "rd.json"
    r = CliRunner().invoke(main, ["video", "compare", str(ref), "--json", str(out)])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ") and str(ref) in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == ([ref] if kind != "missing" else [])


def test_cli_plot_needs_matplotlib(city: list[torch.Tensor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rd, "plot_available", lambda: False)
    ref = _frame_folder(city, tmp_path / "ref", n=2)
    out, png = tmp_path / "rd.json", tmp_path / "rd.png"
    r = CliRunner().invoke(main, ["video", "compare", str(ref), "--json", str(out), "--plot", str(png)])
    assert r.exit_code == 2 and r.stderr.startswith("error: --plot needs matplotlib")
    assert not out.exists() and not png.exists()


def test_kbps_is_stream_bits_over_duration(city: list[torch.Tensor]) -> None:
    # The rate is the video packets' bits over frames / fps (no container, no model), the score that of the frames
    # the phone decodes: the same encode through data.video gives the same figures.
    full = rd.build_methods(["full"], 2)[0]
    ref = rd.crop_reference(city, 2)
    point = rd.rd_point(full, ref, 40, SETUP)
    decoded, bits = roundtrip(ref, "h264", crf=40, fps=Fraction(25), threads=1)
    assert point.kbps == pytest.approx(bits / (len(ref) / 25) / 1000, rel=1e-12)
    assert (point.psnr_y, point.ssim_y) == rd.score(decoded, ref) and point.model_bytes == 0


def test_cli_finetuned_sr_runs_train_finetune(city: list[torch.Tensor], tmp_path: Path) -> None:
    # The CLI's Adapt is train.finetune: a tiny budget still fine-tunes and streams a model, whose bytes are in kbps.
    ref = _frame_folder(city, tmp_path / "ref", n=2)
    out = tmp_path / "rd.json"
    r = CliRunner().invoke(main, ["video", "compare", str(ref), "--methods", "full,bicubic-sr,finetuned-sr",
                                  "--finetune-minutes", "0.005", "--crf", "30,40", "--no-hull", "--threads", "1",
                                  "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    plain = {p["crf"]: p for p in doc["methods"]["bicubic-sr"]["points"]}
    for p in doc["methods"]["finetuned-sr"]["points"]:
        base = p["without_update"]  # the stream alone, the model as shipped: bicubic-sr's point
        assert base["kbps"] == pytest.approx(plain[p["crf"]]["kbps"], rel=0.05)
        assert base["psnr_y"] == pytest.approx(plain[p["crf"]]["psnr_y"], abs=0.2)
        if "model_bytes" in p:  # the update sent: its bytes are in the rate
            model_kbps = p["model_bytes"] * 8 / (2 / 25) / 1000
            assert 16 < p["model_bytes"] < 7000 and p["kbps"] == pytest.approx(base["kbps"] + model_kbps, rel=1e-9)
        else:  # not worth its bits: the point is the stream alone
            assert (p["kbps"], p["psnr_y"]) == (base["kbps"], base["psnr_y"])
