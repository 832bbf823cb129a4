"""Content-adaptive resampler in the spirit of CAR (Sun & Chen, TIP 2020: "Learned Image Downscaling for
Upscaling using Content Adaptive Resampler"), role ``downscaler``, trained jointly with an upscaler.

Every LR pixel is a weighted sum of the k x k HR pixels around its centre (k = 4s, MATLAB bicubic's support),
with weights that a small network predicts from the image, per pixel. So the LR is by construction a local
resampling of the HR picture, never a painted-on residual: a learned kernel can sharpen or shift where the
image needs it, but the output stays made of the picture's own pixels.

How ours differs from CAR: the kernel is the bicubic kernel plus a predicted zero-sum correction (CAR
predicts the whole kernel), so an untrained resampler *is* MATLAB bicubic and the weights always sum to one.

Sampling offsets (CAR's second output), with ``offsets=1``: each LR pixel's whole footprint moves by a
predicted (dx, dy) of at most one HR pixel (CAR moves each tap on its own, with a CUDA kernel). Sampling HR at a
fractional position p + d is linear interpolation, sum over a in {-1, 0, 1} of hat(d - a) HR(p + a), so the moved
footprint is the kernel spread over one more pixel each side: a (k+2) x (k+2) kernel at the grid position, built
from nine shifted copies of the k x k one by fixed 1x1 convolutions. The resampler stays plain 4-D convolutions
(every exporter and delegate runs it), its weights still sum to one, and zero offsets are the grid kernel
exactly. Off by default: the shipped ``rescale-car`` keeps each LR pixel on its grid position (measured against
it in the README's ablation).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .bicubic import bicubic_taps, symmetric_pad


class CAR(nn.Module):
    def __init__(self, scale: int = 2, width: int = 32, depth: int = 4, offsets: int = 0) -> None:
        super().__init__()
        if int(scale) != scale or scale < 2:
            raise ValueError(f"CAR downscales by an integer factor >= 2, got {scale}")
        if offsets not in (0, 1):
            raise ValueError(f"CAR offsets is 0 (grid positions) or 1 (a learned shift per LR pixel), got {offsets}")
        self.scale, self.width, self.depth, self.offsets = int(scale), width, depth, offsets
        taps, self.pad = bicubic_taps(self.scale)
        self.k = taps.numel()
        self.register_buffer("base", torch.outer(taps, taps).flatten().float().view(1, -1, 1, 1), persistent=False)
        side = self.k + 2 * offsets  # the footprint: one more HR pixel each side when it can move
        picks = torch.eye(side * side).view(side * side, 1, side, side)
        self.register_buffer("picks", picks, persistent=False)
        if offsets:  # shifts[3a+b]: the k x k kernel placed at (1+a, 1+b) in the (k+2) x (k+2) one, a 1x1 conv
            shifts = torch.zeros(9, side * side, self.k * self.k)
            for a in range(3):
                for b in range(3):
                    for i in range(self.k):
                        for j in range(self.k):
                            shifts[3 * a + b, (i + a) * side + j + b, i * self.k + j] = 1
            self.register_buffer("shifts", shifts.view(9, side * side, self.k * self.k, 1, 1), persistent=False)
        layers: list[nn.Module] = [nn.PixelUnshuffle(self.scale), nn.Conv2d(3 * self.scale**2, width, 3, padding=1),
                                   nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.kernels = nn.Conv2d(width, self.k * self.k, 3, padding=1)
        nn.init.zeros_(self.kernels.weight)  # untrained: every pixel's kernel is MATLAB bicubic's
        nn.init.zeros_(self.kernels.bias)
        if offsets:
            self.shift = nn.Conv2d(width, 2, 3, padding=1)  # (dy, dx) in HR pixels, through tanh: at most one
            nn.init.zeros_(self.shift.weight)  # untrained: on the grid
            nn.init.zeros_(self.shift.bias)

    def config(self) -> dict:
        return {"width": self.width, "depth": self.depth, **({"offsets": 1} if self.offsets else {})}

    def kernel(self, hr: torch.Tensor) -> torch.Tensor:
        """Per-LR-pixel resampling weights (N, side*side, H/s, W/s), each summing to one: k x k on the grid, or
        (k+2) x (k+2) with ``offsets`` (the k x k kernel moved by the pixel's predicted shift)."""
        feats = self.features(hr)
        delta = self.kernels(feats)
        weights = self.base + delta - delta.mean(dim=1, keepdim=True)
        if not self.offsets:
            return weights
        d = torch.tanh(self.shift(feats))  # (N, 2, h, w)
        # Linear interpolation's weights at -1, 0, +1: relu(-d), 1 - |d|, relu(d), written so that the gradient at
        # d = 0 (where training starts) is the central difference, not relu's and abs's zero, which would keep the
        # offsets at zero for ever.
        hat = [(d.abs() - d) / 2, 1 - d.abs(), (d.abs() + d) / 2]
        out = 0
        for a in range(3):
            for b in range(3):
                w = hat[a][:, 0:1] * hat[b][:, 1:2]  # (N, 1, h, w): vertical a, horizontal b
                out = out + w * F.conv2d(weights, self.shifts[3 * a + b].to(weights.dtype))
        return out

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        """HR (N, 3, H, W), sides multiples of the scale -> LR (N, 3, H/s, W/s), float (not yet rounded)."""
        weights = self.kernel(hr)  # (N, side*side, h/s, w/s)
        pad = self.pad + self.offsets
        padded = symmetric_pad(symmetric_pad(hr, pad, -2), pad, -1)  # MATLAB's border rule, as bicubic
        # Per colour, the k x k footprint of every LR pixel as a strided conv with one-hot kernels (an unfold that
        # every exporter and delegate runs, in 4-D tensors only: onnx2tf mislays 5-D layouts), weighted, summed.
        picks = self.picks.to(hr.dtype)
        return torch.cat([(F.conv2d(padded[:, c : c + 1], picks, stride=self.scale) * weights).sum(1, keepdim=True)
                          for c in range(3)], dim=1)
