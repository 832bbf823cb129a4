"""The differentiable stand-in, in training, for what happens to a learned LR before the phone sees it.

At run time the LR is clamped to [0, 1], rounded to 8 bits and written as a PNG (or JPEG); the evaluation
pipeline does exactly that. Training must see the same thing, or the downscaler learns to hide detail in
fractions of a level that no PNG keeps (the OFA seed's float bottleneck). Rounding has no gradient, so the
forward pass rounds and the backward pass treats the rounding as the identity (a straight-through estimator).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Channel = Callable[[torch.Tensor], torch.Tensor]


def round_8bit(lr: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 1/255 steps; gradients pass the rounding unchanged (not the clamp)."""
    clamped = lr.clamp(0, 1)
    return clamped + (clamped.mul(255).round().div(255) - clamped).detach()


def honest_channel() -> Channel:
    """What a saved 8-bit PNG does to the LR."""
    return round_8bit
