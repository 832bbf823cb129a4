"""A downscaler and an upscaler shipped, loaded and evaluated together (role ``pair``).

The server runs ``downscaler`` on the HR image and sends an 8-bit LR image; the phone runs
``upscaler`` on it. One module holds both, so one state dict (``downscaler.*``, ``upscaler.*``) and
one manifest describe the pair, and joint training optimises one module. How the two are chained
(rounding to 8 bits, a codec in between) is the caller's business: the evaluation pipeline rounds and
encodes for real; the training loop passes a differentiable stand-in as ``channel`` to :meth:`SRPair.forward`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class SRPair(nn.Module):
    def __init__(self, scale: float = 2, downscaler: dict | None = None, upscaler: dict | None = None,
                 build: Callable[..., nn.Module] | None = None) -> None:
        """``downscaler``/``upscaler`` are ``{"model": NAME, "config": {...}}``; ``build`` is
        ``create_model`` (passed in by the registry, which this module must not import)."""
        super().__init__()
        if downscaler is None or upscaler is None or build is None:
            raise ValueError("a pair needs downscaler={'model': ...}, upscaler={'model': ...} (and the registry)")
        self.scale = scale
        self.parts = {"downscaler": dict(downscaler), "upscaler": dict(upscaler)}
        self.downscaler = build(downscaler["model"], scale, pretrained=False, **downscaler.get("config", {}))
        self.upscaler = build(upscaler["model"], scale, pretrained=False, **upscaler.get("config", {}))

    def config(self) -> dict:
        return {"downscaler": {"model": self.parts["downscaler"]["model"], "config": self.downscaler.config()},
                "upscaler": {"model": self.parts["upscaler"]["model"], "config": self.upscaler.config()}}

    def tail(self) -> nn.Module:
        return self.upscaler.tail()

    @property
    def arbitrary(self) -> bool:
        """Both parts take any factor of their range (models/aidn.py), not only the pair's own ``scale``."""
        return bool(getattr(self.downscaler, "arbitrary", False) and getattr(self.upscaler, "arbitrary", False))

    def forward(self, hr: torch.Tensor, channel: Callable[[torch.Tensor], torch.Tensor] | None = None,
                scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR as the downscaler made it, SR of ``channel(LR)``): the joint-training forward. ``channel`` is
        what happens to the LR on its way to the phone (clamp + 8-bit rounding, a codec); None sends it as is.
        ``scale``: the factor of this batch, for a scale-arbitrary pair (the SR then has the HR's exact size)."""
        if scale is None or not self.arbitrary:
            if scale is not None and scale != self.scale:
                raise ValueError(f"this pair serves x{self.scale:g} only, not x{scale:g}")
            lr = self.downscaler(hr)
            return lr, self.upscaler(channel(lr) if channel is not None else lr)
        lr = self.downscaler(hr, scale)
        return lr, self.upscaler(channel(lr) if channel is not None else lr, scale, size=tuple(hr.shape[-2:]))


class PairView(nn.Module):
    """A pair's downscaler in front of another form of its upscaler (QAT's fake-quantized graph of it, ``train --qat``):
    :class:`SRPair`'s joint forward at the pair's own scale, sharing both parts' parameters, so that a step on the view
    trains the pair itself."""

    def __init__(self, downscaler: nn.Module, upscaler: nn.Module) -> None:
        super().__init__()
        self.downscaler, self.upscaler = downscaler, upscaler

    def forward(self, hr: torch.Tensor, channel: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        lr = self.downscaler(hr)
        return lr, self.upscaler(channel(lr) if channel is not None else lr)
