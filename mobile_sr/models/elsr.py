"""ELSR (Tian et al. 2022, arXiv 2208.14600: "ELSR: Extreme Low-Power Super Resolution Network
for Mobile Devices"), the winner of the MAI 2022 low-power SR challenge.

Six layers, five with weights: conv 3x3 (3->6), conv 3x3 (6->6), PReLU, conv 3x3 (6->6) with a skip
from the first conv, conv 3x3 (6 -> 3*s^2), PixelShuffle(s). Everything runs at LR and every op is
one that phone NPUs and XNNPACK accelerate, which is the point of the design.
"""

from __future__ import annotations

import torch
from torch import nn


class ELSR(nn.Module):
    def __init__(self, scale: int = 2, width: int = 6, channels: int = 3) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"ELSR scale must be >= 1, got {scale}")
        self.scale, self.width = scale, width
        self.head = nn.Conv2d(channels, width, 3, padding=1)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.PReLU(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.up = nn.Conv2d(width, channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def tail(self) -> nn.Module:
        return self.up

    def config(self) -> dict:
        return {"width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        f = f + self.conv2(self.act(self.conv1(f)))
        return self.shuffle(self.up(f))
