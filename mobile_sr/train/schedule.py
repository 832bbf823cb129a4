"""The one learning-rate schedule of every trainer: linear warm-up, then cosine decay to a floor.

A pure function of the step, so a resumed run continues on exactly the schedule it left.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """The learning rate at 0-based ``step`` of ``total``: ``peak * (step + 1) / warmup`` during the warm-up,
    then a cosine from ``peak`` down to ``min_ratio * peak`` at ``total`` (held there after it)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    floor = peak * min_ratio
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(t, 1.0)))
