"""MATLAB-bicubic downscaling as a model (role ``downscaler``): the reference every learned downscaler is
measured against, and the server side of the plain "bicubic down, SR up" pipeline.

It has no weights. The factor is a number, not only an integer: ``imresize`` takes any factor, and the
output is ``ceil(H / scale)`` x ``ceil(W / scale)`` as in MATLAB. Values are not rounded here; the
pipeline rounds the LR to 8 bits as a saved image would be.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.imresize import imresize


class BicubicDown(nn.Module):
    def __init__(self, scale: float = 2) -> None:
        super().__init__()
        if not scale >= 1:
            raise ValueError(f"a downscaling factor must be >= 1, got {scale}")
        self.scale = scale

    def config(self) -> dict:
        return {}

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        return imresize(hr, 1 / self.scale)
