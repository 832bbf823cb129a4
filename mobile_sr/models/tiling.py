"""Tiled inference: any image size with bounded memory, and the same result as one big pass.

Tiles overlap by ``overlap`` LR pixels on each side; each tile's output is cropped to its own
core before being pasted, so seams never see zero-padding. With an overlap at least the network's
receptive-field radius the result equals the untiled one up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def upscale_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    lr: torch.Tensor,
    scale: int,
    tile: int | None = None,
    overlap: int = 8,
    on_tile: Callable[[], None] | None = None,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Run ``fn`` (1,C,h,w) -> (1,C,h*s,w*s) over ``lr`` (C,H,W) in ``tile`` x ``tile`` pieces.

    The output (C, H*s, W*s) is allocated once; only one tile's activations live at a time.
    ``tile=None`` runs the whole image in one pass. With ``out_dtype`` uint8/uint16 each tile is
    clamped and rounded as it is pasted, so a huge output costs 1-2 bytes per value, not 4.
    """
    c, h, w = lr.shape
    if tile is not None and (tile < 1 or overlap < 0):
        raise ValueError(f"tile must be >= 1 and overlap >= 0 (got tile={tile}, overlap={overlap})")
    if tile is None or (h <= tile and w <= tile):
        with torch.no_grad():
            return _cast(fn(lr[None])[0], out_dtype)
    out = torch.empty(c, h * scale, w * scale, dtype=out_dtype)
    with torch.no_grad():
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
                t1, l1 = min(bottom + overlap, h), min(right + overlap, w)
                sr = fn(lr[None, :, t0:t1, l0:l1])[0]
                oy, ox = (top - t0) * scale, (left - l0) * scale
                core = sr[:, oy : oy + (bottom - top) * scale, ox : ox + (right - left) * scale]
                out[:, top * scale : bottom * scale, left * scale : right * scale] = _cast(core, out_dtype)
                if on_tile is not None:
                    on_tile()
    return out


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return x.to(dtype)
    peak = 65535.0 if dtype == torch.uint16 else 255.0
    return x.clamp(0, 1).mul(peak).round().to(dtype)
