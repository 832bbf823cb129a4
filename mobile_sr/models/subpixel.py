"""Stride-s transposed convolutions rewritten as sub-pixel convolutions (a conv, then ``PixelShuffle(s)``).

Why: runtimes do not run the two equally well. XNNPACK in LiteRT runs FSRCNN's 9x9 stride-2 transposed
convolution slowly: FSRCNN x2 took 452-482 ms against ONNX Runtime's 126-130 ms (x86 host, one thread, 256x256),
and 82-106 ms in LiteRT once rewritten. A convolution followed by PixelShuffle is the fast path in every runtime
(ELSR and the OFA subnets upsample that way); ONNX Runtime pays only for the zero taps (below), 5-18%.
``deploy`` applies :func:`to_subpixel`, so every export, benchmark and evaluation sees the sub-pixel form.

The rewrite is exact. Output pixel ``o = s*q + r`` (phase ``r``) of a transposed convolution gathers input
pixels ``q + d`` through kernel tap ``t = s*(a - d) + b``, where ``r + padding = s*a + b``: phase ``r`` is an
ordinary correlation over the LR grid with its own sub-kernel. One convolution with ``Cout*s*s`` output channels
computes every phase at once; PixelShuffle interleaves them; a crop removes what the shared padding adds. When
the kernel size is not a multiple of the stride (FSRCNN's 9x9 at x2 and x4) the phases' sub-kernels differ in
size and are zero-padded to a common one, so the sub-pixel convolution does more multiply-accumulates than the
transposed one counted as a scatter (x2: 5x5 taps for 4 phases against 9x9; x4: 3x3 for 16). ``profile`` counts
the convolution that is exported, zeros included.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class _Axis:
    """The sub-pixel layout along one spatial axis (see the module docstring for the index algebra)."""

    taps: list[list[tuple[int, int]]]  # per phase r: (sub-kernel index j, transposed tap t) pairs
    size: int  # common sub-kernel size
    padding: int  # symmetric padding of the convolution
    crop: tuple[int, int]  # HR rows removed (top, bottom) after the shuffle


def _axis(kernel: int, stride: int, padding: int, output_padding: int) -> _Axis:
    phases = []
    for r in range(stride):
        a, b = divmod(r + padding, stride)
        # tap t = s*m + b (m = 0, 1, ...) reads input offset d = a - m
        phases.append([(a - m, stride * m + b) for m in range(-(-(kernel - b) // stride))])
    offsets = [d for taps in phases for d, _ in taps]
    lo, hi = min(offsets), max(offsets)
    size = hi - lo + 1
    # LR rows the phases need: Q = ceil(Hout / s) = H + extra, Hout = (H-1)*s - 2*padding + kernel + output_padding
    excess = kernel - 2 * padding + output_padding - stride  # Hout - s*H
    extra = -(-excess // stride)
    pad = max(0, -lo, hi + extra)  # conv output row q + (pad + lo) is LR row q
    top = pad + lo
    bottom = stride * (2 * pad - size + 1 - top) - excess  # conv output is H + 2*pad - size + 1 rows
    return _Axis([[(d - lo, t) for d, t in taps] for taps in phases], size, pad, (stride * top, bottom))


class SubPixelConv(nn.Module):
    """``conv`` (Cout*s*s channels), ``PixelShuffle(s)``, then a constant crop: the exact equivalent of a
    stride-s transposed convolution (built by :meth:`from_transposed`)."""

    def __init__(self, conv: nn.Conv2d, scale: int, crop: tuple[int, int, int, int] = (0, 0, 0, 0)) -> None:
        super().__init__()
        self.conv = conv
        self.shuffle = nn.PixelShuffle(scale)
        self.crop = crop  # (top, bottom, left, right) HR pixels

    @classmethod
    def from_transposed(cls, deconv: nn.ConvTranspose2d) -> SubPixelConv:
        """The sub-pixel form of ``deconv`` (ungrouped, undilated, the same stride on both axes, stride > 1)."""
        if not is_rewritable(deconv):
            raise ValueError(f"no sub-pixel form for {deconv}: needs groups=1, dilation 1, equal strides > 1")
        s = deconv.stride[0]
        rows, cols = (_axis(deconv.kernel_size[i], s, deconv.padding[i], deconv.output_padding[i]) for i in (0, 1))
        w = deconv.weight.detach()  # (Cin, Cout, kh, kw)
        cin, cout = w.shape[:2]
        conv = nn.Conv2d(cin, cout * s * s, (rows.size, cols.size), padding=(rows.padding, cols.padding),
                         bias=deconv.bias is not None, device=w.device, dtype=w.dtype)
        weight = torch.zeros(cout, s, s, cin, rows.size, cols.size, dtype=w.dtype, device=w.device)
        for rh, taps_h in enumerate(rows.taps):
            for rw, taps_w in enumerate(cols.taps):
                for jh, th in taps_h:
                    for jw, tw in taps_w:
                        weight[:, rh, rw, :, jh, jw] = w[:, :, th, tw].T
        with torch.no_grad():
            conv.weight.copy_(weight.reshape(cout * s * s, cin, rows.size, cols.size))  # PixelShuffle's order
            if deconv.bias is not None:
                conv.bias.copy_(deconv.bias.detach().repeat_interleave(s * s))
        return cls(conv, s, (*rows.crop, *cols.crop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.shuffle(self.conv(x))
        top, bottom, left, right = self.crop
        if any(self.crop):  # a slice only where the shared padding adds rows (e.g. 9x9 at x3)
            y = y[..., top : -bottom or None, left : -right or None]
        return y


def is_rewritable(mod: nn.Module) -> bool:
    """A transposed convolution that :class:`SubPixelConv` reproduces and that gains from it (stride > 1)."""
    return (isinstance(mod, nn.ConvTranspose2d) and mod.groups == 1 and mod.dilation == (1, 1)
            and mod.stride[0] == mod.stride[1] > 1)


def to_subpixel(module: nn.Module) -> nn.Module:
    """``module`` with every rewritable transposed convolution replaced by its :class:`SubPixelConv`; a copy
    when anything is replaced (the trained module keeps its form), ``module`` itself otherwise."""
    if is_rewritable(module):
        return SubPixelConv.from_transposed(module)
    if not any(is_rewritable(m) for m in module.modules()):
        return module
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if is_rewritable(child):
                setattr(parent, name, SubPixelConv.from_transposed(child))
    return module
