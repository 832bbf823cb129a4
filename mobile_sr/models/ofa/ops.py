"""Elastic operators: convolutions whose kernel size and channel counts are chosen at run time.

They follow OFA (mit-han-lab/once-for-all, ``elastic_nn/modules/dynamic_op.py``): a dynamic op holds
the weights of its largest setting and slices them for the active one. ``active_weight`` /
``active_bias`` return plain tensors, so a static ``nn.Conv2d`` built from them (see
:mod:`.layers`) computes exactly what the dynamic op does.

Re-parameterised training (``rep``, :mod:`..reparam`) lives in the same weights: the branches are
parameters of the largest setting too, sliced like the kernel (a 1x1's product ``B @ A`` keeps the
rows of ``B`` and the columns of ``A`` of the active channels; the depthwise edge filters are added
at the centre of whichever kernel is active). ``active_weight`` is the merged kernel the op runs;
``base_weight`` and the sliced branches are what a re-parameterised static layer is built from.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..reparam import EDGE_FILTERS, add_centred, edge_kernels


def _centre(kernel: torch.Tensor, size: int) -> torch.Tensor:
    start = (kernel.shape[-1] - size) // 2
    return kernel[..., start : start + size, start : start + size]


class DynamicPointConv(nn.Module):
    """1x1 convolution with elastic input and output channel counts (the first channels are kept)."""

    def __init__(self, max_in: int, max_out: int, rep_inner: int = 0) -> None:
        """``rep_inner`` > 0: train with a collapsible product ``B @ A`` of that inner width (RepPointwise)."""
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, 1)
        self.active_out = max_out
        self.rep_inner = rep_inner
        if rep_inner:
            self.rep_a = nn.Parameter(torch.randn(rep_inner, max_in) / math.sqrt(max_in))
            self.rep_b = nn.Parameter(torch.zeros(max_out, rep_inner))

    def base_weight(self, in_channels: int) -> torch.Tensor:
        return self.conv.weight[: self.active_out, :in_channels]

    def rep_factors(self, in_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The active slices (A, B) of the product branch."""
        return self.rep_a[:, :in_channels], self.rep_b[: self.active_out]

    def active_weight(self, in_channels: int) -> torch.Tensor:
        weight = self.base_weight(in_channels)
        if self.rep_inner:
            a, b = self.rep_factors(in_channels)
            weight = weight + (b @ a)[:, :, None, None]
        return weight

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

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], rep: bool = False) -> None:
        """``rep``: train with ECBSR's edge filters, scaled per channel, at the centre (RepDepthwise)."""
        super().__init__()
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd, got {kernel_sizes}")
        if rep and self.kernel_sizes[0] < 3:
            raise ValueError(f"rep adds 3x3 edge filters: kernel sizes must be >= 3, got {kernel_sizes}")
        kmax = self.kernel_sizes[-1]
        self.conv = nn.Conv2d(max_channels, max_channels, kmax, padding=kmax // 2, groups=max_channels)
        self.transforms = nn.ParameterDict({
            f"{big}to{small}": nn.Parameter(torch.eye(small * small))
            for big, small in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1], strict=True)
        })
        self.active_kernel = kmax
        self.rep = rep
        if rep:
            self.rep_edge = nn.Parameter(torch.zeros(max_channels, len(EDGE_FILTERS)))

    def active_weight(self, channels: int) -> torch.Tensor:
        weight = self.base_weight(channels)
        return add_centred(weight, edge_kernels(self.rep_edge[:channels])) if self.rep else weight

    def base_weight(self, channels: int) -> torch.Tensor:
        """The active kernel without the edge branches: the largest one's centre through the transforms."""
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
