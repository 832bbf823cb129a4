"""Accuracy predictor: a small MLP from the arch encoding to held-out PSNR, as in OFA.

Its training data are sampled subnets scored on the held-out split of the training images
(never Set5/Set14, which report results). Scoring a subnet takes a fraction of a second with the
supernet, but the evolutionary search asks for thousands, so a predictor stands in for it.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.datasets import BenchmarkImage
from ..evaluation import Pipeline, evaluate
from ..models.ofa import OFASR, SCALES, Arch, largest, sample, smallest


def collect(supernet: OFASR, val: dict[int, list[BenchmarkImage]], n: int, seed: int = 0,
            progress: bool = False, downscaler: nn.Module | None = None) -> list[dict]:
    """Held-out PSNR of the largest, the smallest and ``n`` random subnets per scale of ``val`` (distinct archs);
    with a supernet pair's ``downscaler``, each restores that downscaler's 8-bit LR."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for scale in sorted(val):
        archs = {largest(scale).canonical(), smallest(scale)}
        while len(archs) < n + 2:
            archs.add(sample(rng, scale))
        for arch in tqdm(sorted(archs, key=lambda a: str(a.to_dict())), desc=f"x{scale} subnets", leave=False,
                         disable=None if progress else True):
            rows.append({"arch": arch.to_dict(), "psnr": round(score(supernet, arch, val[scale], downscaler), 4)})
    return rows


@torch.no_grad()
def score(supernet: OFASR, arch: Arch, images: list[BenchmarkImage], downscaler: nn.Module | None = None) -> float:
    """Mean PSNR (Y, crop = scale) of ``arch`` on ``images``: on their MATLAB-bicubic LR, or on the 8-bit LR
    that ``downscaler`` makes of their HR (a supernet pair)."""
    previous = supernet.arch
    supernet.eval()
    supernet.set_active(arch)
    try:
        return evaluate(Pipeline(supernet, arch.scale, downscale=downscaler), images, with_ssim=False).psnr
    finally:
        supernet.set_active(previous)


class AccuracyPredictor(nn.Module):
    """MLP: encoding -> 64 -> 64 -> PSNR, with targets standardised per scale.

    Per scale, because x2 and x4 PSNR differ by ~5 dB while the subnets of one scale differ by tenths:
    with one global mean and std the MLP spends itself on the scale offset, and at x4 it ranked
    subnets worse than chance and over-predicted unseen ones by 0.2 dB.
    """

    def __init__(self, features: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))
        self.register_buffer("mean", torch.zeros(len(SCALES)))
        self.register_buffer("std", torch.ones(len(SCALES)))

    @torch.no_grad()
    def predict(self, archs: list[Arch]) -> np.ndarray:
        x = torch.tensor([a.encode() for a in archs], dtype=torch.float32)
        s = _scale_index(archs)
        return (self.net(x).squeeze(-1) * self.std[s] + self.mean[s]).double().numpy()


def _scale_index(archs: list[Arch]) -> torch.Tensor:
    return torch.tensor([SCALES.index(a.scale) for a in archs])


def fit(rows: list[dict], seed: int = 0, epochs: int = 1500, lr: float = 3e-3) -> AccuracyPredictor:
    """Train the predictor on ``rows`` ({"arch", "psnr"}), full batch, deterministically for ``seed``."""
    archs = [Arch.from_dict(r["arch"]) for r in rows]
    x = torch.tensor([a.encode() for a in archs], dtype=torch.float32)
    y = torch.tensor([r["psnr"] for r in rows], dtype=torch.float32)
    s = _scale_index(archs)
    torch.manual_seed(seed)
    model = AccuracyPredictor(x.shape[1])
    for i in s.unique():
        model.mean[i] = y[s == i].mean()
        model.std[i] = y[s == i].std().nan_to_num(0.0).clamp_min(1e-3)
    target = (y - model.mean[s]) / model.std[s]
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        loss = (model.net(x).squeeze(-1) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def holdout_error(rows: list[dict], seed: int = 0, fraction: float = 0.2) -> dict:
    """Fit on (1 - fraction) of the subnets and report the error on the rest, per scale."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_test = max(1, int(len(rows) * fraction))
    test, train = [rows[i] for i in order[:n_test]], [rows[i] for i in order[n_test:]]
    model = fit(train, seed)
    pred = model.predict([Arch.from_dict(r["arch"]) for r in test])
    true = np.array([r["psnr"] for r in test])
    err = pred - true
    from .latency import spearman

    report = {"train": len(train), "test": len(test), "mae_db": round(float(np.abs(err).mean()), 4),
              "rmse_db": round(float(np.sqrt((err**2).mean())), 4)}
    for scale in sorted({r["arch"]["scale"] for r in test}):
        idx = [i for i, r in enumerate(test) if r["arch"]["scale"] == scale]
        report[f"x{scale}"] = {"test": len(idx), "mae_db": round(float(np.abs(err[idx]).mean()), 4),
                               "spearman": round(spearman(pred[idx], true[idx]), 4)}
    return report
