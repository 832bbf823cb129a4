"""Quantization-aware training (``train --qat``, ``models/quant.py``): the grid it trains on is the exports' grid,
the weights it writes sit on that grid, and the int8 exports convert them as they are."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from mobile_sr.cli import main
from mobile_sr.core.files import sidecar_path
from mobile_sr.models import create_model, load_model
from mobile_sr.models.deploy import deploy_module
from mobile_sr.models.quant import WEIGHT_QMAX, fake_quant_weight, prepare_qat, snap_weights
from mobile_sr.train.ship import train_command

from .conftest import REPO

# QAT uses XNNPACK's quantizer, which ships with the executorch extra; the export test converts with ONNX Runtime.
pytestmark = pytest.mark.extras("executorch", "onnx")

DATA = str(REPO / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x2" / "HR")


def _train(out: Path, model: str, steps: int, *extra: str) -> list[str]:
    return ["train", "--model", model, "--scale", "2", "--data", DATA, "--out", str(out), "--steps", str(steps),
            "--batch", "4", "--patch", "48", "--val-every", "0", "--ckpt-every", "10", "--threads", "1",
            "--warmup", "2", "--lr", "5e-5", "--no-progress", *extra]


def _weights_on_grid(state: dict[str, torch.Tensor]) -> list[str]:
    """The convolution weights (4-D) of ``state`` that are not on the int8 grid (axis 0: every model here ends in
    a Conv2d once deployed)."""
    return [k for k, w in state.items() if w.dim() == 4 and not torch.equal(fake_quant_weight(w, 0), w)]


@pytest.mark.parametrize("name", ["fsrcnn", "ofa-l"])
def test_the_graph_rounds_weights_exactly_as_snapping_does(name):
    """With the activation fake-quantizers off, the QAT graph is the model with snapped weights, clamped as the
    export wrapper clamps: so the weight grid QAT trains on is the one the written file holds."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    model = deploy_module(create_model(name, 2)).eval()
    graph = prepare_qat(model)
    weight_quants = [m for m in graph.modules() if type(m).__name__ == "WeightFakeQuant"]
    act_quants = [m for m in graph.modules() if isinstance(m, FakeQuantizeBase) and m not in weight_quants]
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    conv_calls = [n for n in graph.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)]
    # every convolution's weight (ofa-l's fixed 0/1 anchor too, which is on any grid); activations as well
    assert len(weight_quants) == len(conv_calls) >= n_convs and act_quants
    for fq in act_quants:
        fq.disable_fake_quant()
    graph.eval()
    x = torch.rand(2, 3, 21, 17)  # any batch and size: the graph's shapes are dynamic
    snapped = snap_weights(copy.deepcopy(model))
    with torch.no_grad():
        torch.testing.assert_close(graph(x), snapped(x).clamp(0, 1), atol=1e-6, rtol=0)
        assert graph(x).shape == (2, 3, 42, 34)
    again = snap_weights(copy.deepcopy(snapped))  # max|w| is on the grid: rounding again changes nothing
    assert all(torch.equal(a, b) for a, b in zip(snapped.state_dict().values(), again.state_dict().values(), strict=True))
    assert not _weights_on_grid(snapped.state_dict()) and _weights_on_grid(model.state_dict())
    # The graph trains the model's own parameters (shared, not copied), through a straight-through rounding.
    graph.train()
    graph(x).mean().backward()
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def _onnx_scale_before_shuffle(path: Path) -> tuple[float, int]:
    """(scale, zero point) of the QuantizeLinear whose tensor the output's DepthToSpace reads (through its DQ)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    (shuffle,) = [n for n in graph.node if n.op_type == "DepthToSpace"]
    dq = producer[shuffle.input[0]]
    assert dq.op_type == "DequantizeLinear"
    return float(inits[dq.input[1]]), int(inits[dq.input[2]])


def test_the_output_is_quantized_on_the_images_own_grid():
    """The last quantized tensor (before the pixel shuffle and the clamp to [0, 1]) has the 8-bit image's step, 1/255
    from 0, in the QAT graph and in the PT2E conversion, whatever range calibration saw: with every other rounding
    off, the graph's output is the float output clamped and rounded to 8 bits (float32 ties at half a level aside)."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    from mobile_sr.data.imresize import quantize
    from mobile_sr.export.pt2e import quantize_pt2e
    from mobile_sr.models.deploy import ExportWrapper

    model = deploy_module(create_model("elsr", 2)).eval()
    with torch.no_grad():
        model.up.bias.add_(0.3)  # an output that leaves [0, 1]: the range calibration would see is wider
    graph = prepare_qat(model)
    x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    graph.train()
    with torch.no_grad():
        graph(x)  # the observers see the wide range
        assert snap_weights(copy.deepcopy(model))(x).max() > 1.1
    fixed = [m for m in graph.modules() if type(m).__name__ == "FixedQParamsFakeQuantize"]
    assert len(fixed) == 1 and float(fixed[0].scale) == pytest.approx(1 / 255) and int(fixed[0].zero_point) == -128
    for m in graph.modules():
        if isinstance(m, FakeQuantizeBase) and type(m).__name__ != "WeightFakeQuant" and m not in fixed:
            m.disable_fake_quant()
    graph.eval()
    with torch.no_grad():
        want = torch.stack([quantize(y) for y in snap_weights(copy.deepcopy(model))(x).clamp(0, 1)]).float()
        diff = (graph(x) - want).abs()
    # The same levels, but for values a hair from a half level: the fake-quantizer divides by float32(1/255), the
    # 8-bit rounding multiplies by 255, and the two may round such a value to neighbouring levels.
    assert diff.max() <= 1 / 255 + 1e-6 and (diff > 1e-6).float().mean() < 1e-3, (diff.max(), (diff > 1e-6).sum())
    converted = quantize_pt2e(ExportWrapper(model).eval(), x[:1], [x[0], x[1]])
    shuffle = next(n for n in converted.graph.nodes if "pixel_shuffle" in str(n.target))
    dq = shuffle.args[0]
    assert "dequantize" in str(dq.target) and dq.args[1:3] == (pytest.approx(1 / 255), -128)


@pytest.fixture(scope="module")
def elsr_qat_run(tmp_path_factory) -> Path:
    """A short QAT fine-tune of the shipped ELSR x2 (6 steps): the mechanics, not the quality."""
    out = tmp_path_factory.mktemp("qat") / "run"
    r = CliRunner().invoke(main, _train(out, "elsr", 6, "--qat", "--init-from", "elsr"))
    assert r.exit_code == 0, r.output
    return out


def _onnx_int8(model: str, out: Path) -> tuple[Path, dict]:
    r = CliRunner().invoke(main, ["export", "--model", model, "--target", "onnx", "--int8", "--input-size", "64x64",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    (onnx_file,) = out.glob("*.onnx")
    return onnx_file, json.loads(sidecar_path(onnx_file).read_text())


def test_qat_run_writes_grid_weights_and_int8_export_converts_them_as_they_are(tmp_path, elsr_qat_run):
    """The run records QAT, its weights are on the int8 grid, and the ONNX int8 file holds exactly those weights (no
    range equalization or bias correction applied on top), and still verifies."""
    import onnx
    from onnx import numpy_helper

    out = elsr_qat_run
    meta = json.loads((out / "model.json").read_text())
    assert meta["qat"] is True
    weights = load_file(out / "model.safetensors")
    assert not _weights_on_grid(weights)
    start = deploy_module(create_model("elsr", 2)).state_dict()
    assert any(not torch.equal(weights[k], start[k]) for k in weights)  # it trained
    assert "qat" in torch.load(out / "last.pt", weights_only=True)  # the observed ranges, for --resume
    model = load_model(out / "model.safetensors")
    assert model.qat and model.name == "elsr"
    command = train_command(json.loads((out / "config.json").read_text())).split()  # what a manifest records
    assert "--qat" in command and command[command.index("--init-from") + 1] == "elsr"

    onnx_file, sidecar = _onnx_int8(str(out / "model.safetensors"), tmp_path / "exp")
    assert sidecar["calibration"]["preparation"] == "qat"
    assert sidecar["verification"]["status"] == "passed"
    assert _onnx_scale_before_shuffle(onnx_file) == (pytest.approx(1 / 255), -128)  # pinned, as PT2E pins it
    graph = onnx.load(onnx_file)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    dequantized, codes = [], []
    for node in graph.graph.node:
        if node.op_type == "DequantizeLinear" and inits.get(node.input[0], np.zeros(0)).dtype == np.int8:
            q, scale = inits[node.input[0]], inits[node.input[1]]
            if q.ndim == 4:
                codes.append(np.abs(q).max(axis=(1, 2, 3)))
                dequantized.append(torch.from_numpy(q.astype(np.float32) * scale.reshape(-1, 1, 1, 1)))
    convs = [w for w in weights.values() if w.dim() == 4]
    assert len(dequantized) >= len(convs)  # and the fixed 0/1 anchor of the global skip
    for w in convs:  # each trained weight is in the file, as it is
        assert any(d.shape == w.shape and torch.allclose(d, w, atol=1e-7, rtol=1e-6) for d in dequantized)
    assert all((c == WEIGHT_QMAX).all() for c in codes)  # max|w| / 127 per channel: the grid QAT trained on


@pytest.mark.parametrize("model,extra,message", [
    ("fsrcnn", ("--qat",), "error: --qat fine-tunes trained weights: pass --init-from"),
    ("fsrcnn", ("--qat", "--init-from", "fsrcnn", "--ema", "0.9"), "error: --qat and --ema exclude each other"),
    ("rescale-aidn", ("--qat", "--init-from", "rescale-aidn"), "error: --qat: not an option of rescale-aidn"),
    ("ofa-sr", ("--qat",), "error: --qat: not an option of the ofa-sr trainer"),
])
def test_qat_refusals_leave_nothing_behind(tmp_path, model, extra, message):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--model", model, "--data", DATA, "--out", str(out), *extra])
    assert r.exit_code == 2 and r.output.startswith(message) and r.output.count("\n") == 1, r.output
    assert not out.exists()


def test_validation_never_changes_what_qat_trains(tmp_path):
    """Scoring the int8 simulation on Set5 must not move its activation ranges: a run validated every 3 steps writes
    the same weights, bit for bit, as one never validated (the observers are frozen while it is scored)."""
    for name, every in (("quiet", "0"), ("validated", "3")):
        args = [*_train(tmp_path / name, "fsrcnn", 6, "--qat", "--init-from", "fsrcnn")]
        args[args.index("--val-every") + 1] = every
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("quiet", "validated"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    qa, qb = (torch.load(tmp_path / n / "last.pt", weights_only=True)["qat"] for n in ("quiet", "validated"))
    assert all(torch.equal(qa[k], qb[k]) for k in qa)


def test_shipped_qat_weights_are_declared_and_exported_without_dfq(tmp_path, monkeypatch, elsr_qat_run,
                                                                   shared_benchmark):
    """``train.ship`` of a QAT run records the command with --qat and ``"qat": true`` in the manifest, and the
    built-in model it becomes is declared QAT, so its int8 export skips range equalization and bias correction."""
    import mobile_sr.models as models
    import mobile_sr.train.ship as ship_module

    weights_dir = tmp_path / "weights"
    monkeypatch.setattr(models, "WEIGHTS_DIR", weights_dir)
    monkeypatch.setattr(ship_module, "WEIGHTS_DIR", weights_dir)
    dest = ship_module.ship(elsr_qat_run, shared_benchmark)
    assert dest == weights_dir / "elsr_x2.safetensors"
    man = json.loads(dest.with_suffix(".json").read_text())
    assert man["qat"] is True and "--qat" in man["command"].split()
    assert set(man["eval"]) == {"Set5", "Set14"}
    assert load_model("elsr", 2).qat
    _, sidecar = _onnx_int8("elsr", tmp_path / "exp")
    assert sidecar["calibration"]["preparation"] == "qat"
    monkeypatch.undo()  # the package's own ELSR again: prepared by DFQ
    assert not load_model("elsr", 2).qat
    _, sidecar = _onnx_int8("elsr", tmp_path / "exp-shipped")
    assert sidecar["calibration"]["preparation"] == "equalization+bias-correction"


def test_a_pairs_qat_quantizes_its_upscaler_and_trains_its_downscaler_in_float(tmp_path):
    """``--qat`` on a pair: the phone's upscaler is fine-tuned through the int8 grid and written on it, while the
    server's downscaler (float on the server) trains on behind it and is written as trained; the run loads as a QAT
    pair, whose upscaler exports as it is (no DFQ) and verifies on the pair's own LR."""
    out = tmp_path / "run"
    r = CliRunner().invoke(main, _train(out, "rescale", 4, "--qat", "--init-from", "rescale", "--jpeg", "70-95@0.5"))
    assert r.exit_code == 0, r.output
    weights = load_file(out / "model.safetensors")
    up = {k: w for k, w in weights.items() if k.startswith("upscaler.")}
    down = {k: w for k, w in weights.items() if k.startswith("downscaler.")}
    assert up and not _weights_on_grid(up) and _weights_on_grid(down)
    start = load_model("rescale", 2).module.state_dict()
    assert any(not torch.equal(down[k], start[k]) for k in down)  # the downscaler trained
    model = load_model(out / "model.safetensors")
    assert model.qat and model.role == "pair"
    _, sidecar = _onnx_int8(str(out / "model.safetensors"), tmp_path / "exp")
    assert sidecar["calibration"]["preparation"] == "qat"
    assert sidecar["verification"]["status"] == "passed" and "downscaler" in sidecar["verification"]["lr_source"]
