"""The Once-for-All SR supernet, its architecture space, and the static subnets cut from it.

Layout (all at LR resolution until the upsampler)::

    x -> head 3x3 (3->W) -> f -> [stage 1: up to 3 blocks] -> [stage 2: up to 3 blocks] -> +f
      -> upsampler(x2: out 3x3 (W->12), + anchor, PixelShuffle 2)
                  (x4: 3x3 (W->4W), PixelShuffle 2, ReLU, then the x2 tail at 2x resolution)

Elastic dimensions: the depthwise kernel of every block {3,5,7}, the expand ratio of every block
{2,3,4}, the depth of every stage {1,2,3} and the number of PixelShuffle stages {1,2} (x2 or x4).
The body is shared by both scales; each scale has its own output convolution.

``rep=1`` trains the blocks re-parameterised (:mod:`.layers`); the head and the upsampler stay plain, so the
weights of a plain supernet load into a re-parameterised one (whose branches start at zero: the same function).

Image-space residual: the prediction is added to the nearest-neighbour upscaled input, made as a
fixed 0/1 1x1 convolution (input repeated s^2 times) before the depth-to-space, as in ELSR. For
x4 the anchor of the second stage is the nearest-neighbour 2x image. The network thus predicts
only detail, and every exporter sees plain convolutions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..reparam import FOLDABLE
from .layers import DynamicMBBlock, MBBlock, rep_inner

KERNELS = (3, 5, 7)
EXPANDS = (2, 3, 4)
DEPTHS = (1, 2, 3)
STAGES = 2
WIDTH = 24
SCALES = (2, 4)
TAILS = ("staged", "direct")  # a static subnet's upsampler at x4: the supernet's two PixelShuffle stages, or one


@dataclass(frozen=True)
class Arch:
    """One subnet: scale, depth per stage, and kernel/expand per block slot (slots past a stage's depth unused)."""

    scale: int
    depth: tuple[int, ...]
    kernel: tuple[int, ...]
    expand: tuple[int, ...]

    def __post_init__(self) -> None:
        slots = STAGES * DEPTHS[-1]
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale}")
        if len(self.depth) != STAGES or any(d not in DEPTHS for d in self.depth):
            raise ValueError(f"depth must be {STAGES} values from {DEPTHS}, got {self.depth}")
        if len(self.kernel) != slots or any(k not in KERNELS for k in self.kernel):
            raise ValueError(f"kernel must be {slots} values from {KERNELS}, got {self.kernel}")
        if len(self.expand) != slots or any(e not in EXPANDS for e in self.expand):
            raise ValueError(f"expand must be {slots} values from {EXPANDS}, got {self.expand}")

    @classmethod
    def from_dict(cls, d: dict) -> Arch:
        try:
            return cls(int(d["scale"]), tuple(d["depth"]), tuple(d["kernel"]), tuple(d["expand"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an ofa-sr arch (needs scale, depth, kernel, expand): {d}") from exc

    def to_dict(self) -> dict:
        return {"scale": self.scale, "depth": list(self.depth), "kernel": list(self.kernel),
                "expand": list(self.expand)}

    def active_slots(self) -> list[int]:
        """Indices of the block slots this arch runs, in order."""
        return [s * DEPTHS[-1] + i for s, d in enumerate(self.depth) for i in range(d)]

    def canonical(self) -> Arch:
        """Unused slots reset to the smallest choice, so equal subnets compare (and hash) equal."""
        used = set(self.active_slots())
        k = tuple(k if i in used else KERNELS[0] for i, k in enumerate(self.kernel))
        e = tuple(e if i in used else EXPANDS[0] for i, e in enumerate(self.expand))
        return Arch(self.scale, self.depth, k, e)

    def encode(self) -> list[float]:
        """Feature vector for the accuracy predictor: one-hot kernel and expand per used slot, one-hot scale."""
        used = set(self.active_slots())
        feats: list[float] = [float(self.scale == s) for s in SCALES]
        for i in range(len(self.kernel)):
            feats += [float(i in used and self.kernel[i] == k) for k in KERNELS]
            feats += [float(i in used and self.expand[i] == e) for e in EXPANDS]
        return feats

    def subnet_config(self) -> dict:
        """Constructor arguments of the static :class:`OFASubnet`."""
        slots = self.active_slots()
        return {"width": WIDTH, "kernels": [self.kernel[i] for i in slots],
                "hidden": [WIDTH * self.expand[i] for i in slots]}


def largest(scale: int) -> Arch:
    n = STAGES * DEPTHS[-1]
    return Arch(scale, (DEPTHS[-1],) * STAGES, (KERNELS[-1],) * n, (EXPANDS[-1],) * n)


def smallest(scale: int, kernels=KERNELS, depths=DEPTHS, expands=EXPANDS) -> Arch:
    n = STAGES * DEPTHS[-1]
    return Arch(scale, (min(depths),) * STAGES, (min(kernels),) * n, (min(expands),) * n).canonical()


def sample(rng: random.Random, scale: int, kernels=KERNELS, depths=DEPTHS, expands=EXPANDS) -> Arch:
    """A uniformly random arch from the given choices (a progressive-shrinking phase narrows them)."""
    n = STAGES * DEPTHS[-1]
    return Arch(scale, tuple(rng.choice(depths) for _ in range(STAGES)),
                tuple(rng.choice(kernels) for _ in range(n)), tuple(rng.choice(expands) for _ in range(n))).canonical()


def _anchor(channels: int, scale: int) -> torch.Tensor:
    """Fixed 1x1 weights that repeat each input colour scale^2 times (nearest upscaling after PixelShuffle)."""
    w = torch.zeros(channels * scale * scale, channels, 1, 1)
    for c in range(channels):
        w[c * scale * scale : (c + 1) * scale * scale, c] = 1.0
    return w


class Upsampler(nn.Module):
    """``log2(scale)`` PixelShuffle stages: (3x3 W->4W, shuffle, ReLU) per extra stage, then the output stage.

    ``direct`` (a static subnet's option, not the supernet's): one 3x3 W->3s^2 convolution and one PixelShuffle s,
    as in FSRCNN's sub-pixel form and ELSR. At x4 the staged tail costs more than the whole body of a mid-sized
    subnet (a W->4W convolution at LR and a W->12 one at 2x), so a body trained in the supernet is given this tail
    and fine-tuned, when x4 must run within FSRCNN's latency. At x2 both forms are the same.
    """

    def __init__(self, width: int, scale: int, direct: bool = False) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale}")
        self.scale, self.direct = scale, direct or scale == 2
        self.step = scale if self.direct else 2  # the factor of the output PixelShuffle
        self.stages = nn.ModuleList([] if self.direct else
                                    [nn.Conv2d(width, 4 * width, 3, padding=1) for _ in range(scale.bit_length() - 2)])
        self.out = nn.Conv2d(width, 3 * self.step ** 2, 3, padding=1)
        self.register_buffer("anchor", _anchor(3, self.step), persistent=False)

    def forward(self, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        base = x
        for conv in self.stages:
            f = F.relu(F.pixel_shuffle(conv(f), 2))
            base = F.pixel_shuffle(F.conv2d(base, self.anchor), 2)
        return F.pixel_shuffle(self.out(f) + F.conv2d(base, self.anchor), self.step)


class OFASubnet(nn.Module):
    """A static subnet: head, a plain list of :class:`MBBlock`, the upsampler of its scale. No elastic op."""

    def __init__(self, scale: int = 2, width: int = WIDTH, kernels: list[int] | None = None,
                 hidden: list[int] | None = None, rep: int = 0, tail: str = "staged") -> None:
        super().__init__()
        if rep not in (0, 1):
            raise ValueError(f"OFA rep must be 0 or 1, got {rep}")
        if tail not in TAILS:
            raise ValueError(f"OFA tail must be one of {', '.join(TAILS)}, got {tail!r}")
        cfg = largest(scale).subnet_config()
        kernels = list(cfg["kernels"] if kernels is None else kernels)
        hidden = list(cfg["hidden"] if hidden is None else hidden)
        if len(kernels) != len(hidden) or not kernels:
            raise ValueError(f"kernels {kernels} and hidden {hidden} must be non-empty and of equal length")
        self.scale, self.width, self.kernels, self.hidden = scale, width, kernels, hidden
        # The inner width of the supernet's blocks, so that a cut keeps its branches whole (rep_inner).
        inner = rep_inner(width, width * EXPANDS[-1]) if rep else 0
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.Sequential(*[MBBlock(width, h, k, inner) for k, h in zip(kernels, hidden, strict=True)])
        self.upsampler = Upsampler(width, scale, direct=tail == "direct")
        if tail == "direct" and scale != 2:  # a new tail on a trained body starts as nearest-neighbour upscaling
            nn.init.zeros_(self.upsampler.out.weight)
            nn.init.zeros_(self.upsampler.out.bias)

    def config(self) -> dict:
        """The settings that rebuild this module: after ``deploy`` folds the branches it is a plain subnet (no rep)."""
        rep = any(isinstance(m, FOLDABLE) for m in self.blocks.modules())
        return {"width": self.width, "kernels": self.kernels, "hidden": self.hidden, **({"rep": 1} if rep else {}),
                **({"tail": "direct"} if self.scale != 2 and self.upsampler.direct else {})}

    def tail(self) -> nn.Module:
        return self.upsampler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        return self.upsampler(self.blocks(f) + f, x)


class OFASR(nn.Module):
    """The supernet. ``set_active(arch)`` picks a subnet; ``get_subnet(arch)`` cuts it out as an :class:`OFASubnet`."""

    def __init__(self, scale: int = 2, width: int = WIDTH, rep: int = 0) -> None:
        super().__init__()
        if rep not in (0, 1):
            raise ValueError(f"OFA rep must be 0 or 1, got {rep}")
        self.width, self.rep = width, rep
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.stages = nn.ModuleList([
            nn.ModuleList([DynamicMBBlock(width, EXPANDS, KERNELS, rep=bool(rep)) for _ in range(DEPTHS[-1])])
            for _ in range(STAGES)
        ])
        self.upsamplers = nn.ModuleDict({f"x{s}": Upsampler(width, s) for s in SCALES})
        for up in self.upsamplers.values():  # start as nearest-neighbour upscaling: training begins at ~30 dB
            nn.init.zeros_(up.out.weight)
            nn.init.zeros_(up.out.bias)
        self.set_active(largest(scale))

    def config(self) -> dict:
        return {"width": self.width, **({"rep": 1} if self.rep else {})}

    @property
    def scale(self) -> int:
        """The scale of the active subnet (the supernet serves x2 and x4)."""
        return self.arch.scale

    @property
    def blocks(self) -> list[DynamicMBBlock]:
        return [b for stage in self.stages for b in stage]

    def set_active(self, arch: Arch) -> None:
        self.arch = arch
        for block, k, e in zip(self.blocks, arch.kernel, arch.expand, strict=True):
            block.set_active(e, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        h = f
        for stage, depth in zip(self.stages, self.arch.depth, strict=True):
            for block in stage[:depth]:
                h = block(h)
        return self.upsamplers[f"x{self.arch.scale}"](h + f, x)

    @torch.no_grad()
    def get_subnet(self, arch: Arch) -> OFASubnet:
        """A static :class:`OFASubnet` with copies of ``arch``'s weights (the supernet keeps its active arch): plain
        convolutions, or for ``rep`` their re-parameterised form, which ``deploy`` folds into plain ones."""
        previous = self.arch
        self.set_active(arch)
        try:
            cfg = arch.subnet_config()
            net = OFASubnet(arch.scale, self.width, cfg["kernels"], cfg["hidden"], rep=self.rep).to(self.head.weight)
            net.head.load_state_dict(self.head.state_dict())
            blocks = [self.blocks[i].get_active_subnet() for i in arch.active_slots()]
            net.blocks = nn.Sequential(*blocks)
            net.upsampler.load_state_dict(self.upsamplers[f"x{arch.scale}"].state_dict())
        finally:
            self.set_active(previous)
        net.arch = arch.to_dict()  # type: ignore[attr-defined]
        return net.eval()

    def sort_channels(self) -> None:
        """Importance-sort every block's hidden channels (before the expand-ratio phase)."""
        for block in self.blocks:
            block.sort_channels()
