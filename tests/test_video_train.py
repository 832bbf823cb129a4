"""Compression-aware SR and NAS-style fine-tuning (issue 14): codec-degraded training data through a real x264,
``train --lr-codec``, the shipped ``elsr-h264``, ``train.finetune`` and ``video finetune``. Small real frames
(Vid4 city crops, two T91 images), real x264 through PyAV."""

from __future__ import annotations

import json
import lzma
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mobile_sr.cli import main
from mobile_sr.data.codec_lr import CodecRange, CodecTrainPatches, bicubic_lr, vid4_codec_images
from mobile_sr.data.datasets import load_benchmark
from mobile_sr.data.images import save_image
from mobile_sr.evaluation import Pipeline, bicubic_pipeline, evaluate
from mobile_sr.metrics import psnr
from mobile_sr.models import load_model, manifest
from mobile_sr.train.finetune import UPDATE_FILE, UPDATE_STEP, apply_update, encode_update, finetune

from .conftest import SHARED

pytestmark = pytest.mark.extras("video")

VID4 = SHARED / "video" / "vid4"
TRAIN = SHARED / "train" / "T91"
need_vid4 = pytest.mark.skipif(not VID4.is_dir(), reason=f"needs ../shared/datasets/video ({VID4} is absent)")
need_train = pytest.mark.skipif(not TRAIN.is_dir(), reason=f"needs ../shared/datasets/train ({TRAIN} is absent)")


def one_error(result) -> str:  # noqa: ANN001 - a click Result
    """The run failed as bad input: exit 2, exactly one ``error:`` line on stderr, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (result.exit_code,
                                                                                         result.output)
    return lines[0]


def city_pairs(n: int = 4, size: int = 64, crf: int = 32) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(decoded LR, HR) uint8 frames: ``n`` centre crops of city through bicubic x2 and one x264 clip."""
    images = vid4_codec_images(VID4 / "city", 2, crf, frames=n, size=size)
    return ([(i.lr * 255).round().to(torch.uint8) for i in images],
            [(i.hr * 255).round().to(torch.uint8) for i in images])


# --- the --lr-codec spec -------------------------------------------------------------------------------------------

def test_codec_range_parses_levels_and_refuses_bad_specs() -> None:
    r = CodecRange.parse("h264:24-40")
    assert (r.codec, r.lo, r.hi, r.prob) == ("h264", 24, 40, 1.0) and r.levels == tuple(range(24, 41, 2))
    assert CodecRange.parse("H264:24-38/5@0.5").levels == (24, 29, 34, 38)  # HI is always a level
    assert str(CodecRange.parse("h264:24-38/5@0.5")) == "h264:24-38/5@0.5"
    assert CodecRange.parse("h264:30").levels == (30,)
    for bad in ("h264", "vp9:20-30", "h264:40-24", "h264:20-60", "h264:a-b", "h264:20-30@0", "h264:20-30/0"):
        with pytest.raises(ValueError, match="--lr-codec"):
            CodecRange.parse(bad)


def test_lr_codec_is_refused_where_it_does_not_apply(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    base = ["train", "--data", str(data), "--steps", "2", "--no-progress"]
    for model in ("rescale", "ofa-sr"):  # a pair makes its own LR; the supernet trainer has no codec LR
        line = one_error(CliRunner().invoke(main, [*base, "--out", str(tmp_path / model), "--model", model,
                                                   "--lr-codec", "h264:24-40"]))
        assert "--lr-codec" in line and not (tmp_path / model).exists()
    for bad in ("vp9:20-30", "h264:40-20", "h264"):
        line = one_error(CliRunner().invoke(main, [*base, "--out", str(tmp_path / "e"), "--model", "elsr",
                                                   "--lr-codec", bad]))
        assert "--lr-codec" in line and not (tmp_path / "e").exists()


# --- codec-degraded training patches ---------------------------------------------------------------------------------

@need_train
def test_codec_patches_are_deterministic_aligned_and_degraded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(TRAIN.glob("*.png"))[:2]:
        shutil.copy(p, data)
    spec = CodecRange.parse("h264:28-40/12")  # two levels: 28 and 40
    a = CodecTrainPatches([data], 2, 32, spec, cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # one cache file per image
    b = CodecTrainPatches([data], 2, 32, spec, cache=tmp_path / "cache")  # read back from the cache
    c = CodecTrainPatches([data], 2, 32, spec, cache=tmp_path / "other")  # encoded afresh: x264 is deterministic
    for step, index in ((0, 0), (7, 3), (123, 31)):
        lr, hr = a.sample(5, step, index)
        assert lr.shape == (3, 16, 16) and hr.shape == (3, 32, 32) and lr.dtype == torch.float32
        for other in (b, c):
            lr2, hr2 = other.sample(5, step, index)
            assert torch.equal(lr, lr2) and torch.equal(hr, hr2)
    assert not torch.equal(a.sample(5, 1, 0)[0], a.sample(6, 1, 0)[0])  # the seed matters
    # Aligned: the LR patch is (a decoded) bicubic of its HR patch, far closer to it than to a shifted one.
    lr, hr = a.sample(0, 2, 1)
    clean = bicubic_lr((hr * 255).round().to(torch.uint8), 2).float() / 255
    shifted = bicubic_lr((hr.roll(2, -1) * 255).round().to(torch.uint8), 2).float() / 255
    inner = (slice(None), slice(2, -2), slice(2, -2))  # away from the patch border (bicubic support)
    assert psnr(lr[inner], clean[inner], 0) > psnr(lr[inner], shifted[inner], 0) + 3
    # Degraded: decoded differs from clean (below 40 dB: not near-lossless), more at CRF 40 than at 28, yet stays
    # the picture: above a content-free frame of its mean colour (T91's small, dense textures at CRF 40 come close).
    for clean_lr, coded in zip(a.clean, a.coded, strict=True):
        ref = clean_lr.float() / 255
        db = {crf: psnr(frame.float() / 255, ref, 0, test_y_channel=True) for crf, frame in coded.items()}
        flat = psnr(ref.mean((1, 2), keepdim=True).expand_as(ref), ref, 0, test_y_channel=True)
        assert 40 > db[28] > db[40] > flat, (db, flat)


@need_train
def test_training_with_lr_codec_reports_a_codec_validation_figure(tmp_path: Path) -> None:
    from mobile_sr.train.trainer import TrainConfig, train

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sorted(TRAIN.glob("*.png"))[0], data)
    cfg = TrainConfig(model="elsr", scale=2, data=[str(data)], out=str(tmp_path / "run"), steps=2, batch=2, patch=32,
                      val_every=2, lr_codec="h264:30-40/10")
    summary = train(cfg, progress=False)
    hist = json.loads((tmp_path / "run" / "summary.json").read_text())["history"]
    assert summary["step"] == 2 and hist[-1]["val_codec_psnr"] < hist[-1]["val_psnr"]  # clean Set5 is easier
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr_codec"] == "h264:30-40/10"


# --- the shipped compression-aware ELSR ---------------------------------------------------------------------------

@need_vid4
@pytest.mark.parametrize("clip", ["city", "walk"])
@pytest.mark.parametrize("clean", ["elsr", "ofa-m"])
def test_codec_trained_upscaler_beats_its_clean_trained_network_on_x264_decoded_frames(clip: str, clean: str) -> None:
    """On real x264 P/B frames of a sequence in no training set, at a low rate (CRF 32 and 38), the codec-trained
    model (elsr-h264, ofa-m-h264) restores more than the clean-trained one: any margin > 0 is the claim (same network,
    same frames). Not at CRF 26: on city elsr and elsr-h264 tie there (-0.05 dB over the whole sequence,
    benchmarks/compression_aware.json)."""
    elsr, h264 = load_model(clean), load_model(f"{clean}-h264")
    assert h264.module.config() == elsr.module.config()
    for crf in (32, 38):
        images = vid4_codec_images(VID4 / clip, 2, crf, frames=4, size=192)
        base = evaluate(Pipeline(elsr.upscaler, 2), images, with_ssim=False).psnr
        aware = evaluate(Pipeline(h264.upscaler, 2), images, with_ssim=False).psnr
        assert aware > base, (clip, crf, aware, base)


@pytest.mark.parametrize("name", ["elsr-h264", "ofa-m-h264"])
def test_codec_trained_upscaler_is_not_catastrophically_worse_on_clean_set5(name: str) -> None:
    """Clean LR is not what it is for, but it must stay an upscaler: above bicubic upsampling on Set5 x2, measured
    here under the same protocol (the published figure is 33.66 dB)."""
    images = load_benchmark("Set5", 2)
    floor = evaluate(bicubic_pipeline(2), images, with_ssim=False).psnr
    assert floor == pytest.approx(33.66, abs=0.05)
    assert evaluate(Pipeline(load_model(name).upscaler, 2), images, with_ssim=False).psnr > floor
    man = manifest(name, 2)
    assert man is not None and "--lr-codec" in json.dumps(man["command"])


# --- NAS-style fine-tuning ------------------------------------------------------------------------------------------

@need_vid4
def test_finetune_improves_its_own_frames_without_touching_the_input() -> None:
    lr, hr = city_pairs()
    model = load_model("elsr")
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    res = finetune(model, lr, hr, 4.0, batch=8, patch=64)
    assert res.steps > 0 and res.seconds >= 4.0  # it ran, and returned once its budget was spent
    assert res.psnr_after > res.psnr_before, (res.psnr_before, res.psnr_after)
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())  # input not mutated
    assert res.model.module is not model.module and res.model.name == "elsr" and res.model.scale == 2
    tuned = res.model.module.state_dict()
    assert any(not torch.equal(before[k], tuned[k]) for k in before)
    # The model is what the phone rebuilds from the bytes sent: the base it ships with, plus the update.
    rebuilt = apply_update(model.module, res.update).state_dict()
    assert all(torch.equal(rebuilt[k], v) for k, v in tuned.items())
    for k, v in tuned.items():  # every weight moved by a whole number of steps (float32 rounding aside)
        moved = (v - before[k]) / UPDATE_STEP
        assert torch.allclose(moved, moved.round(), atol=1e-3), k
    # psnr_after is the returned model's figure on those frames
    images = vid4_codec_images(VID4 / "city", 2, 32, frames=4, size=64)
    assert evaluate(Pipeline(res.model.upscaler, 2), images, with_ssim=False).psnr == pytest.approx(res.psnr_after)
    weights = sum(v.numel() for v in tuned.values())
    assert res.bytes == len(res.update) < weights // 2  # int8 offsets, mostly zero: well under a byte a weight


def test_weight_update_round_trip_and_refusals() -> None:
    """encode_update / apply_update are the stream's format: offsets in steps come back exactly, and an update
    that was made for another model, or is not one, is refused with a reason, not applied."""
    base = load_model("elsr").module
    gen = torch.Generator().manual_seed(0)
    offsets = {k: torch.randint(-3, 4, p.shape, generator=gen).to(torch.int8) for k, p in base.named_parameters()}
    moved = apply_update(base, encode_update(offsets))
    for (k, p), (_, q) in zip(base.named_parameters(), moved.named_parameters(), strict=True):
        assert torch.equal(q, p + offsets[k].float() * UPDATE_STEP), k
    assert moved is not base
    assert not any(torch.equal(p, q) for p, q in zip(base.parameters(), moved.parameters(), strict=True))
    with pytest.raises(ValueError, match="another model"):
        apply_update(load_model("fsrcnn").module, encode_update(offsets))
    with pytest.raises(ValueError, match="not a weight update"):
        apply_update(base, b"not xz at all")
    with pytest.raises(ValueError, match="bad header"):
        apply_update(base, lzma.compress(b"MSRX1" + bytes(100)))
    with pytest.raises(ValueError, match="outside int8"):
        encode_update({"w": torch.tensor([128], dtype=torch.int32)})


def test_finetune_refuses_misaligned_frames() -> None:
    model = load_model("elsr")
    lr = [torch.zeros(3, 16, 16, dtype=torch.uint8)]
    with pytest.raises(ValueError, match="x2"):
        finetune(model, lr, [torch.zeros(3, 30, 32, dtype=torch.uint8)], 1.0)
    with pytest.raises(ValueError, match="as many"):
        finetune(model, lr, [], 1.0)
    with pytest.raises(ValueError, match="uint8"):
        finetune(model, [lr[0].float()], [torch.zeros(3, 32, 32)], 1.0)


def _frames_folder(tmp_path: Path, n: int = 3, size: int = 64) -> Path:
    from mobile_sr.data.images import LoadedImage

    _, hr = city_pairs(n, size)
    src = tmp_path / "src"
    src.mkdir()
    for k, f in enumerate(hr):
        save_image(LoadedImage(f.float() / 255, None, False, False, None, None), src / f"f{k:03d}.png")
    return src


@need_vid4
def test_video_finetune_writes_a_folder_load_model_loads(tmp_path: Path) -> None:
    src = _frames_folder(tmp_path)
    out = tmp_path / "tuned"
    r = CliRunner().invoke(main, ["video", "finetune", str(src), "-o", str(out), "--model", "elsr",
                                  "--minutes", "0.04", "--crf", "34", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors", UPDATE_FILE]
    man = json.loads((out / "model.json").read_text())
    assert man["crf"] == 34 and man["source"] == str(src) and man["frames"] == 3 and man["steps"] > 0
    update = (out / UPDATE_FILE).read_bytes()
    assert man["bytes"] == len(update) and man["update_step"] == UPDATE_STEP  # the file, as streamed
    loaded = load_model(out)
    assert (loaded.name, loaded.role, loaded.scale) == ("elsr", "upscaler", 2)
    base = load_model("elsr").module
    assert not all(torch.equal(a, b) for a, b in zip(loaded.module.state_dict().values(),
                                                     base.state_dict().values(), strict=True))
    rebuilt = apply_update(base, update).state_dict()  # the phone's model from the base and the update file
    assert all(torch.equal(rebuilt[k], v) for k, v in loaded.module.state_dict().items())
    r = CliRunner().invoke(main, ["upscale", str(src / "f000.png"), "-o", str(tmp_path / "up.png"),
                                  "--model", str(out), "--runtime", "torch"])
    assert r.exit_code == 0, r.output


@need_vid4
def test_video_finetune_bad_input_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    src = _frames_folder(tmp_path, n=2, size=32)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    held = tmp_path / "held"
    held.mkdir()
    (held / "keep.txt").write_text("mine")
    cases = [
        ([str(tmp_path / "missing.mp4")], "out1"),
        ([str(empty)], "out2"),
        ([str(src), "--codec", "vp9"], "out3"),
        ([str(src), "--model", "bicubic"], "out4"),
    ]
    for args, name in cases:
        argv = ["video", "finetune", args[0], "-o", str(tmp_path / name), "--no-progress",
                *(args[1:] if "--model" in args else ["--model", "elsr", *args[1:]])]
        one_error(CliRunner().invoke(main, argv))
        assert not (tmp_path / name).exists()
    one_error(CliRunner().invoke(main, ["video", "finetune", str(src), "-o", str(held), "--model", "elsr"]))
    assert sorted(p.name for p in held.iterdir()) == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
