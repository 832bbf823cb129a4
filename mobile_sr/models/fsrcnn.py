"""FSRCNN (Dong, Loy, Tang, ECCV 2016: "Accelerating the Super-Resolution Convolutional Neural Network").

feature extraction 5x5 (d) -> shrink 1x1 (s) -> m x mapping 3x3 (s) -> expand 1x1 (d) -> 9x9 deconvolution,
PReLU after every convolution. Works on the LR image directly, so the cost scales with LR pixels.
The paper's net is Y-only; ours takes and returns RGB in [0,1] so it can be dropped into apps as is.

``upsample="subpixel"`` builds the deconvolution in the form ``deploy`` exports (``subpixel.py``: a convolution and
PixelShuffle), so a deployed FSRCNN can be trained further in the very graph that is exported: that is how
quantization-aware training (``train --qat``) sees the int8 grid of the sub-pixel weights, not the deconvolution's.
In that form the zero taps the rewrite pads each phase with are trainable too; the graph and its MACs are unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .subpixel import SubPixelConv

UPSAMPLING = ("deconv", "subpixel")


class FSRCNN(nn.Module):
    """FSRCNN(d, s, m). Defaults are the paper's main setting; FSRCNN-s is d=32, s=5, m=1."""

    def __init__(self, scale: int = 2, d: int = 56, s: int = 12, m: int = 4, channels: int = 3,
                 upsample: str = "deconv") -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"FSRCNN scale must be >= 1, got {scale}")
        if upsample not in UPSAMPLING or (upsample == "subpixel" and scale < 2):
            raise ValueError(f"FSRCNN upsample={upsample!r}: use deconv, or subpixel at a scale of 2 or more")
        self.scale, self.d, self.s, self.m = scale, d, s, m
        layers: list[nn.Module] = [nn.Conv2d(channels, d, 5, padding=2), nn.PReLU(d)]
        layers += [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        # padding 4 + output_padding scale-1 gives exactly scale*H x scale*W.
        self.deconv: nn.Module = nn.ConvTranspose2d(d, channels, 9, stride=scale, padding=4,
                                                    output_padding=scale - 1)
        self._init_weights()
        if upsample == "subpixel":
            self.deconv = SubPixelConv.from_transposed(self.deconv)

    def _init_weights(self) -> None:
        # The paper's init: He-normal for convolutions, N(0, 0.001) for the deconvolution.
        for mod in self.body:
            if isinstance(mod, nn.Conv2d):
                fan_out = mod.out_channels * mod.kernel_size[0] * mod.kernel_size[1]
                nn.init.normal_(mod.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.deconv.weight, 0.0, 0.001)
        nn.init.zeros_(self.deconv.bias)

    def tail(self) -> nn.Module:
        """The upsampling layer, trained with a lower learning rate (as in the paper)."""
        return self.deconv

    def config(self) -> dict:
        # The deployed form (deploy swaps the deconvolution for its SubPixelConv) names itself, so it reloads.
        upsample = "subpixel" if isinstance(self.deconv, SubPixelConv) else "deconv"
        return {"d": self.d, "s": self.s, "m": self.m, **({"upsample": upsample} if upsample != "deconv" else {})}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.body(x))


def _bicubic_taps(scale: int, size: int = 9, pad: int = 4) -> torch.Tensor:
    """1-D weights of MATLAB bicubic upscaling by ``scale`` laid out on the deconvolution's kernel grid.

    Output pixel j gets input pixel i through tap k = j + pad - scale*i; its distance in LR units is
    (k - pad + 0.5)/scale - 0.5. Each of the ``scale`` output phases is renormalised to sum to 1
    because at x4 the 16-tap bicubic footprint is cut to 9 taps.
    """
    k = torch.arange(size, dtype=torch.float64)
    d = ((k - pad + 0.5) / scale - 0.5).abs()
    w = (1.5 * d**3 - 2.5 * d**2 + 1) * (d <= 1) + (-0.5 * d**3 + 2.5 * d**2 - 4 * d + 2) * ((d > 1) & (d < 2))
    for phase in range(scale):
        idx = torch.arange(phase, size, scale)
        w[idx] = w[idx] / w[idx].sum()
    return w.float()


def init_bicubic(model: FSRCNN) -> FSRCNN:
    """Start FSRCNN as (close to) bicubic upscaling instead of from zero.

    Why: FSRCNN has no skip connection, so from the paper's init it spends most of its training
    re-learning plain interpolation through a 12-channel bottleneck. Inputs are in [0,1], so
    PReLU passes them unchanged; routing the 3 colour channels through the first 3 channels of
    every layer and giving the deconvolution bicubic taps makes the untrained net ~bicubic,
    and training then only learns the residual detail. The architecture is unchanged.
    """
    if not isinstance(model.deconv, nn.ConvTranspose2d):
        raise ValueError("--init bicubic needs FSRCNN's deconvolution (upsample=deconv)")
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for conv in convs:
            kh, kw = conv.kernel_size
            conv.weight[:3] = 0
            conv.bias[:3] = 0
            for c in range(3):
                conv.weight[c, c, kh // 2, kw // 2] = 1.0
        taps = _bicubic_taps(model.scale)
        model.deconv.weight[:3] = 0
        for c in range(3):
            model.deconv.weight[c, c] = taps[:, None] * taps[None, :]
        model.deconv.bias.zero_()
    return model
