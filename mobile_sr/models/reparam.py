"""Structural re-parameterisation (RepVGG, ECBSR, SESR): train a convolution as several linear branches, export
it as the one plain convolution they sum to.

A :class:`RepConv` is a drop-in for ``nn.Conv2d(cin, cout, k, padding=k // 2)``. During training its output is
the sum of linear branches, each richer to optimise than one kxk kernel but together no more expressive:

- ``kxk``: the plain convolution;
- ``1x1``: a pointwise convolution (RepVGG);
- ``identity``: the input itself, where ``cin == cout`` (RepVGG);
- ``expand``: a 1x1 convolution to ``expand * cout`` channels, then a kxk one back (SESR's collapsible linear
  block, ECBSR's "conv1x1-conv3x3");
- ``sobel_x``, ``sobel_y``, ``laplacian``: a 1x1 convolution, then a fixed 3x3 edge filter per channel with a
  learned scale (ECBSR's edge branches; k = 3 only).

Two more forms serve the OFA supernet's inverted-bottleneck blocks (``models/ofa``), whose elastic ops slice their
weights and so cannot hold a separate branch module per kernel size or width:

- :class:`RepPointwise`: a 1x1 convolution plus SESR's collapsible expansion, a product ``B @ A`` through a wider
  inner dimension. A product, not another summed branch: without BatchNorm a sum of linear branches only rescales
  the learning rate of some taps, while a product changes the optimisation itself (SESR, ECBSR's conv1x1-conv3x3).
- :class:`RepDepthwise`: a kxk depthwise convolution plus ECBSR's Sobel-x, Sobel-y and Laplacian filters, each with
  a learned scale per channel, added at the centre (so one set serves every kernel size of an elastic layer).

Both keep the plain convolution's parameters under its own names (``weight``, ``bias``), so a plain checkpoint loads
into them, and their branches start at zero: a re-parameterised layer starts as the plain one it replaces.

Every branch is linear, so :meth:`RepConv.fold` computes the single kxk kernel and bias that give the same output
(up to float rounding), once, in ``deploy``: never on every forward, as BasicSR's ECB does in eval mode. The
deployed module is made of plain ``nn.Conv2d`` layers, so exporters, ``profile`` and latency see exactly the
network a plain model of the same shape would be.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

EDGE_FILTERS = {
    "sobel_x": [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],
    "sobel_y": [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]],
    "laplacian": [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
}


class RepConv(nn.Module):
    """kxk convolution trained as kxk + 1x1 + identity + expand (1x1 -> kxk) + edge branches (see module doc)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, expand: int = 2, edges: bool = True) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"RepConv needs an odd kernel, got {kernel}")
        self.in_channels, self.out_channels, self.kernel = cin, cout, kernel
        self.kxk = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
        self.pw = nn.Conv2d(cin, cout, 1)
        self.identity = cin == cout
        self.expand_in = nn.Conv2d(cin, expand * cout, 1)
        self.expand_out = nn.Conv2d(expand * cout, cout, kernel)  # valid: the branch pads its input (forward)
        self.edge_names = tuple(EDGE_FILTERS) if edges and kernel == 3 else ()
        self.edge_in = nn.ModuleList(nn.Conv2d(cin, cout, 1) for _ in self.edge_names)
        self.edge_scale = nn.ParameterList(nn.Parameter(torch.randn(cout, 1, 1) * 1e-3) for _ in self.edge_names)
        self.edge_bias = nn.ParameterList(nn.Parameter(torch.zeros(cout)) for _ in self.edge_names)
        for name in self.edge_names:
            self.register_buffer(f"filter_{name}", torch.tensor(EDGE_FILTERS[name]), persistent=False)

    def _edge_kernels(self) -> list[torch.Tensor]:
        """Each edge branch's depthwise kernel, (cout, 1, 3, 3): the fixed filter times its learned scale."""
        return [(getattr(self, f"filter_{name}") * scale)[:, None] for name, scale in
                zip(self.edge_names, self.edge_scale, strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.kernel // 2
        y = self.kxk(x) + self.pw(x)
        if self.identity:
            y = y + x
        # Two-layer branches run their 1x1 on the zero-padded input, then a valid kxk: the border then holds the
        # 1x1's bias, exactly what the single folded kxk convolution reproduces (ECBSR pads with the bias too).
        xp = F.pad(x, (p, p, p, p))
        y = y + self.expand_out(self.expand_in(xp))
        for conv, kernel, bias in zip(self.edge_in, self._edge_kernels(), self.edge_bias, strict=True):  # k = 3
            y = y + F.conv2d(conv(xp), kernel, bias, groups=self.out_channels)
        return y

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        """The one kxk convolution (zero padding k // 2) equal to the sum of the branches."""
        k, p = self.kernel, self.kernel // 2
        w = self.kxk.weight.clone()
        b = self.kxk.bias.clone()
        w[:, :, p, p] += self.pw.weight[:, :, 0, 0]
        b += self.pw.bias
        if self.identity:
            w[:, :, p, p] += torch.eye(self.out_channels, dtype=w.dtype)
        # W2 * (W1 x + b1) = (W2 . W1) * x + sum over W2's taps of W2 b1.
        w += torch.einsum("oekl,ei->oikl", self.expand_out.weight, self.expand_in.weight[:, :, 0, 0])
        b += self.expand_out.bias + torch.einsum("oekl,e->o", self.expand_out.weight, self.expand_in.bias)
        for conv, kernel, bias in zip(self.edge_in, self._edge_kernels(), self.edge_bias, strict=True):  # k = 3
            w += kernel * conv.weight  # depthwise: out channel o reads 1x1 row o
            b += bias + kernel.sum(dim=(1, 2, 3)) * conv.bias
        folded = nn.Conv2d(self.in_channels, self.out_channels, k, padding=p, dtype=w.dtype, device=w.device)
        folded.weight.copy_(w)
        folded.bias.copy_(b)
        return folded


def edge_kernels(scales: torch.Tensor) -> torch.Tensor:
    """ECBSR's three edge filters weighted per channel: ``scales`` (C, 3) -> depthwise 3x3 kernels (C, 1, 3, 3)."""
    filters = torch.tensor(list(EDGE_FILTERS.values()), dtype=scales.dtype, device=scales.device)
    return torch.einsum("cj,jkl->ckl", scales, filters)[:, None]


def add_centred(kernel: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
    """``kernel`` (C, 1, k, k) plus ``small`` (C, 1, s, s), s <= k, added at its centre (out of place)."""
    pad = (kernel.shape[-1] - small.shape[-1]) // 2
    return kernel + F.pad(small, (pad, pad, pad, pad))


class _MergedConv(nn.Conv2d):
    """A convolution that runs ``merged_weight()`` (its own weight plus its branches), and folds to a plain
    ``nn.Conv2d`` of the same shape holding it."""

    def merged_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.merged_weight(), self.bias)

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        folded = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, padding=self.padding,
                           groups=self.groups, dtype=self.weight.dtype, device=self.weight.device)
        folded.weight.copy_(self.merged_weight())
        folded.bias.copy_(self.bias)
        return folded


class RepPointwise(_MergedConv):
    """1x1 convolution trained as ``weight + B @ A`` (see module doc). ``inner`` is the width of the product;
    ``B`` starts at zero, so the layer starts as the plain convolution (and ``A`` gets gradient once ``B`` moves)."""

    def __init__(self, cin: int, cout: int, inner: int) -> None:
        super().__init__(cin, cout, 1)
        self.rep_a = nn.Parameter(torch.randn(inner, cin) / math.sqrt(cin))
        self.rep_b = nn.Parameter(torch.zeros(cout, inner))

    def merged_weight(self) -> torch.Tensor:
        return self.weight + (self.rep_b @ self.rep_a)[:, :, None, None]


class RepDepthwise(_MergedConv):
    """kxk depthwise convolution (k >= 3) trained with ECBSR's edge filters added at its centre, each scaled per
    channel (``rep_edge``, (C, 3), starting at zero)."""

    def __init__(self, channels: int, kernel: int) -> None:
        if kernel % 2 == 0 or kernel < 3:
            raise ValueError(f"RepDepthwise needs an odd kernel >= 3, got {kernel}")
        super().__init__(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.rep_edge = nn.Parameter(torch.zeros(channels, len(EDGE_FILTERS)))

    def merged_weight(self) -> torch.Tensor:
        return add_centred(self.weight, edge_kernels(self.rep_edge))


FOLDABLE = (RepConv, RepPointwise, RepDepthwise)


def reparameterize(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every re-parameterised convolution (``FOLDABLE``) folded into its plain
    convolution; ``module`` itself when it holds none (the trained module always keeps its training form)."""
    if not any(isinstance(m, FOLDABLE) for m in module.modules()):
        return module
    out = copy.deepcopy(module)
    for child in list(out.modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, FOLDABLE):
                setattr(child, attr, sub.fold())
    return out
