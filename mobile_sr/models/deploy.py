"""``deploy(model)``: the one step between a trained module and everything that runs it.

Export, ``profile``, bench, search and evaluation all take the deployed module, so the graph that is
exported, the MACs that are counted and the PSNR that is reported belong to one and the same module.
Today deploy cuts the active OFA subnet out of a supernet (plain convolutions, no elastic op left), deploys a
pair part by part, folds every re-parameterised convolution into the one plain convolution its branches sum to
(``reparam.py``), and rewrites every stride-s transposed convolution as a convolution plus PixelShuffle
(``subpixel.py``: exact, and the fast path in every runtime); it is where QAT modules will be converted.
Deploying a deployed model changes nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from . import Model, Scale, create_model
from .ofa import OFASR, Arch
from .pair import SRPair
from .reparam import reparameterize
from .subpixel import to_subpixel


def deploy_module(module: nn.Module) -> nn.Module:
    """The static, inference-only form of ``module`` (a new module where the form changes)."""
    if isinstance(module, OFASR):
        module = module.get_subnet(module.arch)
    elif isinstance(module, SRPair):  # a copy: the trained pair keeps its training form
        module = copy.deepcopy(module)
        module.downscaler = deploy_module(module.downscaler)
        module.upscaler = deploy_module(module.upscaler)
    # Copies where a re-parameterised convolution is folded or a transposed convolution rewritten.
    return to_subpixel(reparameterize(module)).eval()


def deploy_subnet(supernet: OFASR, arch: Arch) -> nn.Module:
    """The deployed module of one subnet of ``supernet`` (what search measures, scores and writes): the same
    step as :func:`deploy`, for an arch that is not the active one."""
    previous = supernet.arch
    supernet.set_active(arch)
    try:
        return deploy_module(supernet)
    finally:
        supernet.set_active(previous)


def deploy_pair_subnet(pair: SRPair, arch: Arch) -> SRPair:
    """A supernet pair (``rescale-ofa``) with its upscaler cut at ``arch``: the deployed downscaler and the static
    subnet, as a pair whose config names them (``ofa-subnet``), so that it is written, loaded and exported like
    any pair."""
    down, up = deploy_module(pair.downscaler), deploy_subnet(pair.upscaler, arch)
    cut = SRPair(pair.scale, downscaler={"model": pair.parts["downscaler"]["model"], "config": down.config()},
                 upscaler={"model": "ofa-subnet", "config": up.config()}, build=create_model)
    cut.downscaler.load_state_dict(down.state_dict())
    cut.upscaler.load_state_dict(up.state_dict())
    return cut.eval()


def deploy(model: Model) -> Model:
    """``model`` with its module in deployed form (see the module docstring)."""
    if model.deployed:
        return model
    return replace(model, module=deploy_module(model.module), deployed=True)


class ExportWrapper(nn.Module):
    """The graph that is exported: ``model(x).clamp(0, 1)``.

    Why the clamp: apps clamp the output to 8-bit pixels anyway, and with it the output range is
    exactly [0, 1], so an int8 output is quantized with the scale 1/255 (no range wasted on
    overshoot) and per-format results agree on saturated pixels. It is a single cheap op every
    runtime has (TFLite RELU_0_TO_1 / MINIMUM+MAXIMUM, Core ML clip, ONNX Clip, XNNPACK clamp).
    """

    def __init__(self, model: nn.Module, qat: bool = False) -> None:
        """``qat``: the model was trained quantization-aware, so int8 calibration observes its activation ranges
        as its fake-quantizers did (min/max) rather than trimming them (``export/onnx.py``)."""
        super().__init__()
        self.model = model
        self.qat = qat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).clamp(0.0, 1.0)


@dataclass
class Profile:
    params: int
    macs_per_output_pixel: float


def profile(module: nn.Module, scale: Scale, size: int = 32) -> Profile:
    """Parameter count and multiply-accumulates per output pixel, counted from the real layers of a deployed
    ``module`` (callers deploy first: the MACs counted are those of the graph that is exported, so a transposed
    convolution counts as its sub-pixel convolution, zero taps included)."""
    macs = 0

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, nn.ConvTranspose2d):  # every input pixel scatters a k x k x Cout patch
            macs += inp[0].shape[-2] * inp[0].shape[-1] * mod.in_channels * mod.out_channels // mod.groups * k
        else:
            macs += out.shape[-2] * out.shape[-1] * out.shape[1] * mod.in_channels // mod.groups * k

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in module.parameters())
    return Profile(params, macs / (size * scale) ** 2)
