"""Elastic layers built from :mod:`.ops`, each able to hand back a plain static module.

The block is OFA's mobile inverted bottleneck without BatchNorm: 1x1 expand, ReLU, k x k
depthwise, ReLU, 1x1 project, plus the identity. Every op is one XNNPACK, Core ML and NNAPI
run natively, ReLU fuses into the convolutions and quantizes without a lookup table, and with no
BatchNorm the int8 ranges are the trained ranges.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .ops import DynamicDepthwiseConv, DynamicPointConv


class MBBlock(nn.Module):
    """The static block: what a subnet is made of, and all an exporter ever sees."""

    def __init__(self, width: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.expand = nn.Conv2d(width, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
        self.project = nn.Conv2d(hidden, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(F.relu(self.depthwise(F.relu(self.expand(x)))))


class DynamicMBBlock(nn.Module):
    """The elastic block: hidden width (``width * expand``) and depthwise kernel set per forward."""

    def __init__(self, width: int, expand_ratios: tuple[int, ...], kernel_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.width = width
        self.expand_ratios = tuple(sorted(expand_ratios))
        hidden = width * self.expand_ratios[-1]
        self.expand = DynamicPointConv(width, hidden)
        self.depthwise = DynamicDepthwiseConv(hidden, kernel_sizes)
        self.project = DynamicPointConv(hidden, width)
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
        """A static :class:`MBBlock` holding copies of the active weights."""
        hidden, kernel = self.expand.active_out, self.depthwise.active_kernel
        block = MBBlock(self.width, hidden, kernel)
        block.expand.weight.copy_(self.expand.active_weight(self.width))
        block.expand.bias.copy_(self.expand.active_bias())
        block.depthwise.weight.copy_(self.depthwise.active_weight(hidden))
        block.depthwise.bias.copy_(self.depthwise.active_bias(hidden))
        block.project.weight.copy_(self.project.active_weight(hidden))
        block.project.bias.copy_(self.project.active_bias())
        return block

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Order hidden channels by importance (L1 norm of their projection weights), most useful first.

        Narrow settings keep the first channels, so they should be the ones that matter (OFA's
        ``re_organize_middle_weights``). The permutation is applied to the expand outputs, the
        depthwise channels and the project inputs alike, so the full block computes the same function.
        """
        importance = self.project.conv.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True)
        for conv in (self.expand.conv, self.depthwise.conv):
            conv.weight.copy_(conv.weight[order])
            conv.bias.copy_(conv.bias[order])
        self.project.conv.weight.copy_(self.project.conv.weight[:, order])
