"""MATLAB-bicubic downscaling as a model (role ``downscaler``): the reference every learned downscaler is
measured against, and the server side of the plain "bicubic down, SR up" pipeline.

It has no weights. The factor is a number, not only an integer: ``imresize`` takes any factor, and the
output is ``ceil(H / scale)`` x ``ceil(W / scale)`` as in MATLAB. Values are not rounded here; the
pipeline rounds the LR to 8 bits as a saved image would be.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..data.imresize import imresize, resize_matrix


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


class BicubicConv(nn.Module):
    """MATLAB-bicubic downscaling by an integer factor as two fixed strided depthwise convolutions over a
    symmetric-padded image: the same numbers as :func:`imresize` (tests/test_pairs.py checks), but a graph that
    exports (ONNX, TFLite) at any input size, unlike imresize's size-dependent matrices.

    At an integer factor every output pixel sees the same taps, so MATLAB's per-pixel weights are one
    kernel; MATLAB pads symmetrically (the edge pixel repeated), which is what the padding here does."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = int(scale)
        taps, self.pad = bicubic_taps(self.scale)
        k = taps.numel()
        self.register_buffer("kh", taps.view(1, 1, k, 1).repeat(3, 1, 1, 1), persistent=False)
        self.register_buffer("kw", taps.view(1, 1, 1, k).repeat(3, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale
        x = F.conv2d(symmetric_pad(x, self.pad, -2), self.kh.to(x.dtype), stride=(s, 1), groups=3)
        return F.conv2d(symmetric_pad(x, self.pad, -1), self.kw.to(x.dtype), stride=(1, s), groups=3)


def symmetric_pad(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """``pad`` values mirrored onto each end of ``dim``, the edge value repeated (MATLAB's ``symmetric``), also
    for a side shorter than ``pad`` (a 1-pixel tile), where the mirror image repeats as MATLAB's index map does."""
    n = x.shape[dim]
    if n >= pad:  # slices + concat, not a gather: TFLite's XNNPACK delegate runs all but two of the concats
        left = [x.narrow(dim, i, 1) for i in reversed(range(pad))]
        right = [x.narrow(dim, n - 1 - i, 1) for i in range(pad)]
        return torch.cat([*left, x, *right], dim=dim)
    idx = torch.remainder(torch.arange(-pad, n + pad, device=x.device), 2 * n)
    return x.index_select(dim, torch.where(idx >= n, 2 * n - 1 - idx, idx))


def bicubic_taps(scale: int) -> tuple[torch.Tensor, int]:
    """(kernel, left padding) of MATLAB's x1/scale bicubic: read off an interior row of its resize matrix."""
    n = 16 * scale
    mat = resize_matrix(n, n // scale, 1 / scale)
    row = n // scale // 2
    nz = mat[row].nonzero().flatten()
    first, last = int(nz[0]), int(nz[-1])
    taps = mat[row, first : last + 1]  # float64: cast where used
    pad = row * scale - first  # output pixel i starts reading at input i*s - pad
    if taps.numel() != 2 * pad + scale:
        raise AssertionError(f"bicubic x1/{scale}: taps {taps.numel()} and padding {pad} do not line up")
    return taps, pad
