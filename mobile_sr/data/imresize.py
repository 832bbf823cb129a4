"""MATLAB-compatible bicubic resize (``imresize(img, scale, 'bicubic')``), in torch.

Why not ``F.interpolate(mode='bicubic', antialias=True)``: PyTorch uses a=-0.75 and a
different support when shrinking, so its LR images differ from the MATLAB ones that every
published SR table is computed on. Here the resize along each axis is a dense (out x in)
weight matrix built exactly like MATLAB's ``contributions`` (a=-0.5 cubic, kernel widened by
1/scale when shrinking, symmetric padding), so a whole batch is resized by two matmuls.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic kernel with a = -0.5, as in MATLAB."""
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=64)
def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> torch.Tensor:
    """Return the float64 (out_len, in_len) matrix that MATLAB's imresize applies along one axis."""
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = u[:, None] - idx
    if scale < 1 and antialias:
        weights = scale * _cubic(dist * scale)
    else:
        weights = _cubic(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Symmetric padding: index i outside [1, in_len] mirrors back inside (MATLAB's aux vector).
    aux = torch.cat([torch.arange(in_len), torch.arange(in_len - 1, -1, -1)])
    cols = aux[torch.remainder(idx.long() - 1, aux.numel())]
    mat = torch.zeros(out_len, in_len, dtype=torch.float64)
    mat.scatter_add_(1, cols, weights)
    return mat


def imresize(img: torch.Tensor, scale: float, antialias: bool = True) -> torch.Tensor:
    """Resize ``img`` (..., H, W) by ``scale`` like MATLAB ``imresize(img, scale, 'bicubic')``.

    The output size is ``ceil(H * scale)`` x ``ceil(W * scale)``, as in MATLAB. Values are not
    clamped or rounded: callers that want a saved 8-bit image call :func:`quantize`.
    """
    if img.dim() < 2:
        raise ValueError(f"imresize needs a tensor with at least 2 dims, got shape {tuple(img.shape)}")
    h, w = img.shape[-2:]
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    mh = resize_matrix(h, out_h, float(scale), antialias).to(img.device, img.dtype)
    mw = resize_matrix(w, out_w, float(scale), antialias).to(img.device, img.dtype)
    return mh @ img @ mw.T


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Clamp [0,1] values and round them to 8-bit levels, as writing a PNG would."""
    return img.clamp(0, 1).mul(255).round().div(255)
