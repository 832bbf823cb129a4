"""Checking an exported artifact in its real runtime against the PyTorch model it came from.

Both measures come from one pass over held-out images (Set5, never the calibration crops), tiled at
the export size the way an app runs it: each tile is padded to the fixed input size, run, and its
core pasted back.
- Set5 PSNR under the published protocol (Y channel, crop = scale, 8-bit output);
- parity: PSNR of the artifact's upscaled Set5 images against PyTorch's, tiled identically, RGB in
  [0, 1], no rounding (a float measure of conversion error, not of image quality). Reusing the Set5
  pass costs nothing extra, and memory stays at five HR images whatever the tile size.

fp32 and fp16 must reproduce PyTorch (parity thresholds); int8 cannot, so it must instead keep the
image quality: lose at most ``INT8_MAX_LOSS_DB`` of Set5 PSNR against the fp32 PyTorch model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data.datasets import load_benchmark
from ..evaluation import Pipeline, bicubic_pipeline, evaluate
from ..evaluation.pipeline import Downscale
from ..inference import OVERLAP, Upscale, at_fixed_size, downscale_tiled, fixed_tile
from .common import Loaded

PARITY_MIN_DB = {"fp32": 50.0, "fp16": 40.0}
INT8_MAX_LOSS_DB = 0.3
STORED_WEIGHTS = {"fp32": ["float32"], "fp16": ["float16"], "int8": ["int8"], "int8io": ["int8"], "w8": ["int8"]}
MIN_SIDE = 2 * OVERLAP + 16  # smallest export side that leaves a useful tile core


def float_psnr(out: np.ndarray, ref: np.ndarray) -> float:
    """PSNR for signals in [0, 1]; identical arrays give 200 dB (a finite number JSON can hold)."""
    mse = float(np.mean((out.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-20))


def tiled_set5(fn: Upscale, scale: int, h: int, w: int, downscale: Downscale | None = None
               ) -> tuple[float, list[torch.Tensor]]:
    """Mean Set5 PSNR with ``fn`` run on ``h`` x ``w`` tiles, and the upscaled images (for parity), through the
    one evaluation protocol. The LR is the published one, or for a pair's upscaler ``downscale``'s 8-bit LR
    (what that upscaler was trained to restore). Raises FileNotFoundError where Set5 has no such scale."""
    res = evaluate(Pipeline(fn, scale, downscale=downscale, fixed_size=(h, w)), load_benchmark("Set5", scale),
                   with_ssim=False, keep_outputs=True)
    return res.psnr, res.outputs


def set5_psnr(fn: Upscale, scale: int, h: int, w: int, downscale: Downscale | None = None) -> float | None:
    """Just the PSNR of :func:`tiled_set5` (what ``mobile-sr bench`` reports); None without Set5 at ``scale``."""
    try:
        return tiled_set5(fn, scale, h, w, downscale)[0]
    except FileNotFoundError:
        return None


@dataclass
class Reference:
    """The PyTorch model's tiled Set5 images and PSNR, computed once per export run, shared by all targets."""

    size: tuple[int, int]  # the export's input (h, w): the tile size
    set5_fp32: float
    images: list[torch.Tensor]
    set5_bicubic: float  # the floor: a model below it makes images worse than plain upscaling
    downscale: Downscale | None = None  # a pair's downscaler: the LR every run is scored on

    @classmethod
    def of(cls, wrapper: nn.Module, scale: int, h: int, w: int, downscale: Downscale | None = None) -> Reference:
        bicubic = evaluate(bicubic_pipeline(scale), load_benchmark("Set5", scale), with_ssim=False).psnr
        return cls((h, w), *tiled_set5(wrapper, scale, h, w, downscale), bicubic, downscale)

    @property
    def lr_source(self) -> str:
        return "the pair's downscaler, rounded to 8 bits" if self.downscale is not None else "published bicubic LR"


@dataclass
class Verification:
    status: str  # "passed", "failed", "skipped" (--no-verify) or "spec-only" (no runtime on this platform)
    runtime: str
    parity_psnr_db: float | None = None
    set5_psnr_db: float | None = None
    set5_fp32_psnr_db: float | None = None
    problems: list[str] = field(default_factory=list)
    set5_bicubic_psnr_db: float | None = None
    warnings: list[str] = field(default_factory=list)  # passed, but the user must know (below bicubic)
    lr_source: str | None = None  # what the Set5 figures were computed on (see Reference.lr_source)
    lr_psnr_db: float | None = None  # a downscaler artifact: its 8-bit LR against the MATLAB-bicubic LR (Y)

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
    set5, images = tiled_set5(lambda t: torch.from_numpy(run(t.numpy())), scale, *ref.size, ref.downscale)
    parity = float_psnr(torch.cat([i.flatten() for i in images]).numpy(),
                        torch.cat([i.flatten() for i in ref.images]).numpy())
    if precision in PARITY_MIN_DB and parity < PARITY_MIN_DB[precision]:
        problems.append(f"parity {parity:.1f} dB < {PARITY_MIN_DB[precision]:.0f} dB for {precision}")
    if precision not in PARITY_MIN_DB and ref.set5_fp32 - set5 > INT8_MAX_LOSS_DB:
        problems.append(f"int8 loses {ref.set5_fp32 - set5:.2f} dB Set5 PSNR (> {INT8_MAX_LOSS_DB} dB) vs fp32")
    status = "failed" if problems else "passed"
    warnings = []
    if ref.set5_fp32 < ref.set5_bicubic:  # conversion is faithful, but the model itself is not worth shipping
        warnings.append(f"the model scores {ref.set5_fp32:.2f} dB Set5, below bicubic upscaling "
                        f"({ref.set5_bicubic:.2f} dB): it makes images worse; train it longer")
    return Verification(status, loaded.runtime, parity, set5, ref.set5_fp32, problems, ref.set5_bicubic, warnings,
                        ref.lr_source)


def fixed_size_downscale(fn: Downscale, h: int, w: int, scale: int) -> Downscale:
    """A downscaler that only takes ``h`` x ``w`` HR inputs (an artifact) run over any HR image (1, 3, H, W):
    tiled as :func:`~mobile_sr.inference.downscale_tiled` tiles, each tile edge-padded to the fixed size."""
    one = at_fixed_size(fn, h, w, 1 / scale)  # type: ignore[arg-type]
    tile = fixed_tile(h // scale, w // scale)
    return lambda hr: downscale_tiled(one, hr[0], scale, tile=tile)[None]


@dataclass
class DownReference:
    """For a pair's downscaler artifact: PyTorch's LRs of Set5 (tiled at the export size) and the end-to-end
    figures with the pair's PyTorch upscaler, computed once per export run."""

    size: tuple[int, int]  # the export's HR input (h, w)
    scale: int
    upscale: Upscale  # the partner upscaler (PyTorch) the end-to-end figure runs
    lrs: list[torch.Tensor]
    set5_fp32: float
    set5_bicubic: float

    @classmethod
    def of(cls, wrapper: nn.Module, upscale: Upscale, scale: int, h: int, w: int) -> DownReference:
        images = load_benchmark("Set5", scale)
        down = fixed_size_downscale(wrapper, h, w, scale)
        with torch.no_grad():
            lrs = [down(img.hr[None])[0] for img in images]
        res = evaluate(Pipeline(upscale, scale, downscale=down), images, with_ssim=False)
        bicubic = evaluate(bicubic_pipeline(scale), images, with_ssim=False).psnr
        return cls((h, w), scale, upscale, lrs, res.psnr, bicubic)


def verify_downscaler(loaded: Loaded, precision: str, ref: DownReference | None) -> Verification:
    """A downscaler artifact: parity of its LR with PyTorch's (before rounding, the pass/fail check), then the
    end-to-end Set5 PSNR of its 8-bit LR restored by the partner upscaler, reported beside the PyTorch
    downscaler's, and its LR's distance from the MATLAB-bicubic LR."""
    problems = list(loaded.problems)
    if loaded.run is None:
        return Verification("failed" if problems else "spec-only", loaded.runtime, problems=problems)
    run = loaded.run
    assert ref is not None, "a runnable artifact needs the PyTorch reference"
    down = fixed_size_downscale(lambda t: torch.from_numpy(run(t.numpy())), *ref.size, ref.scale)
    images = load_benchmark("Set5", ref.scale)
    with torch.no_grad():
        lrs = [down(img.hr[None])[0] for img in images]
    parity = float_psnr(torch.cat([i.flatten() for i in lrs]).numpy(),
                        torch.cat([i.flatten() for i in ref.lrs]).numpy())
    if precision in PARITY_MIN_DB and parity < PARITY_MIN_DB[precision]:
        problems.append(f"parity {parity:.1f} dB < {PARITY_MIN_DB[precision]:.0f} dB for {precision}")
    res = evaluate(Pipeline(ref.upscale, ref.scale, downscale=down), images, with_ssim=False)
    return Verification("failed" if problems else "passed", loaded.runtime, parity, res.psnr, ref.set5_fp32, problems,
                        ref.set5_bicubic, [], "this artifact's LR, rounded to 8 bits, restored by the partner upscaler",
                        res.lr_psnr)
