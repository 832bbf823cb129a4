"""ELSR (Xu, Jia, Zhang, Bao, Sun 2022, arXiv 2208.14600: "ELSR: Extreme Low-Power Super Resolution Network
for Mobile Devices"), the winner of the MAI 2022 low-power SR challenge.

Six layers, five with weights: conv 3x3 (3->6), conv 3x3 (6->6), PReLU, conv 3x3 (6->6) with a skip
from the first conv, conv 3x3 (6 -> 3*s^2), PixelShuffle(s); ReLU activations (no weights, not counted
as layers) follow the first conv and the skip sum, as in the public ELSR re-implementations. Without
them the net has a single non-linearity and is close to a linear filter: it plateaued at 35.1 dB
Set5 x2 here, at width 6 and at width 16 alike. Everything runs at LR and every op is one that
phone NPUs and XNNPACK accelerate, which is the point of the design.

Image-space residual: the LR input, repeated s^2 times per colour, is added before the
PixelShuffle (the "anchor" residual of the Mobile AI challenge models), so the net predicts only
the detail on top of nearest-neighbour upscaling. It is a fixed 0/1 1x1 convolution, so every
exporter sees a plain conv. Without it, 6 channels spend their capacity re-learning interpolation:
our first run stalled at 33.9 dB Set5 x2 after 8k steps (bicubic is 33.67).

``rep=1`` trains every convolution as a :class:`~mobile_sr.models.reparam.RepConv` (kxk + 1x1 + identity +
1x1->kxk + Sobel/Laplacian branches); ``deploy`` folds each back into one 3x3 convolution, so the exported graph
is exactly the plain ELSR's.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .reparam import RepConv


class ELSR(nn.Module):
    def __init__(self, scale: int = 2, width: int = 6, channels: int = 3, rep: int = 0) -> None:
        """``width=6`` is the paper's; the built-in ``elsr`` uses 16 (see models/__init__.py). ``rep=1``: train
        re-parameterisable branches (see the module docstring)."""
        super().__init__()
        if scale < 1:
            raise ValueError(f"ELSR scale must be >= 1, got {scale}")
        if rep not in (0, 1):
            raise ValueError(f"ELSR rep must be 0 or 1, got {rep}")
        self.scale, self.width = scale, width

        def conv(cin: int, cout: int) -> nn.Module:
            return RepConv(cin, cout, 3) if rep else nn.Conv2d(cin, cout, 3, padding=1)

        self.head = conv(channels, width)
        self.conv1 = conv(width, width)
        self.act = nn.PReLU(width)
        self.conv2 = conv(width, width)
        self.up = conv(width, channels * scale * scale)
        self.shuffle = nn.PixelShuffle(scale)
        # anchor[c*s*s + k, c] = 1: output channel group c of the shuffle gets input colour c.
        anchor = torch.zeros(channels * scale * scale, channels, 1, 1)
        for c in range(channels):
            anchor[c * scale * scale : (c + 1) * scale * scale, c] = 1.0
        self.register_buffer("anchor", anchor, persistent=False)

    def tail(self) -> nn.Module:
        return self.up

    def config(self) -> dict:
        """The settings that rebuild this module: after ``deploy`` folds the branches it is a plain ELSR (no rep)."""
        return {"width": self.width, **({"rep": 1} if any(isinstance(m, RepConv) for m in self.modules()) else {})}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.relu(self.head(x))
        f = F.relu(f + self.conv2(self.act(self.conv1(f))))
        return self.shuffle(self.up(f) + F.conv2d(x, self.anchor))
