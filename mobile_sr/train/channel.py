"""The differentiable stand-in, in training, for what happens to a learned LR before the phone sees it.

At run time the LR is clamped to [0, 1], rounded to 8 bits and written as a PNG (or JPEG); the evaluation
pipeline does exactly that. Training must see the same thing, or the downscaler learns to hide detail in
fractions of a level that no PNG keeps (the OFA seed's float bottleneck). Rounding has no gradient, so the
forward pass rounds and the backward pass treats the rounding as the identity (a straight-through estimator).

JPEG-aware training (AIDN+, SAIN) puts a JPEG between the two: kornia's differentiable JPEG (4:2:0, the
standard tables scaled by quality), at a quality drawn per image. A downscaler trained on PNG alone hides
detail in ±1-level patterns that JPEG removes first.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Channel = Callable[[torch.Tensor], torch.Tensor]
JPEG_STREAM = 0x4A504547  # "JPEG": keeps these draws apart from the patch sampler's (seed, step, index)


def round_8bit(lr: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 1/255 steps; gradients pass the rounding unchanged (not the clamp)."""
    clamped = lr.clamp(0, 1)
    return clamped + (clamped.mul(255).round().div(255) - clamped).detach()


@dataclass(frozen=True)
class JpegRange:
    """``--jpeg LO-HI[@P]``: with probability P (default 1) an image of the batch goes through a JPEG of a quality
    drawn uniformly from [LO, HI]; the others are sent as 8-bit PNG."""

    lo: int
    hi: int
    prob: float = 1.0

    @classmethod
    def parse(cls, text: str) -> JpegRange:
        spec, _, prob = text.partition("@")
        lo, sep, hi = spec.partition("-")
        try:
            rng = cls(int(lo), int(hi) if sep else int(lo), float(prob) if prob else 1.0)
        except ValueError:
            raise ValueError(f"--jpeg {text!r}: expected LO-HI[@P], e.g. 75-90 or 75-90@0.5") from None
        if not 1 <= rng.lo <= rng.hi <= 100 or not 0 < rng.prob <= 1:
            raise ValueError(f"--jpeg {text!r}: qualities must be 1 <= LO <= HI <= 100 and 0 < P <= 1")
        if importlib.util.find_spec("kornia") is None:
            raise ValueError("--jpeg needs kornia's differentiable JPEG: pip install 'mobile-sr[train]'")
        return rng

    def __str__(self) -> str:
        return f"{self.lo}-{self.hi}" + (f"@{self.prob:g}" if self.prob < 1 else "")


def channel(jpeg: JpegRange | None, seed: int, step: int, indices: Sequence[int] | None = None) -> Channel:
    """What a saved LR goes through at ``step``: 8-bit rounding, then for some images a JPEG. Image ``i`` of the
    global batch (``indices``: this rank's share, default all) draws its quality from (seed, step, i) alone, so
    a resumed run replays the draws and N DDP ranks draw what one process does."""
    if jpeg is None:
        return round_8bit

    def send(lr: torch.Tensor) -> torch.Tensor:
        from kornia.enhance import jpeg_codec_differentiable

        n = lr.shape[0]
        draws = [_draw(jpeg, seed, step, i) for i in (indices if indices is not None else range(n))]
        quality = torch.tensor([q for q, _ in draws], dtype=torch.float32)
        use = torch.tensor([u for _, u in draws])
        png = round_8bit(lr)
        if not use.any():
            return png
        # The codec's output is again an 8-bit image on the phone: round it too (straight through).
        coded = round_8bit(jpeg_codec_differentiable(png[use], quality[use].to(lr.device)))
        out = png.clone()
        out[use] = coded
        return out

    return send


def _draw(jpeg: JpegRange, seed: int, step: int, index: int) -> tuple[int, bool]:
    # Integers only: a str's hash differs from process to process (PYTHONHASHSEED), an int tuple's does not.
    g = torch.Generator().manual_seed(hash((seed, step, index, JPEG_STREAM)) & 0x7FFFFFFFFFFF)
    return int(torch.randint(jpeg.lo, jpeg.hi + 1, (1,), generator=g)), bool(torch.rand(1, generator=g) < jpeg.prob)
