"""Preparing a float model for int8, the two data-free-quantization steps of Nagel et al. (ICCV 2019,
"Data-Free Quantization Through Weight Equalization and Bias Correction"), with statistics measured
on the calibration images. Both act on a copy; float exports never see them.

Range equalization (section 4.1). int8 activations share one scale per tensor. In FSRCNN a few
channels carry the image itself (range about [0, 1]) beside feature channels that reach +-5, so the
image is quantized in steps of ~10/255 at every layer. PReLU is positively homogeneous,
prelu(x / s) = prelu(x) / s per channel, so for conv A -> PReLU -> conv B we can divide A's output
channel c by s_c and multiply B's input channel c by s_c without changing the function. Choosing
s_c = range_c / max range gives every channel the full int8 range. Per-channel weight quantization
makes the change free for A's weights; B's weights absorb it.

Bias correction (section 4.2). Rounding weights to int8 shifts each output channel's mean by
(W - Q(W)) . E[x]; adding that back to the bias removes the systematic part of the error. Q is the
grid every converter here uses for weights (per output channel, symmetric, max|w| / 127), so the
correction matches what the file will hold. FSRCNN's image-carrying filters (one tap ~1, the rest
~0.003) lose most of their small taps to rounding; much of that loss shows up as such a shift.

Measured on FSRCNN x2 (shipped weights, TFLite int8 at 64x64, Set5): 33.42 dB plain, 34.61 dB
equalized, 35.68 dB equalized and bias-corrected, against 36.81 dB in float.

The equalization itself lives in ``models/quant.py``, since ``train --qat`` starts from it too; a model trained
that way skips this module altogether (its weights are already on the grid).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.quant import equalize, fake_quant_weight, run_hooked


def prepare(model: nn.Module, calib: torch.Tensor) -> nn.Module:
    """A copy of ``model`` equalized and bias-corrected on ``calib`` (N, 3, H, W): what int8 exports convert.

    Ranges (maxima) are taken at the export size, as the quantizers will see them; channel means do
    not depend on the image size, so bias correction looks at no more than 96x96 of each image.
    """
    model = equalize(model, calib)
    h, w = calib.shape[-2:]
    top, left = (h - min(h, 96)) // 2, (w - min(w, 96)) // 2
    correct_bias(model, calib[..., top : top + min(h, 96), left : left + min(w, 96)])
    return model


def correct_bias(model: nn.Module, calib: torch.Tensor) -> None:
    """Add (W - Q(W)) . E[input] to the bias of every ungrouped convolution with a bias, in place.

    A transposed convolution with stride s feeds each output pixel from one of s*s phases of its
    kernel; one bias per channel can only correct their average, hence the division.
    """
    convs = [m for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None and m.groups == 1]
    means: dict[nn.Module, torch.Tensor] = {}

    def record(mod: nn.Module, inp: tuple) -> None:
        means[mod] = means.get(mod, 0) + inp[0].detach().mean(dim=(0, 2, 3)) / len(calib)

    run_hooked(model, calib, [m.register_forward_pre_hook(record) for m in convs])
    with torch.no_grad():
        for m in convs:
            if isinstance(m, nn.ConvTranspose2d):  # weight (in, out, kh, kw)
                dw = m.weight - fake_quant_weight(m.weight, 1)
                m.bias.add_(torch.einsum("iokl,i->o", dw, means[m]) / (m.stride[0] * m.stride[1]))
            else:  # weight (out, in, kh, kw)
                dw = m.weight - fake_quant_weight(m.weight, 0)
                m.bias.add_(torch.einsum("oikl,i->o", dw, means[m]))
