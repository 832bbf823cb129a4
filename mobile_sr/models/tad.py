"""Task-aware downscaler (TAD; Kim, Choi, Kim, Lee, ECCV 2018: "Task-Aware Image Downscaling"), role
``downscaler``, trained jointly with an upscaler and shipped inside a ``pair``.

The LR it makes is ``bicubic(HR) + r(HR)``: MATLAB-bicubic downscaling (exact, as a fixed strided convolution,
:class:`~.bicubic.BicubicConv`) plus a learned residual ``r``. ``r``'s last layer starts at zero, so an untrained
TAD *is* bicubic downscaling and joint training starts from the plain pipeline; the λ·L2 term to the
bicubic LR then keeps the learned LR close to the picture (honest 8-bit rounding is the training loop's).

``r`` works at LR resolution on a space-to-depth view of the HR (PixelUnshuffle: every s x s HR block is one
LR pixel's 3·s² inputs), so its cost is that of a small LR network whatever the scale. It runs on the server
(or a phone before upload); it exports to ONNX and TFLite like an upscaler.
"""

from __future__ import annotations

import torch
from torch import nn

from .bicubic import BicubicConv


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class TAD(nn.Module):
    def __init__(self, scale: int = 2, width: int = 32, blocks: int = 2) -> None:
        super().__init__()
        if int(scale) != scale or scale < 2:
            raise ValueError(f"TAD downscales by an integer factor >= 2, got {scale}")
        self.scale, self.width, self.blocks = int(scale), width, blocks
        self.bicubic = BicubicConv(self.scale)
        s2 = 3 * self.scale * self.scale
        self.head = nn.Sequential(nn.PixelUnshuffle(self.scale), nn.Conv2d(s2, width, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(*[_ResBlock(width) for _ in range(blocks)])
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # untrained TAD = bicubic downscaling
        nn.init.zeros_(self.out.bias)

    def config(self) -> dict:
        return {"width": self.width, "blocks": self.blocks}

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        """HR (N, 3, H, W), H and W multiples of the scale -> LR (N, 3, H/s, W/s), float (not yet rounded)."""
        return self.bicubic(hr) + self.out(self.body(self.head(hr)))
