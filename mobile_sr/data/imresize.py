"""MATLAB-compatible bicubic resize (``imresize(img, scale, 'bicubic')``), in torch.

Why not ``F.interpolate(mode='bicubic', antialias=True)``: PyTorch uses a=-0.75 and a
different support when shrinking, so its LR images differ from the MATLAB ones that every
published SR table is computed on. Here the resize along each axis is a dense (out x in)
weight matrix built exactly like MATLAB's ``contributions`` (a=-0.5 cubic, kernel widened by
1/scale when shrinking, symmetric padding), so a whole batch is resized by two matmuls.
"""

from __future__ import annotations

import math
from fractions import Fraction
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
    return resize_to(img, (math.ceil(h * scale), math.ceil(w * scale)), scale, antialias)


MAX_DENOMINATOR = 16


def cells(scale: float) -> tuple[int, int]:
    """(p, q) with ``scale == p / q`` in lowest terms: a p x p HR block is exactly a q x q LR block at that factor,
    so HR sides that are multiples of p give an exact LR size (x2.5: 5 HR pixels per 2 LR pixels). Integer
    factors give (s, 1). ValueError for a factor that is no fraction with a denominator up to 16 (e.g. pi)."""
    frac = Fraction(float(scale)).limit_denominator(MAX_DENOMINATOR)
    if abs(float(frac) - float(scale)) > 1e-9 * float(scale) or frac < 1:
        raise ValueError(f"factor {scale:g}: expected a number >= 1 that is a fraction p/q with q <= "
                         f"{MAX_DENOMINATOR} (e.g. 2, 2.5, 3.25)")
    return frac.numerator, frac.denominator


def side_at(n: int, scale: float) -> int:
    """MATLAB's output side ``ceil(n * scale)``, robust to floating point (255 * 0.4 must give 102, not 103)."""
    return math.ceil(n * scale - 1e-6)


def resize_to(img: torch.Tensor, size: tuple[int, int], scale: float, antialias: bool = True) -> torch.Tensor:
    """:func:`imresize` to an exact ``size`` (h, w): at a fractional factor ``ceil(H * scale)`` can land one pixel
    off in floating point (90 * (1 / 2.25) is not 40), so callers that know the size they need pass it. ``scale``
    still sets the coordinate map and, below 1, the antialiasing width, as in MATLAB."""
    h, w = img.shape[-2:]
    mh = resize_matrix(h, size[0], float(scale), antialias).to(img.device, img.dtype)
    mw = resize_matrix(w, size[1], float(scale), antialias).to(img.device, img.dtype)
    return mh @ img @ mw.T


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Clamp [0,1] values and round them to 8-bit levels, as writing a PNG would."""
    return img.clamp(0, 1).mul(255).round().div(255)
