"""Quantization-aware fine-tuning (``mobile_sr/qat.py``, ``train --qat``): the sub-pixel projection is exact, a QAT
run writes a plain checkpoint marked ``qat`` that int8 exports calibrate as it is, resume replays the run, and the
options that do not apply are refused with one line."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from torch import nn

from mobile_sr.cli import main
from mobile_sr.models import load_model
from mobile_sr.models.deploy import deploy
from mobile_sr.models.subpixel import SubPixelConv


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_projected_subpixel_weights_are_a_transposed_convolution(scale: int) -> None:
    torch.manual_seed(scale)
    deconv = nn.ConvTranspose2d(6, 3, 9, stride=scale, padding=4, output_padding=scale - 1)
    sub = SubPixelConv.from_transposed(deconv)
    x = torch.rand(1, 6, 7, 9)
    back = copy.deepcopy(deconv)
    nn.init.zeros_(back.weight)
    nn.init.zeros_(back.bias)
    sub.to_transposed(back)
    assert torch.equal(back.weight, deconv.weight) and torch.allclose(back.bias, deconv.bias)
    with torch.no_grad():  # what a training step does to the sub-pixel form: every tap and bias moves
        sub.conv.weight.add_(0.01 * torch.randn_like(sub.conv.weight))
        sub.conv.bias.add_(0.01 * torch.randn_like(sub.conv.bias))
    assert not torch.allclose(sub(x), _rebuilt(sub, deconv)(x), atol=1e-4)  # not a transposed conv any more
    sub.project_(sub.conv.weight, sub.conv.bias)
    assert torch.allclose(sub(x), _rebuilt(sub, deconv)(x), atol=1e-5)
    mask = sub.transposed_mask()
    assert mask.sum() == 3 * 9 * 9  # each of the 81 taps of each output channel sits in exactly one place


def _rebuilt(sub: SubPixelConv, template: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    out = copy.deepcopy(template)
    sub.to_transposed(out)
    return out


def _qat_cfg(tmp: Path, train: Path, steps: int, **kw):  # noqa: ANN202
    from mobile_sr.qat import QatConfig

    return QatConfig(model="fsrcnn", scale=2, data=[str(train)], out=str(tmp), steps=steps, batch=2, patch=96,
                     warmup=1, val_every=kw.pop("val_every", 0), ckpt_every=kw.pop("ckpt_every", 100), **kw)


@pytest.mark.extras("executorch")
def test_qat_run_writes_a_plain_fsrcnn_marked_qat(tmp_path: Path, shared_train: Path) -> None:
    from mobile_sr.qat import build, float_module, train_qat

    torch.set_num_threads(1)

    summary = train_qat(_qat_cfg(tmp_path / "run", shared_train / "T91", 4, val_every=4), progress=False)
    assert summary["step"] == 4 and 30 < summary["int8_sim_psnr"] < 40 and 30 < summary["float_psnr"] < 40
    model = load_model(tmp_path / "run")
    assert model.name == "fsrcnn" and model.qat and isinstance(model.module.deconv, nn.ConvTranspose2d)
    shipped = load_model("fsrcnn", 2)
    assert not shipped.qat
    assert any(not torch.equal(v, shipped.module.state_dict()[k]) for k, v in model.module.state_dict().items())
    # The checkpoint is the exact preimage of the trained graph's sub-pixel layer.
    net = build(_qat_cfg(tmp_path / "unused", shared_train / "T91", 4))
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    net.graph.load_state_dict(state)
    assert torch.equal(deploy(model).upscaler.deconv.conv.weight, state["model.deconv.conv.weight"])
    assert torch.equal(float_module(net).deconv.weight, model.module.deconv.weight)
    assert load_file(tmp_path / "run" / "model.safetensors").keys() == shipped.module.state_dict().keys()


@pytest.mark.extras("executorch")
@pytest.mark.slow
def test_qat_resume_replays_the_uninterrupted_run(tmp_path: Path, shared_train: Path) -> None:
    from mobile_sr.qat import train_qat

    torch.set_num_threads(1)
    train_qat(_qat_cfg(tmp_path / "whole", shared_train / "T91", 4, ckpt_every=2), progress=False)
    train_qat(_qat_cfg(tmp_path / "split", shared_train / "T91", 2, ckpt_every=2), progress=False)
    train_qat(_qat_cfg(tmp_path / "split", shared_train / "T91", 4, ckpt_every=2), resume=True, progress=False)
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "split" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.extras("onnx")
def test_int8_export_of_a_qat_model_skips_equalization_and_bias_correction(tmp_path: Path, monkeypatch) -> None:
    import mobile_sr.export as export

    def refuse(*_: object) -> None:
        raise AssertionError("a QAT model must not be prepared again")

    monkeypatch.setattr(export, "prepare", refuse)
    model = load_model("elsr", 2)
    model.qat = True
    (res,) = export.export(model, ["onnx"], int8=True, size=(32, 32), out_dir=tmp_path, check=False)
    assert res.path.exists()
    model.qat = False
    with pytest.raises(AssertionError, match="prepared again"):
        export.export(model, ["onnx"], int8=True, size=(32, 32), out_dir=tmp_path / "b", check=False)


def test_train_qat_refuses_what_does_not_apply(tmp_path: Path) -> None:
    cases = [
        (["--model", "fsrcnn", "--loss", "charbonnier"], "--loss: not an option of --qat"),
        (["--model", "fsrcnn", "--arch", "d=32"], "--arch: not an option of --qat"),
        (["--model", "rescale"], "is a pair"),
        (["--model", "ofa-sr"], "is the supernet"),
        (["--model", "fsrcnn", "--init-from", "elsr"], "it is elsr, not --model fsrcnn"),
    ]
    for args, why in cases:
        res = CliRunner().invoke(main, ["train", "--qat", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *args])
        assert res.exit_code == 2 and why in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)
        assert not (tmp_path / "o" / "model.safetensors").exists()
