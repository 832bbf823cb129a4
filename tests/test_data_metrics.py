"""The evaluation protocol: MATLAB-bicubic LR reproduction and the published bicubic table."""

from __future__ import annotations

import math

import pytest
import torch

from mobile_sr.data.datasets import TrainPatches, load_benchmark
from mobile_sr.data.imresize import imresize, quantize
from mobile_sr.evaluation import bicubic_pipeline, evaluate
from mobile_sr.metrics import psnr, ssim

from .conftest import REPO


def _lr_match(root, name: str, scale: int) -> list[float]:
    scores = []
    for img in load_benchmark(name, scale, root):
        mine = quantize(imresize(img.hr.double(), 1 / scale))
        scores.append(psnr(mine, img.lr, crop_border=0, test_y_channel=False))
    return scores


@pytest.mark.parametrize("name", ["Set5", "Set14"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_imresize_reproduces_matlab_lr(shared_benchmark, name, scale):
    scores = _lr_match(shared_benchmark, name, scale)
    assert min(scores) >= 48.0, scores
    assert sum(scores) / len(scores) >= 54.0, scores


def test_imresize_matches_builtin_set5_without_shared():
    scores = _lr_match(None, "Set5", 4)
    assert min(scores) >= 48.0 and sum(scores) / len(scores) >= 54.0


def test_imresize_is_batched_and_sized_like_matlab():
    x = torch.rand(2, 3, 37, 50, dtype=torch.float64)
    y = imresize(x, 1 / 4)
    assert y.shape == (2, 3, 10, 13)  # ceil(37/4), ceil(50/4)
    assert torch.allclose(y[1], imresize(x[1], 1 / 4))
    const = torch.full((1, 3, 16, 16), 0.25, dtype=torch.float64)
    assert torch.allclose(imresize(const, 0.5), torch.full((1, 3, 8, 8), 0.25, dtype=torch.float64))


BICUBIC_TABLE = {("Set5", 2): 33.67, ("Set5", 3): 30.40, ("Set5", 4): 28.43, ("Set14", 2): 30.33, ("Set14", 3): 27.63,
                 ("Set14", 4): 26.09}


@pytest.mark.parametrize("name,scale", list(BICUBIC_TABLE))
def test_bicubic_baseline_matches_published_table(shared_benchmark, name, scale):
    images = load_benchmark(name, scale, shared_benchmark)
    res = evaluate(bicubic_pipeline(scale), images, with_ssim=False)
    assert abs(res.psnr - BICUBIC_TABLE[(name, scale)]) <= 0.05, res.psnr


def test_bicubic_set5_x2_on_builtin_copy_matches_table_with_ssim():
    res = evaluate(bicubic_pipeline(2), load_benchmark("Set5", 2))
    assert abs(res.psnr - 33.67) <= 0.05
    assert abs(res.ssim - 0.9299) <= 0.002  # the bicubic SSIM that SR papers quote


def test_psnr_protocol_details():
    hr = torch.rand(3, 20, 20)
    assert psnr(hr, hr) == math.inf
    # A uniform +4/255 error on every channel moves Y by (65.481+128.553+24.966)*4/255 levels.
    off = (hr * 255).round().clamp(0, 250) / 255
    err = off + 4 / 255
    dy = (65.481 + 128.553 + 24.966) * 4 / 255
    assert psnr(err, off, crop_border=2) == pytest.approx(10 * math.log10(255**2 / dy**2), abs=1e-6)
    assert psnr(err, off, test_y_channel=False) == pytest.approx(10 * math.log10(255**2 / 16), abs=1e-6)
    # crop_border really crops: damage only the border and PSNR is perfect after cropping.
    damaged = off.clone()
    damaged[:, :2] = 0
    assert psnr(damaged, off, crop_border=2) == math.inf
    assert psnr(damaged, off, crop_border=0) < 40
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(hr, hr[:, :10])


def test_ssim_bounds():
    hr = torch.rand(3, 32, 32)
    assert ssim(hr, hr) == pytest.approx(1.0)
    assert ssim(torch.rand(3, 32, 32), hr) < 0.2


def test_train_patches_are_deterministic_aligned_and_augmented():
    hr_dir = REPO / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x4" / "HR"
    data = TrainPatches([hr_dir], scale=4, patch=32)
    lr, hr = data.sample(seed=1, step=5, index=3)
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32)
    lr2, hr2 = data.sample(seed=1, step=5, index=3)
    assert torch.equal(lr, lr2) and torch.equal(hr, hr2)
    assert not torch.equal(data.sample(seed=1, step=6, index=3)[1], hr)
    # LR is 8-bit and is the MATLAB downscale of the HR patch (the margin only fixes the border).
    assert torch.equal(lr, quantize(lr))
    inner = quantize(imresize(hr.double(), 1 / 4)).float()
    assert psnr(inner[:, 2:-2, 2:-2], lr[:, 2:-2, 2:-2], test_y_channel=False) > 45
    with pytest.raises(ValueError, match="divisible"):
        TrainPatches([hr_dir], scale=4, patch=30)
    with pytest.raises(FileNotFoundError):
        TrainPatches([hr_dir / "nope"], scale=4, patch=32)
