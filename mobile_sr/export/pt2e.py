"""PT2E int8 quantization shared by ExecuTorch and Core ML: one recipe, one calibration.

XNNPACK's quantizer (``models/quant.py``, the grid ``train --qat`` trains on): per-channel symmetric int8 weights,
per-tensor affine int8 activations (histogram observer), the scheme XNNPACK and the Apple Neural Engine both run
natively. coremltools'
own PT2E quantizer imports ``torch.ao.quantization.quantizer``, which torch 2.13 no longer has, so
Core ML int8 reuses this one (and needs the executorch extra: ``Format.int8_extra``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.quant import xnnpack_quantizer


def quantize_pt2e(wrapper: nn.Module, example: torch.Tensor, calib: torch.Tensor) -> torch.fx.GraphModule:
    """The converted (quantize/dequantize-annotated) graph, calibrated on every image of ``calib``."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(torch.export.export(wrapper, (example,)).module(), xnnpack_quantizer())
    with torch.no_grad():
        for x in calib:
            prepared(x[None])
    return convert_pt2e(prepared)
