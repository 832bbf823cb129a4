"""Scoring a pipeline on a benchmark set under the published protocol (Y channel, crop = scale, 8-bit).

When the pipeline makes its own LR (a downscaler), the PSNR of that LR against the published
MATLAB-bicubic LR is reported beside the SR figures (Y, no crop): a learned LR must still look like the
picture, and this number says how far it strayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.datasets import BenchmarkImage, load_benchmark_at
from ..metrics import psnr, ssim
from ..models import Scale
from .pipeline import Pipeline


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float
    lr_psnr: float | None = None  # the pipeline's LR against the MATLAB-bicubic LR, when it makes one


@dataclass
class EvalResult:
    dataset: str
    scale: Scale
    model: str
    images: list[ImageScore]
    pipeline: str = "published LR -> upscaler"
    outputs: list[torch.Tensor] = field(default_factory=list, repr=False)  # reconstructions, if kept

    @property
    def psnr(self) -> float:
        return sum(i.psnr for i in self.images) / len(self.images)

    @property
    def ssim(self) -> float:
        return sum(i.ssim for i in self.images) / len(self.images)

    @property
    def lr_psnr(self) -> float | None:
        vals = [i.lr_psnr for i in self.images if i.lr_psnr is not None]
        return sum(vals) / len(vals) if vals else None

    def to_dict(self) -> dict:
        """The ``eval --json`` document; LR figures only appear for pipelines that make their own LR."""
        images = [{"name": i.name, "psnr": i.psnr, "ssim": i.ssim,
                   **({"lr_psnr": i.lr_psnr} if i.lr_psnr is not None else {})} for i in self.images]
        doc = {"dataset": self.dataset, "scale": self.scale, "model": self.model, "images": images,
               "mean_psnr": self.psnr, "mean_ssim": self.ssim}
        if self.lr_psnr is not None:
            doc.update(pipeline=self.pipeline, mean_lr_psnr=self.lr_psnr)
        return doc


def crop_for(scale: Scale) -> int:
    """Pixels cut from each border: the scale, as published tables do (rounded up for a fractional one)."""
    return math.ceil(scale)


def evaluate(pipeline: Pipeline, images: list[BenchmarkImage], *, dataset: str = "", model: str = "",
             with_ssim: bool = True, keep_outputs: bool = False) -> EvalResult:
    """Score ``pipeline`` on benchmark pairs. ``keep_outputs`` keeps the float reconstructions (export
    verification compares them with PyTorch's)."""
    crop = crop_for(pipeline.scale)
    scores, outputs = [], []
    for img in images:
        lr = pipeline.low_res(img)
        sr = pipeline.upscale_lr(lr)
        if sr.shape != img.hr.shape:
            raise ValueError(f"{img.name}: the pipeline made {tuple(sr.shape[-2:])} from an HR of "
                             f"{tuple(img.hr.shape[-2:])}")
        lr_db = psnr(lr, img.lr, crop_border=0, test_y_channel=True) if pipeline.makes_lr else None
        scores.append(ImageScore(img.name, psnr(sr, img.hr, crop_border=crop, test_y_channel=True),
                                 ssim(sr, img.hr, crop_border=crop, test_y_channel=True) if with_ssim else float("nan"),
                                 lr_db))
        if keep_outputs:
            outputs.append(sr)
    return EvalResult(dataset, pipeline.scale, model, scores, pipeline.describe(), outputs)


def evaluate_dataset(pipeline: Pipeline, dataset: str, root: str | Path | None = None, model: str = "",
                     with_ssim: bool = True) -> EvalResult:
    return evaluate(pipeline, load_benchmark_at(dataset, pipeline.scale, root), dataset=dataset, model=model,
                    with_ssim=with_ssim)


def published_scores(pipeline: Pipeline, root: str | Path, datasets: tuple[str, ...] = ("Set5", "Set14"),
                     model: str = "") -> dict[str, dict[str, float]]:
    """``{"Set5": {"psnr": .., "ssim": .., ["lr_psnr": ..]}, ...}``: the figures a shipped model's manifest records."""
    out = {}
    for dataset in datasets:
        res = evaluate_dataset(pipeline, dataset, root, model=model)
        out[dataset] = {"psnr": round(res.psnr, 3), "ssim": round(res.ssim, 4)}
        if res.lr_psnr is not None:  # a pipeline that makes its own LR: how far that LR is from the picture
            out[dataset]["lr_psnr"] = round(res.lr_psnr, 2)
    return out
