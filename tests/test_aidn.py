"""The scale-arbitrary pair (issue 13, AIDN's setting): one network for every factor in [1.5, 4], fractional sizes,
training that draws a factor per batch, and the commands at a fractional --scale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mobile_sr.cli import main
from mobile_sr.data.datasets import BenchmarkImage, ScaledPatches, load_benchmark_at
from mobile_sr.data.images import read_rgb
from mobile_sr.data.imresize import cells, imresize, quantize, side_at
from mobile_sr.evaluation import pipeline_for
from mobile_sr.inference import downscale_tiled, upscale_tiled
from mobile_sr.models import ModelError, create_model, load_model
from mobile_sr.models.aidn import TRAIN_FACTORS
from mobile_sr.train.trainer import TrainConfig, step_loss

from .conftest import REPO, write_checkpoint

HR = REPO / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x2" / "HR"


def random_aidn(seed: int = 0):
    """rescale-aidn with every weight random, the zero-initialised last layers included (an untrained pair *is*
    bicubic, which would hide a wrong crop or a misplaced tile)."""
    torch.manual_seed(seed)
    pair = create_model("rescale-aidn", 2.5, pretrained=False)
    with torch.no_grad():
        for name, p in pair.named_parameters():
            if name.endswith("weight") and p.abs().sum() == 0:
                p.normal_(0, 0.01)
            elif "mlp.2" in name:  # FiLM: a factor-dependent gain and shift
                p.normal_(0, 0.1)
    return pair.eval()


@pytest.fixture(scope="module")
def aidn_ckpt(tmp_path_factory) -> Path:
    return write_checkpoint(random_aidn(), "rescale-aidn", tmp_path_factory.mktemp("aidn"))


def test_factors_are_fractions_with_exact_sizes():
    assert cells(2) == (2, 1) and cells(2.5) == (5, 2) and cells(1.5) == (3, 2) and cells(3.25) == (13, 4)
    with pytest.raises(ValueError, match="fraction p/q"):
        cells(3.14159)
    assert side_at(255, 1 / 2.5) == 102 and side_at(102, 2.5) == 255  # 255 * 0.4 is 102.00000000000001
    assert side_at(90, 1 / 2.25) == 40


@pytest.mark.parametrize("scale", [1.5, 2, 2.5, 3.25, 4])
def test_an_untrained_pair_is_bicubic_down_and_up_at_any_factor(scale):
    pair = create_model("rescale-aidn", scale, pretrained=False)
    p, _ = cells(scale)
    hr = read_rgb(HR / "img_002.png")[None, :, : 4 * p * 3, : 4 * p * 2]
    with torch.no_grad():
        lr, sr = pair(hr, scale=scale)
    torch.testing.assert_close(lr, imresize(hr, 1 / scale), atol=1e-6, rtol=0)
    torch.testing.assert_close(sr, imresize(lr, scale), atol=1e-6, rtol=0)


@pytest.mark.parametrize("scale", [1.5, 2.5, 3.25, 4])
def test_any_hr_size_gives_matlab_lr_sizes_and_the_hr_size_back(scale):
    pair = random_aidn()
    hr = torch.rand(1, 3, 61, 47)  # odd, and no multiple of any numerator
    with torch.no_grad():
        lr, sr = pair(hr, scale=scale)
    assert lr.shape[-2:] == (side_at(61, 1 / scale), side_at(47, 1 / scale))
    assert sr.shape == hr.shape
    alone = pair.upscaler(lr, scale)  # without the HR's size: MATLAB's ceil(h * s)
    assert alone.shape[-2:] == (side_at(lr.shape[-2], scale), side_at(lr.shape[-1], scale))


def test_the_factor_conditions_both_halves():
    """FiLM makes every block a function of the factor: the same features through the same block differ between
    x2 and x3, in the downscaler and the restoration; and the output is continuous in the factor."""
    pair = random_aidn()
    hr = read_rgb(HR / "img_003.png")[None, :, :60, :60]
    with torch.no_grad():
        assert torch.allclose(pair.downscaler(hr, 2.0), pair.downscaler(hr, 2.0 + 1e-9), atol=1e-6)
        for half in (pair.downscaler, pair.upscaler):
            f = torch.rand(1, half.width, 16, 16)
            assert (half.body[0](f, 2.0) - half.body[0](f, 3.0)).abs().max() > 1e-3, type(half).__name__


def test_one_step_trains_the_downscaler_through_the_rounding_at_the_batch_factor():
    pair = random_aidn().train()
    hr = read_rgb(HR / "img_002.png")[None, :, :50, :50]
    lr = quantize(imresize(hr.double(), 1 / 2.5)).float()
    cfg = TrainConfig(model="rescale-aidn", scale=2, data=[], out="")
    loss = step_loss(cfg, pair, lr, hr)
    loss.backward()
    assert pair.downscaler.head[0].weight.grad.abs().sum() > 0  # through the 8-bit rounding to the HR side
    assert pair.upscaler.tails["3"][0].weight.grad.abs().sum() > 0  # x2.5 restores with the x3 tail
    assert pair.upscaler.tails["2"][0].weight.grad is None


def test_scaled_patches_draw_one_factor_per_step_with_exact_matlab_lr(tmp_path):
    data = ScaledPatches([HR], TRAIN_FACTORS, 48)
    seen = set()
    for step in range(40):
        factor = data.factor(0, step)
        lr, hr = data.batch(0, step, range(2))
        p, q = cells(factor)
        assert hr.shape[-1] == 48 - 48 % p and lr.shape[-1] * p == hr.shape[-1] * q
        seen.add(factor)
    assert len(seen) >= 8 and seen <= set(TRAIN_FACTORS)
    # Replayed exactly (resume), and the LR is MATLAB bicubic of the crop with its margin (interior equal).
    a, b = data.batch(0, 7, range(2)), data.batch(0, 7, range(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    lr, hr = data.sample(0, 7, 0)
    factor = data.factor(0, 7)
    again = quantize(imresize(hr.double(), 1 / factor)).float()
    m = 3
    assert (lr[:, m:-m, m:-m] - again[:, m:-m, m:-m]).abs().max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("scale", [1.5, 2.5])
def test_tiled_at_a_fractional_factor_equals_one_pass(scale):
    pair = random_aidn()
    p, q = cells(scale)
    hr = read_rgb(HR / "img_004.png")[:, : 30 * p, : 24 * p]
    with torch.no_grad():
        whole = pair.downscaler(hr[None], scale)[0]
        tiled = downscale_tiled(lambda x: pair.downscaler(x, scale), hr, scale, tile=20)
        assert torch.allclose(whole, tiled, atol=1e-5)
        up_whole = pair.upscaler(whole[None], scale)[0]
        up_tiled = upscale_tiled(lambda x: pair.upscaler(x, scale), whole, scale, tile=20)
    assert up_tiled.shape == hr.shape and torch.allclose(up_whole, up_tiled, atol=1e-5)


def test_benchmarks_at_a_fractional_factor_crop_to_the_numerator():
    (img, *_) = load_benchmark_at("Set5", 2.5)
    assert img.hr.shape[-1] % 5 == 0 and img.lr.shape[-1] * 5 == img.hr.shape[-1] * 2
    assert torch.equal(img.lr, quantize(imresize(img.hr.double(), 0.4)).float())


def test_the_pair_round_trips_through_files_at_x2_5(tmp_path, aidn_ckpt):
    hr_path = HR / "img_001.png"  # 512x512: cropped to 510, a multiple of 5
    r = CliRunner().invoke(main, ["downscale", str(hr_path), "-o", str(tmp_path / "lr.png"), "--model", str(aidn_ckpt),
                                  "--scale", "2.5", "--tile", "40"])
    assert r.exit_code == 0, r.output
    assert "cropped to 510x510, a multiple of 5 (x2.5 = 5/2)" in r.output and "204x204" in r.output
    r = CliRunner().invoke(main, ["upscale", str(tmp_path / "lr.png"), "-o", str(tmp_path / "sr.png"),
                                  "--model", str(aidn_ckpt), "--scale", "2.5", "--tile", "40"])
    assert r.exit_code == 0, r.output
    assert "510x510" in r.output and "PyTorch" in r.output  # auto runs a scale-arbitrary model in PyTorch
    pipe = pipeline_for(load_model(aidn_ckpt, 2.5))
    lr = pipe.low_res(BenchmarkImage("x", torch.zeros(0), read_rgb(hr_path)[:, :510, :510]))
    assert torch.equal(read_rgb(tmp_path / "lr.png"), lr)
    sr = pipe.upscale_lr(lr).clamp(0, 1).mul(255).round().div(255)  # untiled: tiles agree to float rounding,
    assert (read_rgb(tmp_path / "sr.png") - sr).abs().max() <= 1 / 255 + 1e-6  # which can flip a level


def test_eval_at_a_fractional_factor_reports_the_lr_fidelity(tmp_path, aidn_ckpt):
    out = tmp_path / "e.json"
    r = CliRunner().invoke(main, ["eval", "--model", str(aidn_ckpt), "--scale", "3.5", "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["scale"] == 3.5 and len(doc["images"]) == 5 and doc["mean_lr_psnr"] > 30
    assert "(cropped HR's) MATLAB-bicubic LR" in r.output and "x3.5 (Y, crop 4)" in r.output


@pytest.mark.parametrize("args,message", [
    (["--scale", "5"], "serves any factor in [1.5, 4], not x5"),
    (["--scale", "2.55"], "fraction p/q with q <= 16"),
    (["--scale", "two"], "'two' is not a number"),
    (["--scale", "2.5", "--runtime", "onnx"], "runs in PyTorch only"),
])
def test_bad_factors_and_runtimes_are_one_line(aidn_ckpt, args, message):
    r = CliRunner().invoke(main, ["eval", "--model", str(aidn_ckpt), *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_fractional_factors_are_refused_for_integer_models_and_tiny_images(tmp_path, aidn_ckpt):
    with pytest.raises(ModelError, match="no shipped weights for elsr x2.5"):
        load_model("elsr", 2.5)
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    r = CliRunner().invoke(main, ["downscale", str(tmp_path / "tiny.png"), "-o", str(tmp_path / "lr.png"),
                                  "--model", str(aidn_ckpt), "--scale", "2.5"])
    assert r.exit_code == 2 and "smaller than the scale x2.5's 5-pixel cell" in r.output
    assert not (tmp_path / "lr.png").exists()


def test_a_short_run_writes_one_file_for_every_factor(tmp_path):
    """Resume needs nothing new here: the trainer's is generic, and the factor and patches of a step are a pure
    function of (seed, step) (tested above)."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("img_001.png", "img_002.png"):
        Image.open(HR / name).save(data / name)
    r = CliRunner().invoke(main, ["train", "--model", "rescale-aidn", "--scale", "2", "--data", str(data), "--batch",
                                  "2", "--patch", "32", "--val-every", "2", "--steps", "2", "--arch",
                                  "downscaler.width=8", "--arch", "upscaler.width=8", "--out", str(tmp_path / "run"),
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "best Set5 x2 PSNR" in r.output  # validated at its --scale
    a, b = load_model(tmp_path / "run", 3.5), load_model(tmp_path / "run", 1.5)
    assert a.scale == 3.5 and b.scale == 1.5 and a.module.upscaler.width == 8
    for x, y in zip(a.module.state_dict().values(), b.module.state_dict().values(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.slow
@pytest.mark.extras("onnx")
def test_at_an_integer_factor_the_restoration_exports_and_verifies_on_its_own_lr(tmp_path, aidn_ckpt):
    """At x2 the resizes are constant matrices of the fixed-size graph: a real ONNX export, checked in ONNX Runtime
    on the pair's own 8-bit LR."""
    r = CliRunner().invoke(main, ["export", "--model", str(aidn_ckpt), "--scale", "2", "--target", "onnx",
                                  "--input-size", "64x64", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "rescale-aidn_x2_64x64_fp32.onnx.json").read_text())
    assert doc["verification"]["status"] == "passed" and "downscaler" in doc["verification"]["lr_source"]
