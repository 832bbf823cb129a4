"""Checking an exported artifact in its real runtime against the PyTorch model it came from.

Two measures, both on held-out images (Set5, never the calibration crops):
- parity: PSNR of the artifact's output against PyTorch's on the same inputs, RGB in [0, 1], no
  rounding (a float measure of conversion error, not of image quality);
- Set5 PSNR under the published protocol, tiled at the export size the way an app runs it: each
  tile is padded to the fixed input size, run, and its core pasted back.

fp32 and fp16 must reproduce PyTorch (parity thresholds); int8 cannot, so it must instead keep the
image quality: lose at most ``INT8_MAX_LOSS_DB`` of Set5 PSNR against the fp32 PyTorch model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import load_benchmark
from ..train.evaluate import evaluate
from .calib import fit
from .common import Loaded

PARITY_MIN_DB = {"fp32": 50.0, "fp16": 40.0}
INT8_MAX_LOSS_DB = 0.3
STORED_WEIGHTS = {"fp32": ["float32"], "fp16": ["float16"], "int8": ["int8"], "int8io": ["int8"], "w8": ["int8"]}
OVERLAP = 8  # LR pixels of context around each tile (train.evaluate's tiling default)
MIN_SIDE = 2 * OVERLAP + 16  # smallest export side that leaves a useful tile core

Upscale = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, h, w) -> (1, 3, h*s, w*s), float in [0, 1]


def float_psnr(out: np.ndarray, ref: np.ndarray) -> float:
    """PSNR for signals in [0, 1]; identical arrays give 200 dB (a finite number JSON can hold)."""
    mse = float(np.mean((out.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-20))


def parity_images(h: int, w: int) -> torch.Tensor:
    """The five Set5 LR images (x2) fitted to ``h`` x ``w``: (5, 3, h, w)."""
    return torch.stack([fit(img.lr, h, w) for img in load_benchmark("Set5", 2)])


def at_fixed_size(fn: Upscale, h: int, w: int, scale: int) -> Upscale:
    """Run ``fn`` (which only takes ``h`` x ``w``) on a smaller tile: pad by edge replication, crop back."""

    def run(x: torch.Tensor) -> torch.Tensor:
        th, tw = x.shape[-2:]
        y = fn(F.pad(x, (0, w - tw, 0, h - th), mode="replicate") if (th, tw) != (h, w) else x)
        return y[..., : th * scale, : tw * scale]

    return run


def set5_psnr(fn: Upscale, scale: int, h: int, w: int) -> float | None:
    """Mean Set5 PSNR (Y, crop = scale) with ``fn`` run on ``h`` x ``w`` tiles; None without Set5 at ``scale``."""
    try:
        images = load_benchmark("Set5", scale)
    except FileNotFoundError:
        return None
    tile = min(h, w) - 2 * OVERLAP
    return evaluate(at_fixed_size(fn, h, w, scale), images, scale, tile=tile, with_ssim=False).psnr


@dataclass
class Reference:
    """PyTorch's answers, computed once per export run and shared by every target."""

    inputs: np.ndarray  # (N, 3, h, w)
    outputs: np.ndarray  # (N, 3, h*s, w*s)
    set5_fp32: float | None

    @classmethod
    def of(cls, wrapper: nn.Module, scale: int, h: int, w: int) -> Reference:
        x = parity_images(h, w)
        with torch.no_grad():
            y = torch.cat([wrapper(xi[None]) for xi in x])
            set5 = set5_psnr(wrapper, scale, h, w)
        return cls(x.numpy(), y.numpy(), set5)


@dataclass
class Verification:
    status: str  # "passed", "failed", "skipped" (--no-verify) or "spec-only" (no runtime on this platform)
    runtime: str
    parity_psnr_db: float | None = None
    set5_psnr_db: float | None = None
    set5_fp32_psnr_db: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """Every check that could run here passed."""
        return self.status in ("passed", "spec-only")


def verify_artifact(loaded: Loaded, precision: str, ref: Reference | None, scale: int) -> Verification:
    """Structure first (stored weight dtypes, int8 activations), then the numbers where a runtime exists
    (``ref`` is needed only then)."""
    problems = list(loaded.problems)
    want = STORED_WEIGHTS[precision]
    if loaded.weight_dtypes is not None and loaded.weight_dtypes != want:
        problems.append(f"convolution weights are stored as {loaded.weight_dtypes}, a {precision} model needs {want}")
    if precision in ("int8", "int8io") and loaded.int8_activations is False:
        problems.append("activations are not int8: this is not a full-integer model")
    if loaded.run is None:
        return Verification("failed" if problems else "spec-only", loaded.runtime, problems=problems)

    run = loaded.run
    assert ref is not None, "a runnable artifact needs the PyTorch reference"
    outputs = np.concatenate([run(x[None]) for x in ref.inputs])
    parity = float_psnr(outputs, ref.outputs)
    h, w = ref.inputs.shape[-2:]
    set5 = set5_psnr(lambda t: torch.from_numpy(run(t.numpy())), scale, h, w)
    if precision in PARITY_MIN_DB and parity < PARITY_MIN_DB[precision]:
        problems.append(f"parity {parity:.1f} dB < {PARITY_MIN_DB[precision]:.0f} dB for {precision}")
    if precision not in PARITY_MIN_DB:
        if set5 is None or ref.set5_fp32 is None:
            problems.append(f"no Set5 x{scale} to measure the int8 loss on")
        elif ref.set5_fp32 - set5 > INT8_MAX_LOSS_DB:
            problems.append(f"int8 loses {ref.set5_fp32 - set5:.2f} dB Set5 PSNR (> {INT8_MAX_LOSS_DB} dB) vs fp32")
    status = "failed" if problems else "passed"
    return Verification(status, loaded.runtime, parity, set5, ref.set5_fp32, problems)
