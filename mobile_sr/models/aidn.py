"""Scale-arbitrary downscaling and restoration in the spirit of AIDN (Xing, Qian, Chen, TIP 2023: "Scale-arbitrary
Invertible Image Downscaling"): one network, conditioned on the factor, for any factor in [1.5, 4].

Both halves are MATLAB bicubic plus a learned residual whose last layer starts at zero, so an untrained pair *is*
bicubic down + bicubic up, and joint training starts from the plain pipeline (as :class:`~.tad.TAD` does at one
integer factor). The factor enters every residual block through FiLM: a small MLP of (s/4, 1/s) gives each
channel a gain and a shift, so one set of weights serves every factor and those between the trained ones.

- :class:`AIDNDown` (server): HR features from two convolutions at HR, *sampled* (cubic interpolation, no
  antialiasing) at the LR pixel centres, then FiLM residual blocks at LR. Sampling rather than averaging keeps
  each LR pixel's own neighbourhood: an antialiased resampling at x4 would average features over 16 HR pixels.
- :class:`AIDNUp` (phone): FiLM residual blocks at LR, then a sub-pixel tail at the next integer factor
  r = ceil(s) (one tail per r in 2..4), whose r x LR image is interpolated to the exact HR size (factor s / r);
  restoration at x2.5 is the x3 tail's detail placed on the x2.5 grid. At integer factors the interpolation is
  the identity, so the graph is a plain sub-pixel network there.

Sizes follow MATLAB's centre-aligned coordinate map, and a factor is a fraction p/q (``data.imresize.cells``): an
HR side that is a multiple of p maps to exactly q/p of it. Neither half exports yet: the resizes are dense
matrices of the image size (PyTorch only).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..data.imresize import resize_to, side_at

SCALE_RANGE = (1.5, 4.0)
# The factors training draws from, one per batch: every quarter step of the range (cells of at most 16 HR pixels,
# so small training images still fit). FiLM interpolates between them; the README reports factors off this grid too.
TRAIN_FACTORS = tuple(1.5 + 0.25 * i for i in range(11))


def check_factor(scale: float) -> float:
    lo, hi = SCALE_RANGE
    if not lo <= scale <= hi:
        raise ValueError(f"factor {scale:g}: the scale-arbitrary pair serves factors in [{lo:g}, {hi:g}]")
    return float(scale)


class ScaleFiLM(nn.Module):
    """Per-channel gain and shift from the factor: ``x * (1 + g(s)) + b(s)``; starts as the identity."""

    def __init__(self, width: int, hidden: int = 32) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 2 * width))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        gain, shift = self.mlp(x.new_tensor([[scale / 4, 1 / scale]])).view(1, 2, -1, 1, 1).unbind(1)
        return x * (1 + gain) + shift


class FiLMBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.film = ScaleFiLM(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.film(self.conv1(x), scale)))


class AIDNDown(nn.Module):
    arbitrary = True  # forward takes any factor of SCALE_RANGE

    def __init__(self, scale: float = 2, width: int = 32, blocks: int = 3, hr_width: int = 16) -> None:
        super().__init__()
        self.scale = check_factor(scale)
        self.width, self.blocks, self.hr_width = width, blocks, hr_width
        self.head = nn.Sequential(nn.Conv2d(3, hr_width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(hr_width, width, 3, padding=1), nn.ReLU())
        self.body = nn.ModuleList(FiLMBlock(width) for _ in range(blocks))
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # untrained: MATLAB bicubic downscaling
        nn.init.zeros_(self.out.bias)

    def config(self) -> dict:
        return {"width": self.width, "blocks": self.blocks, "hr_width": self.hr_width}

    def forward(self, hr: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """HR (N, 3, H, W) -> LR (N, 3, ceil(H/s), ceil(W/s)), float (not yet rounded)."""
        s = check_factor(scale if scale is not None else self.scale)
        size = (side_at(hr.shape[-2], 1 / s), side_at(hr.shape[-1], 1 / s))
        f = resize_to(self.head(hr), size, 1 / s, antialias=False)
        for block in self.body:
            f = block(f, s)
        return resize_to(hr, size, 1 / s) + self.out(f)


class AIDNUp(nn.Module):
    arbitrary = True

    def __init__(self, scale: float = 2, width: int = 24, blocks: int = 3) -> None:
        super().__init__()
        self.scale = check_factor(scale)
        self.width, self.blocks = width, blocks
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.ModuleList(FiLMBlock(width) for _ in range(blocks))
        self.tails = nn.ModuleDict({str(r): nn.Sequential(nn.Conv2d(width, 3 * r * r, 3, padding=1),
                                                          nn.PixelShuffle(r)) for r in (2, 3, 4)})
        for tail in self.tails.values():  # untrained: MATLAB bicubic upscaling
            nn.init.zeros_(tail[0].weight)
            nn.init.zeros_(tail[0].bias)

    def config(self) -> dict:
        return {"width": self.width, "blocks": self.blocks}

    def tail(self) -> nn.Module:
        return self.tails

    def forward(self, lr: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None
                ) -> torch.Tensor:
        """LR (N, 3, h, w) -> SR (N, 3, H, W), ``size`` = (H, W) or MATLAB's ceil(h*s) x ceil(w*s)."""
        s = check_factor(scale if scale is not None else self.scale)
        size = size or (side_at(lr.shape[-2], s), side_at(lr.shape[-1], s))
        r = max(2, math.ceil(s - 1e-6))
        f = torch.relu(self.head(lr))
        for block in self.body:
            f = block(f, s)
        detail = self.tails[str(r)](f)
        if detail.shape[-2:] != torch.Size(size):
            detail = resize_to(detail, size, s / r, antialias=False)
        return resize_to(lr, size, s) + detail
