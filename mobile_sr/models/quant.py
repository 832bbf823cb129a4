"""The int8 grid, in one place: XNNPACK's PT2E quantizer, for quantization-aware training and for the int8 exports.

Per-channel symmetric int8 weights (max|w| / 127) and per-tensor affine int8 activations: the grid XNNPACK, LiteRT,
ONNX Runtime's QDQ and Core ML all run. Training (``train --qat``) fake-quantizes on this grid, and ExecuTorch and
Core ML convert on it (``export/pt2e.py``), so QAT learns against the rounding that the file will hold.

It needs the ``executorch`` extra (XNNPACK's quantizer ships with ExecuTorch) and torchao's PT2E.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import fx, nn
from torch.export import Dim

from .deploy import ExportWrapper

MAX_BATCH, MAX_SIDE = 256, 4096  # the dynamic shapes a prepared graph accepts (training batches, whole images)
WEIGHT_QMAX = 127  # int8 weights: per output channel, symmetric, scale = max|w| / 127 (TFLite, XNNPACK, ORT, Core ML)


def xnnpack_quantizer(qat: bool = False) -> object:
    """XNNPACK's quantizer with per-channel weights; ``qat`` swaps the observers for fake-quantizers.

    QAT keeps XNNPACK's activation fake-quantizers (a moving average of each batch's min/max) and rounds the weights
    on exactly the converters' grid, max|w| / 127 of the current weights (:func:`fake_quant_weight`). torchao's own
    per-channel fake-quantizer divides by 126.5 and lags the weights by a moving average; FSRCNN's image-carrying
    filters have taps about one step wide, so a weight trained on that grid lands elsewhere on the file's.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    if qat:
        config = dataclasses.replace(config, weight=dataclasses.replace(
            config.weight, observer_or_fake_quant_ctr=_weight_fake_quant_class()))
    return XNNPACKQuantizer().set_global(config)


def _weight_fake_quant_class() -> type:
    """A PT2E fake-quantizer for weights on :func:`fake_quant_weight`'s grid (straight-through gradient)."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    class WeightFakeQuant(FakeQuantizeBase):
        def __init__(self, ch_axis: int = 0, dtype: torch.dtype = torch.int8,
                     qscheme: torch.qscheme = torch.per_channel_symmetric, **_: object) -> None:
            super().__init__()
            self.ch_axis, self.dtype, self.qscheme = ch_axis, dtype, qscheme
            self.quant_min, self.quant_max = -WEIGHT_QMAX, WEIGHT_QMAX

        def calculate_qparams(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            scale = weight_scale(w.detach(), self.ch_axis).flatten()
            return scale, torch.zeros_like(scale, dtype=torch.int32)

        def forward(self, w: torch.Tensor) -> torch.Tensor:
            if not self.fake_quant_enabled[0]:
                return w
            scale, zero = self.calculate_qparams(w)
            return torch.fake_quantize_per_channel_affine(w, scale, zero, self.ch_axis, -WEIGHT_QMAX, WEIGHT_QMAX)

    return WeightFakeQuant


def weight_scale(w: torch.Tensor, axis: int) -> torch.Tensor:
    """The converters' int8 step of each output channel (along ``axis``) of ``w``: max|w| / 127, broadcastable."""
    dims = [d for d in range(w.dim()) if d != axis]
    return w.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / WEIGHT_QMAX


def fake_quant_weight(w: torch.Tensor, axis: int) -> torch.Tensor:
    """``w`` rounded to the converters' int8 grid along output-channel ``axis``, back in float."""
    scale = weight_scale(w, axis)
    return (w / scale).round().clamp(-WEIGHT_QMAX, WEIGHT_QMAX) * scale


def snap_weights(module: nn.Module) -> nn.Module:
    """Every convolution weight of ``module`` rounded to the int8 grid, in place: the end of QAT.

    Why: QAT trains float weights through a straight-through rounding, so they wander inside their rounding bins,
    and where a filter's small taps are as small as one step (FSRCNN's image-carrying filters) the float network
    they make is no longer the one that was trained. Snapped, the float weights *are* the int8 weights: the fp32
    model is the one QAT scored, with float activations, and any converter rounds them to themselves again
    (max|w| is on the grid, so the scale is unchanged)."""
    with torch.no_grad():
        for mod in module.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.copy_(fake_quant_weight(mod.weight, 0))
            elif isinstance(mod, nn.ConvTranspose2d) and mod.groups == 1:
                mod.weight.copy_(fake_quant_weight(mod.weight, 1))
    return module


def prepare_qat(module: nn.Module) -> torch.fx.GraphModule:
    """``module`` (x -> image, NCHW) as a PT2E graph with fake-quantizers on the int8 grid, for any batch and size.

    The graph shares its parameters with ``module``: an optimizer step on the graph trains ``module`` itself, so
    its float weights can be written as usual. The graph adds the fake-quantizers' observed ranges (buffers), which
    a checkpoint must keep for resume to be exact.
    """
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    example = torch.rand(2, 3, 24, 24)
    shapes = ({0: Dim("batch", min=1, max=MAX_BATCH), 2: Dim("height", min=8, max=MAX_SIDE),
               3: Dim("width", min=8, max=MAX_SIDE)},)
    # The exported graph ends in the wrapper's clamp, so its int8 output is quantized at 1/255: QAT sees the same.
    graph = torch.export.export(ExportWrapper(module), (example,), dynamic_shapes=shapes).module()
    prepared = pin_output_range(prepare_qat_pt2e(graph, xnnpack_quantizer(qat=True)))
    allow_exported_model_train_eval(prepared)  # .train()/.eval() become legal (they never stop observers)
    return prepared


# Ops between the last quantized tensor and the output that move or clamp values but compute none.
_TO_OUTPUT = {"pixel_shuffle", "clamp", "hardtanh", "view", "reshape", "permute"}


def pin_output_range(graph: fx.GraphModule) -> fx.GraphModule:
    """``graph`` (a PT2E graph just prepared, observers or QAT fake-quantizers) with its output tensor's int8 range
    fixed at [0, 1]: scale 1/255, on the 8-bit image's own grid. Returns ``graph``, changed in place.

    Why: the exported graph ends in ``clamp(0, 1)`` (``ExportWrapper``) after the last quantized tensor (an add or a
    convolution, then a pixel shuffle). Observed ranges reach past [0, 1] (a pair's upscaler on the calibration crops:
    -0.26 to 1.38), values there are clamped away anyway, and every level spent on them coarsens the step, here to
    1.6/255, which puts a second rounding off the image's grid on every pixel. At 1/255 the last rounding is the 8-bit
    image's own: `rescale` x2's int8 simulation gains 0.10 dB Set5, `ofa-m` x2's 0.006 dB.
    """
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase, FixedQParamsFakeQuantize
    from torchao.quantization.pt2e.observer import FixedQParamsObserver, ObserverBase

    (output,) = graph.graph.find_nodes(op="output")
    node, clamped = output.args[0][0], False
    while node.op == "call_function" and node.target.__name__.split(".")[0] in _TO_OUTPUT:
        if node.target.__name__.startswith(("clamp", "hardtanh")):
            clamped = clamped or tuple(node.args[1:3]) == (0.0, 1.0)
        node = node.args[0]
    old = getattr(graph, node.target, None) if node.op == "call_module" else None
    if not clamped or not isinstance(old, ObserverBase | FakeQuantizeBase):
        return graph  # not a graph that ends in clamp(0, 1) after a quantized tensor: nothing to pin
    qmin, qmax = old.quant_min, old.quant_max
    fixed = FixedQParamsObserver.with_args(scale=1.0 / (qmax - qmin), zero_point=qmin, dtype=old.dtype,
                                           quant_min=qmin, quant_max=qmax)
    setattr(graph, node.target, FixedQParamsFakeQuantize(fixed) if isinstance(old, FakeQuantizeBase) else fixed())
    return graph


@contextmanager
def frozen_ranges(graph: nn.Module) -> Iterator[nn.Module]:
    """``graph`` with its activation observers off: it fake-quantizes with the ranges observed so far.

    Why: a fake-quantizer observes whatever passes through it, in eval mode too (``eval()`` only switches dropout
    and batch norm). Scoring a QAT graph on validation images would otherwise pull its ranges toward them, and
    validation would change what is trained."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    quants = [m for m in graph.modules() if isinstance(m, FakeQuantizeBase) and bool(m.observer_enabled[0])]
    for m in quants:
        m.disable_observer()
    try:
        yield graph
    finally:
        for m in quants:
            m.enable_observer()


def equalize(model: nn.Module, calib: torch.Tensor) -> nn.Module:
    """A copy of ``model`` with every conv -> PReLU -> conv chain range-equalized on ``calib`` (N,3,H,W).

    Range equalization (Nagel et al., ICCV 2019, section 4.1; the why is in ``export/dfq.py``) leaves the float
    function unchanged and evens out the per-tensor activation ranges. The int8 exports apply it to a copy, and QAT
    starts from it (``train --qat``): so it lives here, below both."""
    model = copy.deepcopy(model).eval()
    chains = _chains(model)
    if not chains:
        return model
    ranges: dict[nn.Module, torch.Tensor] = {}

    def record(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        r = out.detach().abs().amax(dim=(0, 2, 3))
        ranges[mod] = torch.maximum(ranges[mod], r) if mod in ranges else r

    run_hooked(model, calib, [a.register_forward_hook(record) for a, _ in chains])
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


def run_hooked(model: nn.Module, calib: torch.Tensor, handles: list) -> None:
    """Run every calibration image through ``model`` so the hooks record statistics, then remove them."""
    try:
        with torch.no_grad():
            for x in calib:
                model(x[None])
    finally:
        for h in handles:
            h.remove()
