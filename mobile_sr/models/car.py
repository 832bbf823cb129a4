"""Content-adaptive resampler in the spirit of CAR (Sun & Chen, TIP 2020: "Learned Image Downscaling for
Upscaling using Content Adaptive Resampler"), role ``downscaler``, trained jointly with an upscaler.

Every LR pixel is a weighted sum of the k x k HR pixels around its centre (k = 4s, MATLAB bicubic's support),
with weights that a small network predicts from the image, per pixel. So the LR is by construction a local
resampling of the HR picture, never a painted-on residual: a learned kernel can sharpen or shift where the
image needs it, but the output stays made of the picture's own pixels.

How ours differs from CAR: the kernel is the bicubic kernel plus a predicted zero-sum correction (CAR
predicts the whole kernel), so an untrained resampler *is* MATLAB bicubic and the weights always sum to one;
and there are no per-pixel sampling offsets (CAR's second output): each LR pixel keeps its grid position, so
the pair stays exportable as plain convolutions, and the LR stays aligned with the HR.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .bicubic import bicubic_taps, symmetric_pad


class CAR(nn.Module):
    def __init__(self, scale: int = 2, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        if int(scale) != scale or scale < 2:
            raise ValueError(f"CAR downscales by an integer factor >= 2, got {scale}")
        self.scale, self.width, self.depth = int(scale), width, depth
        taps, self.pad = bicubic_taps(self.scale)
        self.k = taps.numel()
        self.register_buffer("base", torch.outer(taps, taps).flatten().float().view(1, -1, 1, 1), persistent=False)
        picks = torch.eye(self.k * self.k).view(self.k * self.k, 1, self.k, self.k)
        self.register_buffer("picks", picks, persistent=False)
        layers: list[nn.Module] = [nn.PixelUnshuffle(self.scale), nn.Conv2d(3 * self.scale**2, width, 3, padding=1),
                                   nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.kernels = nn.Conv2d(width, self.k * self.k, 3, padding=1)
        nn.init.zeros_(self.kernels.weight)  # untrained: every pixel's kernel is MATLAB bicubic's
        nn.init.zeros_(self.kernels.bias)

    def config(self) -> dict:
        return {"width": self.width, "depth": self.depth}

    def kernel(self, hr: torch.Tensor) -> torch.Tensor:
        """Per-LR-pixel resampling weights (N, k*k, H/s, W/s), each summing to one."""
        delta = self.kernels(self.features(hr))
        return self.base + delta - delta.mean(dim=1, keepdim=True)

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        """HR (N, 3, H, W), sides multiples of the scale -> LR (N, 3, H/s, W/s), float (not yet rounded)."""
        weights = self.kernel(hr)  # (N, k*k, h/s, w/s)
        padded = symmetric_pad(symmetric_pad(hr, self.pad, -2), self.pad, -1)  # MATLAB's border rule, as bicubic
        # Per colour, the k x k footprint of every LR pixel as a strided conv with one-hot kernels (an unfold that
        # every exporter and delegate runs, in 4-D tensors only: onnx2tf mislays 5-D layouts), weighted, summed.
        picks = self.picks.to(hr.dtype)
        return torch.cat([(F.conv2d(padded[:, c : c + 1], picks, stride=self.scale) * weights).sum(1, keepdim=True)
                          for c in range(3)], dim=1)
