"""PT2E int8 quantization shared by ExecuTorch and Core ML: one recipe, one calibration.

XNNPACK's quantizer (``models/quant.py``, the grid ``train --qat`` trains on): per-channel symmetric int8 weights,
per-tensor affine int8 activations (histogram observer), the scheme XNNPACK and the Apple Neural Engine both run
natively. coremltools'
own PT2E quantizer imports ``torch.ao.quantization.quantizer``, which torch 2.13 no longer has, so
Core ML int8 reuses this one (and needs the executorch extra: ``Format.int8_extra``).

Calibration runs at the calibration images' own size (``CalibSet.native``), not at the export's. Why: the
shipped crops are 96x96, and the export's 256x256 batch is those crops mirrored, the same pixels 7 times over, so
observing it costs 7x the time for the same ranges (most of a default-model ExecuTorch int8 export). A graph
exported with dynamic height and width observes the crops as they are; the calibrated graph is exported again at
the export's static size by the format.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.export import Dim

from ..models.quant import MAX_SIDE, pin_output_range, xnnpack_quantizer


def quantize_pt2e(wrapper: nn.Module, example: torch.Tensor, calib: Sequence[torch.Tensor]) -> torch.fx.GraphModule:
    """The converted (quantize/dequantize-annotated) graph, calibrated on every (3, h, w) image of ``calib``.

    The images may be smaller than ``example``; the graph then takes any height and width.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    shapes = None
    if any(x.shape[-2:] != example.shape[-2:] for x in calib):
        shapes = ({2: Dim("height", min=8, max=MAX_SIDE), 3: Dim("width", min=8, max=MAX_SIDE)},)
    graph = torch.export.export(wrapper, (example,), dynamic_shapes=shapes).module()
    prepared = pin_output_range(prepare_pt2e(graph, xnnpack_quantizer()))  # the output on the image's grid
    with torch.no_grad():
        for x in calib:
            prepared(x[None])
    return convert_pt2e(prepared)
