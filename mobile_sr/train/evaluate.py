"""Benchmark evaluation under the published protocol (Y channel, crop = scale, 8-bit output)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.datasets import BenchmarkImage, load_benchmark
from ..data.imresize import imresize
from ..inference import upscale_tiled
from ..metrics import psnr, ssim


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float


@dataclass
class EvalResult:
    dataset: str
    scale: int
    model: str
    images: list[ImageScore]

    @property
    def psnr(self) -> float:
        return sum(i.psnr for i in self.images) / len(self.images)

    @property
    def ssim(self) -> float:
        return sum(i.ssim for i in self.images) / len(self.images)

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_psnr": self.psnr, "mean_ssim": self.ssim}


def bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB bicubic upscaling: the baseline every SR table quotes."""
    return imresize(lr.double(), scale).float()


def evaluate(
    upscale: Callable[[torch.Tensor], torch.Tensor] | nn.Module,
    images: list[BenchmarkImage],
    scale: int,
    dataset: str = "",
    model: str = "",
    tile: int | None = None,
    with_ssim: bool = True,
) -> EvalResult:
    """Score ``upscale`` ((1,3,h,w) -> (1,3,h*s,w*s)) on benchmark pairs; ``tile`` runs it tiled."""
    scores = []
    for img in images:
        sr = upscale_tiled(upscale, img.lr, scale, tile=tile)
        p = psnr(sr, img.hr, crop_border=scale, test_y_channel=True)
        s = ssim(sr, img.hr, crop_border=scale, test_y_channel=True) if with_ssim else float("nan")
        scores.append(ImageScore(img.name, p, s))
    return EvalResult(dataset, scale, model, scores)


def evaluate_dataset(
    upscale: Callable[[torch.Tensor], torch.Tensor] | nn.Module,
    dataset: str,
    scale: int,
    root: str | Path | None = None,
    model: str = "",
    tile: int | None = None,
) -> EvalResult:
    return evaluate(upscale, load_benchmark(dataset, scale, root), scale, dataset, model, tile)
