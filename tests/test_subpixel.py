"""``deploy`` rewrites stride-s transposed convolutions as convolution + PixelShuffle (models/subpixel.py): exactly,
without touching the trained module, and so that no ConvTranspose reaches an exported graph."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mobile_sr.models import create_model
from mobile_sr.models.deploy import deploy_module, profile
from mobile_sr.models.fsrcnn import FSRCNN
from mobile_sr.models.quant import _chains, equalize
from mobile_sr.models.subpixel import SubPixelConv, to_subpixel

# (in, out, kernel, stride, padding, output_padding): FSRCNN's 9x9 at x2/x3/x4, kernels that are and are not a
# multiple of the stride, a kernel smaller than the stride, no padding, large padding, rectangular settings.
CASES = [
    (56, 3, 9, 2, 4, 1), (56, 3, 9, 3, 4, 2), (56, 3, 9, 4, 4, 3),
    (4, 5, 4, 2, 1, 0), (3, 2, 3, 2, 0, 0), (2, 3, 2, 3, 0, 2), (3, 3, 6, 3, 3, 1),
    (5, 4, (5, 3), 2, (2, 1), (1, 0)), (3, 6, (7, 4), 3, (0, 3), (2, 1)),
]


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,output_padding", CASES)
@pytest.mark.parametrize("size", [(7, 7), (8, 5), (1, 3)])
def test_subpixel_equals_the_transposed_convolution(cin, cout, kernel, stride, padding, output_padding, size):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=padding,
                                output_padding=output_padding).double()
    x = torch.randn(2, cin, *size, dtype=torch.float64)
    with torch.no_grad():
        ref = deconv(x)
        got = SubPixelConv.from_transposed(deconv)(x)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() < 1e-10


def test_fsrcnn_kernels_need_no_crop_at_x2_and_x4_and_one_at_x3():
    """FSRCNN's output is exactly s*H x s*W: at x2 and x4 the zero-padded sub-kernel (5x5, 3x3) lines up with a
    symmetric padding, at x3 the 4x4 sub-kernel needs one LR row more and a crop."""
    got = {s: SubPixelConv.from_transposed(FSRCNN(s).deconv) for s in (2, 3, 4)}
    assert {s: (m.conv.kernel_size, m.conv.padding, m.conv.out_channels, m.crop) for s, m in got.items()} == {
        2: ((5, 5), (2, 2), 12, (0, 0, 0, 0)), 3: ((4, 4), (2, 2), 27, (3, 0, 3, 0)),
        4: ((3, 3), (1, 1), 48, (0, 0, 0, 0))}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_deployed_fsrcnn_matches_the_shipped_model_and_leaves_it_untouched(scale):
    model = create_model("fsrcnn", scale).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = deploy_module(model)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in deployed.modules())
    assert isinstance(model.deconv, nn.ConvTranspose2d) and model.training  # the trained module keeps its form
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert deploy_module(deployed) is deployed  # deploying a deployed module changes nothing
    torch.manual_seed(0)
    x = torch.rand(1, 3, 23, 17)
    with torch.no_grad():
        assert (deployed(x) - model.eval()(x)).abs().max() < 1e-5


def test_plain_modules_without_a_strided_transposed_conv_are_not_copied():
    net = nn.Sequential(nn.Conv2d(3, 3, 3), nn.ConvTranspose2d(3, 3, 3))  # stride 1: nothing to gain
    assert to_subpixel(net) is net


def test_profile_counts_the_exported_subpixel_convolution():
    """Per LR pixel, as in test_models' hand count, with the 9x9 deconvolution's scatter (81x56x3) replaced by
    the 5x5 56 -> 12 convolution that is exported (x2), zero taps included; its parameters likewise."""
    per_lr = 25 * 3 * 56 + 56 * 12 + 4 * 9 * 144 + 12 * 56 + 25 * 56 * 12
    got = profile(deploy_module(create_model("fsrcnn", 2, pretrained=False)), 2)
    assert got.macs_per_output_pixel == pytest.approx(per_lr / 4)
    prelu = 56 + 12 + 4 * 12 + 56
    weights = 25 * 3 * 56 + 56 + 56 * 12 + 12 + 4 * (9 * 144 + 12) + 12 * 56 + 56 + 25 * 56 * 12 + 12
    assert got.params == weights + prelu


def test_int8_equalization_still_reaches_the_subpixel_convolution():
    """dfq equalizes every conv -> PReLU -> conv chain: the last one now ends in the sub-pixel conv."""
    deployed = deploy_module(create_model("fsrcnn", 2))
    chains = _chains(deployed)
    assert len(chains) == 7 and chains[-1][1] is deployed.deconv.conv
    torch.manual_seed(0)
    calib, x = torch.rand(2, 3, 24, 24), torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert (equalize(deployed, calib)(x) - deployed(x)).abs().max() < 1e-5


@pytest.mark.extras("onnx")
def test_onnx_export_of_deployed_fsrcnn_has_no_conv_transpose(tmp_path):
    import onnx

    from mobile_sr.export.onnx import to_onnx
    from mobile_sr.models.deploy import ExportWrapper

    to_onnx(ExportWrapper(deploy_module(create_model("fsrcnn", 2))), torch.rand(1, 3, 32, 32), tmp_path / "f.onnx")
    ops = [n.op_type for n in onnx.load(str(tmp_path / "f.onnx")).graph.node]
    assert "ConvTranspose" not in ops and ops.count("Conv") == 8 and "DepthToSpace" in ops
