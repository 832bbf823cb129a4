"""Tiled inference, the one way this package and its apps run a network over an image.

- :func:`upscale_tiled`: any image size with bounded memory, and the same result as one big pass
  (:func:`downscale_tiled` the same for a downscaler on the server side);
- :func:`at_fixed_size`: a network that only takes one input shape (an exported artifact, a phone's
  fixed tile) run on smaller tiles by edge padding, as the demo apps do.

Tiles overlap by ``overlap`` LR pixels on each side; each tile's output is cropped to its own
core before being pasted, so seams never see zero-padding. With an overlap at least the network's
receptive-field radius the result equals the untiled one up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .data.imresize import cells

Upscale = Callable[[torch.Tensor], torch.Tensor]  # (1, C, h, w) -> (1, C, h*s, w*s), float in [0, 1]
OVERLAP = 8  # LR pixels of context around each tile: covers every built-in network's receptive field


def upscale_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    lr: torch.Tensor,
    scale: float,
    tile: int | None = None,
    overlap: int = OVERLAP,
    on_tile: Callable[[], None] | None = None,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Run ``fn`` (1,C,h,w) -> (1,C,h*s,w*s) over ``lr`` (C,H,W) in ``tile`` x ``tile`` pieces.

    The output (C, H*s, W*s) is allocated once; only one tile's activations live at a time.
    ``tile=None`` runs the whole image in one pass. With ``out_dtype`` uint8/uint16 each tile is
    clamped and rounded as it is pasted, so a huge output costs 1-2 bytes per value, not 4.

    A fractional factor p/q (a scale-arbitrary model) tiles in cells of q x q LR pixels, each exactly p x p output
    pixels (``tile`` rounded down, ``overlap`` up to whole cells); an LR side that is not a multiple of q runs in
    one pass.
    """
    p, q = cells(scale)
    return _tiled(fn, lr, q, p, *_in_cells(tile, overlap, q), on_tile, out_dtype)


def downscale_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    hr: torch.Tensor,
    scale: float,
    tile: int | None = None,
    overlap: int = OVERLAP,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Run a downscaler ``fn`` (1,C,H,W) -> (1,C,H/s,W/s) over ``hr`` (C,H,W; sides multiples of ``scale``) in
    pieces of ``tile`` x ``tile`` *LR* pixels with ``overlap`` LR pixels of context: the same tiling as
    :func:`upscale_tiled`, with the HR and LR sides swapped (HR sides multiples of p at a factor p/q)."""
    p, q = cells(scale)
    return _tiled(fn, hr, p, q, *_in_cells(tile, overlap, q), None, out_dtype)


def _in_cells(tile: int | None, overlap: int, q: int) -> tuple[int | None, int]:
    """``tile`` and ``overlap`` (LR pixels) as cells of q LR pixels: the tile rounded down, the overlap up."""
    if q == 1:
        return tile, overlap
    return (None if tile is None else max(1, tile // q)), -(-overlap // q)


def _tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, s_in: int, s_out: int, tile: int | None,
           overlap: int, on_tile: Callable[[], None] | None, out_dtype: torch.dtype) -> torch.Tensor:
    """Tiles on a grid of cells, a cell being ``s_in`` x ``s_in`` input pixels that become ``s_out`` x ``s_out``
    output pixels (``tile`` and ``overlap`` count cells: LR pixels at an integer factor, whichever side the LR is
    on)."""
    c, h, w = x.shape[0], x.shape[1] // s_in, x.shape[2] // s_in
    if tile is not None and (tile < 1 or overlap < 0):
        raise ValueError(f"tile must be >= 1 and overlap >= 0 (got tile={tile}, overlap={overlap})")
    if tile is None or (h <= tile and w <= tile) or x.shape[1] % s_in or x.shape[2] % s_in:
        with torch.no_grad():
            return _cast(fn(x[None])[0], out_dtype)
    out = torch.empty(c, h * s_out, w * s_out, dtype=out_dtype)
    with torch.no_grad():
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
                t1, l1 = min(bottom + overlap, h), min(right + overlap, w)
                y = fn(x[None, :, t0 * s_in : t1 * s_in, l0 * s_in : l1 * s_in])[0]
                oy, ox = (top - t0) * s_out, (left - l0) * s_out
                core = y[:, oy : oy + (bottom - top) * s_out, ox : ox + (right - left) * s_out]
                out[:, top * s_out : bottom * s_out, left * s_out : right * s_out] = _cast(core, out_dtype)
                if on_tile is not None:
                    on_tile()
    return out


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return x.to(dtype)
    peak = 65535.0 if dtype == torch.uint16 else 255.0
    return x.clamp(0, 1).mul(peak).round().to(dtype)


def at_fixed_size(fn: Upscale, h: int, w: int, scale: float) -> Upscale:
    """Run ``fn`` (which only takes ``h`` x ``w``) on a smaller tile: pad by edge replication, crop back.
    ``scale`` is output over input size: 1/s for a downscaler (whose tiles are multiples of s)."""

    def run(x: torch.Tensor) -> torch.Tensor:
        th, tw = x.shape[-2:]
        y = fn(F.pad(x, (0, w - tw, 0, h - th), mode="replicate") if (th, tw) != (h, w) else x)
        return y[..., : round(th * scale), : round(tw * scale)]

    return run


def fixed_tile(h: int, w: int) -> int:
    """The tile core that leaves ``OVERLAP`` of context inside an ``h`` x ``w`` fixed input."""
    return min(h, w) - 2 * OVERLAP
