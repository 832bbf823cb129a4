"""Learned downscaling (issue 13): the TAD downscaler, honest 8-bit training, the pair on disk and in memory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mobile_sr.cli import main
from mobile_sr.data.datasets import BenchmarkImage, load_benchmark
from mobile_sr.data.images import read_rgb
from mobile_sr.data.imresize import imresize, quantize
from mobile_sr.evaluation import Jpeg, Pipeline, evaluate, pipeline_for
from mobile_sr.inference import downscale_tiled
from mobile_sr.metrics import psnr
from mobile_sr.models import MODELS, load_model
from mobile_sr.models.bicubic import BicubicConv
from mobile_sr.models.car import CAR
from mobile_sr.models.tad import TAD
from mobile_sr.train.channel import round_8bit
from mobile_sr.train.trainer import TrainConfig, step_loss

from .conftest import REPO, random_pair

HR = REPO / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x2" / "HR"


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("cells", [(12, 7), (1, 1), (2, 1)])
def test_bicubic_conv_is_matlab_imresize(scale, cells):
    """The exportable strided-conv bicubic equals imresize, borders included (symmetric padding), down to an
    image of one LR pixel, narrower than the padding."""
    x = torch.rand(2, 3, cells[0] * scale, cells[1] * scale, dtype=torch.float64)
    assert (BicubicConv(scale)(x) - imresize(x, 1 / scale)).abs().max() < 1e-12


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_car_resampler_starts_as_bicubic_and_its_kernels_always_sum_to_one(scale):
    hr = read_rgb(HR.parent.parent / f"x{scale}" / "HR" / "img_002.png")[None, :, : 16 * scale, : 12 * scale]
    car = CAR(scale)
    assert (car(hr) - imresize(hr.double(), 1 / scale).float()).abs().max() < 1e-5
    torch.nn.init.normal_(car.kernels.weight, std=0.05)
    assert (car.kernel(hr).sum(dim=1) - 1).abs().max() < 1e-5
    assert (car(hr) - imresize(hr.double(), 1 / scale).float()).abs().max() > 1e-3  # the kernels do adapt


@pytest.mark.parametrize("scale", [2, 4])
def test_car_offsets_move_the_footprint_by_linear_interpolation(scale):
    """``offsets=1``: untrained it is still bicubic; a shift of half an HR pixel down is bicubic of the picture
    linearly interpolated half a pixel down (checked away from the borders, whose padding differs), and the
    moved kernels still sum to one."""
    gen = torch.Generator().manual_seed(0)
    big = torch.rand(1, 3, 8 * scale + 1, 8 * scale, generator=gen)
    hr = big[:, :, :-1]
    car = CAR(scale, offsets=1)
    assert car.config()["offsets"] == 1 and "offsets" not in CAR(scale).config()
    assert (car(hr) - imresize(hr.double(), 1 / scale).float()).abs().max() < 1e-5
    with torch.no_grad():
        car.shift.bias.copy_(torch.tensor([math.atanh(0.5), 0.0]))  # (dy, dx) = (0.5, 0) at every LR pixel
    moved = 0.5 * big[:, :, :-1] + 0.5 * big[:, :, 1:]
    want = imresize(moved.double(), 1 / scale).float()
    inner = (slice(None), slice(None), slice(2, 6), slice(2, 6))
    assert (car(hr)[inner] - want[inner]).abs().max() < 1e-5
    assert (car(hr)[inner] - imresize(hr.double(), 1 / scale).float()[inner]).abs().max() > 1e-2  # it did move
    torch.nn.init.normal_(car.kernels.weight, std=0.05)
    torch.nn.init.normal_(car.shift.weight, std=0.5)
    assert (car.kernel(hr).sum(dim=1) - 1).abs().max() < 1e-5
    # From the untrained start (zero offsets) the loss reaches the offsets: they can leave the grid.
    fresh = CAR(scale, offsets=1)
    torch.nn.init.normal_(fresh.kernels.weight, std=0.05)
    fresh(hr).square().mean().backward()
    assert fresh.shift.weight.grad.abs().sum() > 0 and fresh.shift.bias.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="offsets"):
        CAR(scale, offsets=2)


def test_an_untrained_tad_is_bicubic_downscaling_and_refuses_fractional_factors():
    hr = read_rgb(HR / "img_001.png")[None]
    assert (TAD(2)(hr) - imresize(hr, 0.5)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="integer factor"):
        TAD(2.5)


def test_the_gradient_flows_through_the_8bit_rounding():
    x = torch.tensor([0.1234, 0.5, 0.9999, 1.3, -0.2], requires_grad=True)
    y = round_8bit(x)
    assert torch.equal(y * 255, (y * 255).round())  # on the 8-bit grid
    assert y.min() >= 0 and y.max() <= 1
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]  # straight through inside [0, 1], clamped outside


def test_one_pair_step_trains_the_downscaler_through_the_rounding_and_the_lr_term():
    pair = random_pair().train()
    hr = read_rgb(HR / "img_002.png")[None, :, :48, :48]
    lr = quantize(imresize(hr.double(), 0.5)).float()
    cfg = TrainConfig(model="rescale", scale=2, data=[], out="", lr_weight=1.0)
    step_loss(cfg, pair, lr, hr).backward()
    assert pair.downscaler.out.weight.grad.abs().sum() > 0
    # The LR term alone reaches the downscaler too, and an unconstrained run has none.
    pair.zero_grad()
    honest = step_loss(cfg, pair, lr, hr)
    free = step_loss(TrainConfig(model="rescale", scale=2, data=[], out="", unconstrained=True), pair, lr, hr)
    assert honest.item() > free.item() > 0


def test_the_pair_round_trips_through_files(tmp_path, pair_ckpt):
    """downscale to a PNG on disk, then upscale it: the same pixels as the in-memory pipeline eval scores."""
    hr_path = HR / "img_003.png"
    r = CliRunner().invoke(main, ["downscale", str(hr_path), "-o", str(tmp_path / "lr.png"), "--model", str(pair_ckpt),
                                  "--tile", "32"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["upscale", str(tmp_path / "lr.png"), "-o", str(tmp_path / "sr.png"),
                                  "--model", str(pair_ckpt), "--tile", "0", "--runtime", "torch"])
    assert r.exit_code == 0, r.output
    assert "trained on its own downscaler's LR" in r.output  # the note that a pair's upscaler wants its LR

    pipe = pipeline_for(load_model(pair_ckpt))
    hr = read_rgb(hr_path)
    img = BenchmarkImage("x", torch.zeros(0), hr)
    lr = pipe.low_res(img)
    assert torch.equal(read_rgb(tmp_path / "lr.png"), lr)  # tiled on disk == untiled in memory, to the level
    sr = pipe.upscale_lr(lr).clamp(0, 1).mul(255).round().div(255)
    assert torch.equal(read_rgb(tmp_path / "sr.png"), sr)
    # The learned LR is not bicubic (the test can fail), but still looks like the picture.
    bicubic = quantize(imresize(hr.double(), 0.5)).float()
    assert 0 < (lr - bicubic).abs().max()
    assert (lr - bicubic).abs().mean() < 0.02


def test_downscale_writes_the_jpeg_the_evaluation_codec_sends(tmp_path, pair_ckpt):
    out = tmp_path / "lr.jpg"
    r = CliRunner().invoke(main, ["downscale", str(HR / "img_004.png"), "-o", str(out), "--model", str(pair_ckpt),
                                  "--jpeg-quality", "75"])
    assert r.exit_code == 0, r.output
    pipe = pipeline_for(load_model(pair_ckpt), codec=Jpeg(75))
    lr = pipe.low_res(BenchmarkImage("x", torch.zeros(0), read_rgb(HR / "img_004.png")))
    assert torch.equal(read_rgb(out), lr)
    r = CliRunner().invoke(main, ["downscale", str(HR / "img_004.png"), "-o", str(tmp_path / "lr.png"),
                                  "--model", str(pair_ckpt), "--jpeg-quality", "75"])
    assert r.exit_code == 2 and "name it .jpg" in r.output


def test_odd_sides_are_cropped_to_the_scale_and_said_so(tmp_path, pair_ckpt):
    src = tmp_path / "odd.png"
    Image.fromarray(np.asarray(Image.open(HR / "img_001.png"))[:45, :37]).save(src)
    r = CliRunner().invoke(main, ["downscale", str(src), "-o", str(tmp_path / "lr.png"), "--model", str(pair_ckpt)])
    assert r.exit_code == 0, r.output
    assert "37x45 (cropped to 36x44, a multiple of x2)" in r.output
    assert Image.open(tmp_path / "lr.png").size == (18, 22)


def test_downscale_bad_inputs_are_one_line_and_the_rest_of_the_folder_runs(tmp_path, pair_ckpt):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(np.zeros((1, 5, 3), np.uint8)).save(src / "tiny.png")  # 1 px high: smaller than x2
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    Image.open(HR / "img_001.png").crop((0, 0, 40, 40)).save(src / "good.jpg")
    r = CliRunner().invoke(main, ["downscale", str(src), "-o", str(dst), "--model", str(pair_ckpt)])
    assert r.exit_code == 2
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and any("smaller than the scale" in e for e in errors), r.output
    assert "Traceback" not in r.output
    assert sorted(p.name for p in dst.iterdir()) == ["good.png"]  # named .png: the LR is an 8-bit PNG


def test_downscale_refuses_an_upscaler_and_a_bicubic_downscaler_works(tmp_path):
    r = CliRunner().invoke(main, ["downscale", str(HR / "img_001.png"), "-o", str(tmp_path / "a.png"), "--model",
                                  "elsr"])
    assert r.exit_code == 2 and "downscale needs a pair" in r.output
    r = CliRunner().invoke(main, ["downscale", str(HR / "img_001.png"), "-o", str(tmp_path / "b.png"), "--model",
                                  "bicubic"])
    assert r.exit_code == 0, r.output
    published = read_rgb(REPO / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x2" / "LR" / "img_001.png")
    # MATLAB rounds between its two passes (toolchain notes), so a few pixels differ by a level.
    assert psnr(read_rgb(tmp_path / "b.png"), published, crop_border=0, test_y_channel=True) > 55


def test_eval_learned_reports_the_lr_fidelity_and_bicubic_gets_a_note(tmp_path, pair_ckpt):
    r = CliRunner().invoke(main, ["eval", "--model", str(pair_ckpt), "--pipeline", "learned", "--runtime", "torch",
                                  "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert "LR PSNR" in r.output and "downscaler -> 8-bit" in r.output
    learned = evaluate(pipeline_for(load_model(pair_ckpt)), load_benchmark("Set5", 2), with_ssim=False)
    assert f"{learned.psnr:.2f}" in r.output.splitlines()[-2]
    r = CliRunner().invoke(main, ["eval", "--model", str(pair_ckpt), "--pipeline", "bicubic"])
    assert r.exit_code == 0 and "on the published bicubic LR instead" in r.output
    r = CliRunner().invoke(main, ["eval", "--model", "elsr", "--pipeline", "learned"])
    assert r.exit_code == 2 and "no downscaler of its own" in r.output
    r = CliRunner().invoke(main, ["eval", "--model", str(pair_ckpt), "--jpeg-quality", "75"])
    assert r.exit_code == 0 and "jpeg q75" in r.output


def test_downscale_tiled_equals_one_pass():
    torch.manual_seed(0)
    tad = TAD(2)
    torch.nn.init.normal_(tad.out.weight, std=0.05)
    hr = read_rgb(HR / "img_005.png")[:, :120, :98]
    full = downscale_tiled(tad, hr, 2)
    tiled = downscale_tiled(tad, hr, 2, tile=16, overlap=8)
    assert full.shape == (3, 60, 49) and (full - tiled).abs().max() < 1e-5
    assert (full - downscale_tiled(tad, hr, 2, tile=16, overlap=0)).abs().max() > 1e-3  # seams without overlap


def test_pair_only_training_options_are_refused_elsewhere(tmp_path):
    r = CliRunner().invoke(main, ["train", "--model", "elsr", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                                  "--lambda", "4"])
    assert r.exit_code == 2 and "--lambda: not an option of elsr" in r.output and "for pairs" in r.output
    r = CliRunner().invoke(main, ["train", "--model", "rescale", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                                  "--arch", "width=4"])
    assert r.exit_code == 2 and "PART.KEY=INT" in r.output


def test_a_short_pair_run_validates_the_learned_pipeline_and_resumes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("img_001.png", "img_002.png"):
        Image.open(HR / name).save(data / name)
    out = tmp_path / "run"
    args = ["train", "--model", "rescale", "--scale", "2", "--data", str(data), "--out", str(out), "--steps", "4",
            "--batch", "2", "--patch", "32", "--val-every", "2", "--ckpt-every", "2", "--init-from", "elsr",
            "--lambda", "2", "--arch", "downscaler.width=8", "--arch", "downscaler.blocks=1", "--no-progress"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert all(h["val_lr_psnr"] > 35 for h in summary["history"])  # a near-bicubic LR at the start
    model = load_model(out)
    assert model.role == "pair" and model.module.downscaler.width == 8
    r = CliRunner().invoke(main, [*args[:-1], "--lambda", "3", "--resume", "--no-progress"])
    assert r.exit_code == 2 and "lr_weight differs" in r.output


def test_rescale_is_declared_a_pair():
    assert MODELS["rescale"].role == "pair" and MODELS["tad"].role == "downscaler"
    pipe = Pipeline(lambda t: t, 2, downscale=TAD(2))
    assert pipe.makes_lr


@pytest.mark.extras("train")
def test_jpeg_aware_training_sends_some_images_through_a_differentiable_jpeg_replayed_on_resume():
    from mobile_sr.train.channel import JpegRange, channel

    lr = imresize(read_rgb(HR / "img_001.png")[None, :, :96, :96].repeat(4, 1, 1, 1), 0.5).requires_grad_(True)
    rng = JpegRange.parse("70-80@0.5")
    a, b = channel(rng, 0, 7)(lr), channel(rng, 0, 7)(lr)
    assert torch.equal(a, b)  # a pure function of (seed, step): a resumed run replays it
    png = round_8bit(lr)
    coded = [not torch.equal(channel(rng, 0, step)(lr)[i], png[i]) for step in range(8) for i in range(4)]
    assert 0.2 < sum(coded) / len(coded) < 0.8  # at P = 0.5 some images are coded, the others sent as PNG
    assert torch.equal(a * 255, (a * 255).round())  # the decoded JPEG is an 8-bit image again
    full = channel(JpegRange.parse("75"), 0, 0)(lr)
    assert 30 < psnr(full[0].detach(), png[0].detach(), crop_border=0) < 50  # a real JPEG's loss
    full.sum().backward()
    assert lr.grad.abs().sum() > 0  # the gradient flows through the codec
    for bad in ("90-75", "0-50", "75-90@0", "high"):
        with pytest.raises(ValueError, match="--jpeg"):
            JpegRange.parse(bad)


@pytest.mark.slow
@pytest.mark.extras("train")
def test_a_jpeg_aware_pair_under_torchrun_trains_what_one_process_trains(tmp_path):
    """gloo DDP, 2 ranks, the global batch split between them: each image draws its JPEG quality from its index
    in the global batch, so both runs see the same codec and end with the same weights."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    data = tmp_path / "data"
    data.mkdir()
    for name in ("img_001.png", "img_002.png", "img_003.png"):
        Image.open(HR / name).save(data / name)

    def args(out: Path) -> list[str]:
        return ["train", "--model", "rescale", "--scale", "2", "--data", str(data), "--out", str(out), "--steps", "4",
                "--batch", "4", "--patch", "32", "--val-every", "0", "--init-from", "elsr", "--jpeg", "70-90@0.5",
                "--arch", "downscaler.width=8", "--arch", "downscaler.blocks=1", "--no-progress"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "mobile_sr", *args(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "mobile_sr", *args(tmp_path / "two")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stdout + two.stderr
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), (k, (a[k] - b[k]).abs().max())
    assert not torch.equal(a["downscaler.out.weight"], torch.zeros_like(a["downscaler.out.weight"]))  # it trained
