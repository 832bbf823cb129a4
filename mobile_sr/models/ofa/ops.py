"""Elastic operators: convolutions whose kernel size and channel counts are chosen at run time.

They follow OFA (mit-han-lab/once-for-all, ``elastic_nn/modules/dynamic_op.py``): a dynamic op holds
the weights of its largest setting and slices them for the active one. ``active_weight`` /
``active_bias`` return plain tensors, so a static ``nn.Conv2d`` built from them (see
:mod:`.layers`) computes exactly what the dynamic op does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _centre(kernel: torch.Tensor, size: int) -> torch.Tensor:
    start = (kernel.shape[-1] - size) // 2
    return kernel[..., start : start + size, start : start + size]


class DynamicPointConv(nn.Module):
    """1x1 convolution with elastic input and output channel counts (the first channels are kept)."""

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, 1)
        self.active_out = max_out

    def active_weight(self, in_channels: int) -> torch.Tensor:
        return self.conv.weight[: self.active_out, :in_channels]

    def active_bias(self) -> torch.Tensor:
        return self.conv.bias[: self.active_out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.active_weight(x.shape[1]), self.active_bias())


class DynamicDepthwiseConv(nn.Module):
    """Depthwise convolution with elastic kernel size and channel count.

    A smaller kernel is the centre of the next larger one passed through a learned
    ``k^2 x k^2`` kernel-transformation matrix (7->5, then 5->3), shared by the channels of the
    layer. The matrices start as identities, so before training a k=5 kernel *is* the centre of
    the k=7 one; training lets the small kernels drift from the centre without giving the large
    kernel's weights a second, conflicting job (OFA section 3.2).
    """

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd, got {kernel_sizes}")
        kmax = self.kernel_sizes[-1]
        self.conv = nn.Conv2d(max_channels, max_channels, kmax, padding=kmax // 2, groups=max_channels)
        self.transforms = nn.ParameterDict({
            f"{big}to{small}": nn.Parameter(torch.eye(small * small))
            for big, small in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1], strict=True)
        })
        self.active_kernel = kmax

    def active_weight(self, channels: int) -> torch.Tensor:
        weight = self.conv.weight[:channels]
        for big, small in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1], strict=True):
            if small < self.active_kernel:
                break
            centre = _centre(weight, small).reshape(channels, small * small)
            weight = F.linear(centre, self.transforms[f"{big}to{small}"]).reshape(channels, 1, small, small)
        return weight

    def active_bias(self, channels: int) -> torch.Tensor:
        return self.conv.bias[:channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.active_weight(c), self.active_bias(c), padding=self.active_kernel // 2, groups=c)
