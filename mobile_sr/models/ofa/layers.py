"""Elastic layers built from :mod:`.ops`, each able to hand back a plain static module.

The block is OFA's mobile inverted bottleneck without BatchNorm: 1x1 expand, ReLU, k x k
depthwise, ReLU, 1x1 project, plus the identity. Every op is one XNNPACK, Core ML and NNAPI
run natively, ReLU fuses into the convolutions and quantizes without a lookup table, and with no
BatchNorm the int8 ranges are the trained ranges.

With ``rep`` the block trains re-parameterised (:mod:`..reparam`): both 1x1 convolutions carry a collapsible
product through ``rep_inner`` channels, the depthwise one ECBSR's edge filters. The static block is then built of
:class:`~..reparam.RepPointwise` / :class:`~..reparam.RepDepthwise`, which ``deploy`` folds into the plain block.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..reparam import RepDepthwise, RepPointwise
from .ops import DynamicDepthwiseConv, DynamicPointConv


def rep_inner(width: int, max_hidden: int) -> int:
    """Inner width of a re-parameterised block's 1x1 products: twice the widest side (SESR expands 2-16x)."""
    return 2 * max(width, max_hidden)


class MBBlock(nn.Module):
    """The static block: what a subnet is made of, and, deployed, all an exporter ever sees. ``rep_inner`` > 0:
    its re-parameterised training form (products of that inner width, edge filters)."""

    def __init__(self, width: int, hidden: int, kernel: int, rep_inner: int = 0) -> None:
        super().__init__()
        if rep_inner:
            self.expand: nn.Conv2d = RepPointwise(width, hidden, rep_inner)
            self.depthwise: nn.Conv2d = RepDepthwise(hidden, kernel)
            self.project: nn.Conv2d = RepPointwise(hidden, width, rep_inner)
        else:
            self.expand = nn.Conv2d(width, hidden, 1)
            self.depthwise = nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
            self.project = nn.Conv2d(hidden, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(F.relu(self.depthwise(F.relu(self.expand(x)))))


class DynamicMBBlock(nn.Module):
    """The elastic block: hidden width (``width * expand``) and depthwise kernel set per forward."""

    def __init__(self, width: int, expand_ratios: tuple[int, ...], kernel_sizes: tuple[int, ...],
                 rep: bool = False) -> None:
        super().__init__()
        self.width = width
        self.expand_ratios = tuple(sorted(expand_ratios))
        hidden = width * self.expand_ratios[-1]
        self.rep_inner = rep_inner(width, hidden) if rep else 0
        self.expand = DynamicPointConv(width, hidden, self.rep_inner)
        self.depthwise = DynamicDepthwiseConv(hidden, kernel_sizes, rep=rep)
        self.project = DynamicPointConv(hidden, width, self.rep_inner)
        self.set_active(self.expand_ratios[-1], max(kernel_sizes))

    def set_active(self, expand: int, kernel: int) -> None:
        if expand not in self.expand_ratios or kernel not in self.depthwise.kernel_sizes:
            raise ValueError(f"expand {expand} / kernel {kernel} not in {self.expand_ratios} / "
                             f"{self.depthwise.kernel_sizes}")
        self.expand.active_out = self.width * expand
        self.depthwise.active_kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(F.relu(self.depthwise(F.relu(self.expand(x)))))

    @torch.no_grad()
    def get_active_subnet(self) -> MBBlock:
        """A static :class:`MBBlock` holding copies of the active weights (and, for ``rep``, of the active slices of
        the branches: the re-parameterised static block, which computes the same and ``deploy`` folds)."""
        hidden, kernel = self.expand.active_out, self.depthwise.active_kernel
        block = MBBlock(self.width, hidden, kernel, self.rep_inner).to(self.expand.conv.weight)
        for static, dynamic, cin in ((block.expand, self.expand, self.width), (block.project, self.project, hidden)):
            static.weight.copy_(dynamic.base_weight(cin))
            static.bias.copy_(dynamic.active_bias())
            if self.rep_inner:
                a, b = dynamic.rep_factors(cin)
                static.rep_a.copy_(a)
                static.rep_b.copy_(b)
        block.depthwise.weight.copy_(self.depthwise.base_weight(hidden))
        block.depthwise.bias.copy_(self.depthwise.active_bias(hidden))
        if self.rep_inner:
            block.depthwise.rep_edge.copy_(self.depthwise.rep_edge[:hidden])
        return block

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Order hidden channels by importance (L1 norm of their projection weights), most useful first.

        Narrow settings keep the first channels, so they should be the ones that matter (OFA's
        ``re_organize_middle_weights``). The permutation is applied to the expand outputs, the
        depthwise channels and the project inputs alike, so the full block computes the same function.
        """
        importance = self.project.active_weight(self.project.conv.in_channels).abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True)
        for conv in (self.expand.conv, self.depthwise.conv):
            conv.weight.copy_(conv.weight[order])
            conv.bias.copy_(conv.bias[order])
        self.project.conv.weight.copy_(self.project.conv.weight[:, order])
        if self.rep_inner:  # the branches' hidden channels move with the kernels'
            self.expand.rep_b.copy_(self.expand.rep_b[order])
            self.depthwise.rep_edge.copy_(self.depthwise.rep_edge[order])
            self.project.rep_a.copy_(self.project.rep_a[:, order])
