"""Every target at fp32 and int8 (Core ML: fp16 and int8) for FSRCNN and ELSR, run in the real runtimes.

The exports are made once per model (module-scoped fixture), at 64x64 to stay fast, with sockets
blocked: the offline guarantee is checked on every converter, not just on one.
The models are the shipped weights when present; otherwise a deterministic image-like init
(conftest's ``image_like_model``), so outputs are images rather than clamped noise and parity means
something. The int8 loss bound needs trained weights.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from mobile_sr.core.files import sidecar_path
from mobile_sr.data.calib import fit, load_calib
from mobile_sr.data.datasets import load_benchmark
from mobile_sr.export import FORMATS, Result, export
from mobile_sr.export.sidecar import validate
from mobile_sr.export.verify import INT8_MAX_LOSS_DB, PARITY_MIN_DB, float_psnr
from mobile_sr.models import Model, weights_path
from mobile_sr.models.deploy import ExportWrapper

pytestmark = [pytest.mark.slow, pytest.mark.extras("tflite", "executorch", "coreml", "onnx")]

SIZE = (64, 64)
MODELS = ["fsrcnn", "elsr", "ofa-m"]
OFA_INT8_MAX_LOSS_DB = 0.15  # the OFA issue's bound for the shipped subnets
# int8 parity (dB vs PyTorch, 2 Set5 images, shipped x2 weights) measured here on 2026-12-01: FSRCNN 35.4-35.8,
# ELSR 50.3-52.8, ofa-m 49.8-52.9 (tflite, int8io, onnx, executorch). The bands are those figures -2.5/+3 dB: a drop
# means a conversion regression, a jump towards 60+ dB that an artifact is no longer really int8.
INT8_PARITY_DB = {"fsrcnn": (32.9, 38.8), "elsr": (47.8, 55.8), "ofa-m": (47.3, 55.9)}


class Offline:
    """Blocks every outgoing connection in this process and records who tried."""

    def __init__(self) -> None:
        self.attempts: list[object] = []

    def __enter__(self) -> Offline:
        self._mp = pytest.MonkeyPatch()

        def refuse(sock: socket.socket, address: object, *args: object) -> None:
            self.attempts.append(address)
            raise ConnectionRefusedError(f"test: network blocked ({address})")

        self._mp.setattr(socket.socket, "connect", refuse)
        self._mp.setattr(socket.socket, "connect_ex", refuse)
        return self

    def __exit__(self, *exc: object) -> None:
        self._mp.undo()


@pytest.fixture(scope="module", params=MODELS)
def exported(request, tmp_path_factory,
             image_like_model) -> tuple[str, torch.nn.Module, dict[tuple[str, str], Result], Offline]:
    """All artifacts of one model: {(format, precision): Result}."""
    name = request.param
    model = image_like_model(name)
    declared = Model.of(name, model)
    out = tmp_path_factory.mktemp(f"export_{name}")
    results: list[Result] = []
    with Offline() as offline:
        results += export(declared, list(FORMATS), size=SIZE, out_dir=out)  # Core ML: fp16
        results += export(declared, list(FORMATS), int8=True, size=SIZE, out_dir=out)
        results += export(declared, ["tflite"], fp16=True, size=SIZE, out_dir=out)
        results += export(declared, ["tflite"], int8_io=True, int8=True, size=SIZE, out_dir=out)
    return name, model, {(r.format, r.precision): r for r in results}, offline


EXPECTED = {("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("tflite", "int8io"),
            ("executorch", "fp32"), ("executorch", "int8"), ("coreml", "fp16"), ("coreml", "int8"),
            ("onnx", "fp32"), ("onnx", "int8")}


def test_every_target_and_precision_is_written_with_a_valid_sidecar(exported):
    name, _, results, _ = exported
    assert set(results) == EXPECTED
    for (fmt, precision), r in results.items():
        assert r.path.name == f"{name}_x2_64x64_{precision}{FORMATS[fmt].suffix}"
        assert r.path.exists() and sidecar_path(r.path).exists()
        doc = json.loads(sidecar_path(r.path).read_text())
        assert validate(doc) == [], r.path.name
        assert doc["artifact"]["precision"] == precision and doc["artifact"]["format"] == fmt
        assert doc["model"]["name"] == name and doc["model"]["scale"] == 2
        assert doc["verification"]["status"] == r.verification.status
    assert not [p for p in results[("onnx", "fp32")].path.parent.iterdir() if p.name.startswith(".")], \
        "temporary folders must be gone after a complete export"


def test_exports_never_touch_the_network(exported):
    *_, offline = exported
    assert offline.attempts == []
    with Offline() as probe, pytest.raises(ConnectionRefusedError):  # the block is real
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    assert probe.attempts


@pytest.mark.parametrize("key", sorted(k for k in EXPECTED if k[0] != "coreml"), ids="-".join)
def test_artifact_runs_in_its_runtime_like_pytorch(exported, key):
    """Independently of verify(): reload the final file in its runtime and compare with PyTorch."""
    name, model, results, _ = exported
    r = results[key]
    fmt, precision = key
    loaded = FORMATS[fmt].load(r.path, 1)
    x = torch.stack([fit(img.lr, *SIZE) for img in load_benchmark("Set5", 2)[:2]])  # held-out images
    with torch.no_grad():
        ref = ExportWrapper(model)(x).numpy()
    out = np.concatenate([loaded.run(xi[None].numpy()) for xi in x])
    assert out.shape == ref.shape
    psnr = float_psnr(out, ref)
    if precision in PARITY_MIN_DB:
        assert psnr >= PARITY_MIN_DB[precision]
        assert r.verification.status == "passed", r.verification.problems
    else:  # int8 is close to PyTorch, and not bit-exact (it really is quantized): a band around what it measures
        low, high = INT8_PARITY_DB[name]
        assert low < psnr < high, (key, psnr)
    assert r.verification.parity_psnr_db is not None and r.verification.set5_psnr_db is not None


@pytest.mark.parametrize("fmt", ["tflite", "onnx", "coreml"])
def test_int8_artifacts_store_int8_weights_and_compute_on_int8(exported, fmt):
    *_, results, _ = exported
    loaded = FORMATS[fmt].load(results[(fmt, "int8")].path, 1)
    assert loaded.weight_dtypes == ["int8"]
    assert loaded.int8_activations is True
    floats = FORMATS[fmt].load(results[(fmt, FORMATS[fmt].precisions[0])].path, 1)
    assert floats.weight_dtypes == (["float16"] if fmt == "coreml" else ["float32"])
    assert floats.int8_activations is False


def test_tflite_int8io_has_int8_tensors_at_pixel_scale(exported):
    *_, results, _ = exported
    loaded = FORMATS["tflite"].load(results[("tflite", "int8io")].path, 1)
    (inp,), (out,) = loaded.inputs, loaded.outputs
    assert (inp.dtype, out.dtype, inp.layout) == ("int8", "int8", "NHWC")
    # Calibration spans [0, 1] and the graph ends in clamp(0, 1): q + 128 is the 8-bit pixel value.
    assert inp.quant[0] == pytest.approx(1 / 255, rel=1e-3) and inp.quant[1] == -128
    assert out.quant[0] == pytest.approx(1 / 255, rel=1e-6) and out.quant[1] == -128  # fixed, not calibrated
    float_io = FORMATS["tflite"].load(results[("tflite", "int8")].path, 1)
    assert float_io.inputs[0].dtype == "float32" and float_io.inputs[0].quant is None


def test_int8_sidecars_record_the_calibration(exported):
    *_, results, _ = exported
    calib = load_calib()
    for (_, precision), r in results.items():
        doc = json.loads(sidecar_path(r.path).read_text())
        if precision in ("int8", "int8io"):
            assert doc["calibration"]["sha256"] == calib.sha256
            assert doc["calibration"]["images"] == calib.names
        else:
            assert doc["calibration"] is None


def test_delegation_is_reported(exported):
    *_, results, _ = exported
    for key in [("tflite", "fp32"), ("executorch", "fp32"), ("executorch", "int8")]:
        ops = results[key].ops
        assert ops is not None and ops.total > 0
        assert ops.delegated == ops.total and ops.outside == [], key  # XNNPACK takes the whole float graph
    ops = results[("tflite", "int8")].ops
    # LiteRT's XNNPACK delegate has no int8 PRELU: it says so, and we report it. The clamp at the output is the
    # output's int8 saturation (tflite._on_image_grid), so no MINIMUM/RELU of its own leaves the delegate.
    assert ops.outside == ["PRELU"] * sum(isinstance(m, torch.nn.PReLU) for m in exported[1].modules())
    assert ops.delegated + len(ops.outside) == ops.total


def test_coreml_spec_matches_what_apps_feed(exported):
    *_, results, _ = exported
    for precision, target in [("fp16", "iOS15"), ("int8", "iOS17")]:
        r = results[("coreml", precision)]
        loaded = FORMATS["coreml"].load(r.path, 1)
        assert loaded.problems == []
        assert [(t.name, t.shape, t.dtype) for t in loaded.inputs] == [("input", [1, 3, 64, 64], "float32")]
        assert [(t.name, t.shape, t.dtype) for t in loaded.outputs] == [("output", [1, 3, 128, 128], "float32")]
        assert target in loaded.runtime
        assert r.verification.status == "spec-only"  # predict() needs macOS


def test_int8_loses_at_most_the_allowed_set5_psnr(exported, request):
    name, _, results, _ = exported
    if not weights_path(name, 2).exists():
        pytest.skip(f"no shipped {name} x2 weights: the int8 loss bound is only meaningful for a trained model")
    if name == "fsrcnn":  # strict: the day FSRCNN passes in every runtime, this turns red and the mark must go
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
            "FSRCNN carries the image itself through identity-like filters in every layer: per-channel int8 weights "
            "drop their small taps; even equalized and bias-corrected, post-training int8 loses ~1.1-1.3 dB Set5, "
            "and after train --qat 0.44-0.56 dB (README, Known limits)")))
    bound = OFA_INT8_MAX_LOSS_DB if name.startswith("ofa") else INT8_MAX_LOSS_DB
    keys = sorted(k for k in results if k[1] in ("int8", "int8io") and k[0] != "coreml")
    assert [k[0] for k in keys] == ["executorch", "onnx", "tflite", "tflite"]  # every int8 runtime, none skipped
    losses = {k: results[k].verification.set5_fp32_psnr_db - results[k].verification.set5_psnr_db for k in keys}
    over = {k: round(v, 3) for k, v in losses.items() if v > bound}  # every runtime is measured before judging
    assert not over, f"int8 loses more than {bound} dB Set5 in {over}"
    assert all(results[k].verification.status == "passed" for k in keys), {k: results[k].verification.problems
                                                                             for k in keys}


def test_tflite_int8_ranges_are_percentiles_not_min_max(tmp_path):
    """A rare spike (one bright pixel in 16 calibration images) would set a min/max range, and the step of every
    other value with it; the TFLite route narrows each activation range to the 99.999th percentile of |values|
    (``tflite._quantize``), as ORT's calibration does. QAT weights keep min/max: their ranges were learned."""
    from ai_edge_litert.interpreter import Interpreter

    from mobile_sr.export import tflite

    torch.manual_seed(0)
    spike = torch.nn.Conv2d(3, 5, 1)  # 5 channels: the tensor to find in the int8 graph
    with torch.no_grad():
        spike.weight.zero_()
        spike.bias.zero_()
        spike.weight[0, 0], spike.bias[0] = 8.0, -4.0  # 8 x red - 4: below 0.08 on the flat images, 4 at the spike
    net = torch.nn.Sequential(spike, torch.nn.Conv2d(5, 3, 1)).eval()
    calib = 0.5 + 0.01 * torch.rand(16, 3, 128, 128)  # 1.3M values in the spike's output, one of them off the flat
    calib[0, :, 64, 64] = 1.0
    widths = {}
    for qat in (False, True):
        dest = tmp_path / f"qat{int(qat)}.tflite"
        tflite.export(ExportWrapper(net, qat=qat), calib[:1], "int8", calib, dest)
        interp = Interpreter(model_path=str(dest))
        (t,) = [t for t in interp.get_tensor_details() if list(t["shape"]) == [1, 128, 128, 5]]
        widths[qat] = 255 * t["quantization"][0]  # 255 int8 steps: the width of the tensor's range
    with torch.no_grad():
        values = spike(calib)
    assert widths[True] == pytest.approx((values.max() - values.min()).item(), rel=0.02)  # min/max: the spike
    assert widths[False] < 0.1 * widths[True]  # the percentile: the flat areas' values only


def test_float_exports_keep_set5_of_pytorch(exported):
    *_, results, _ = exported
    for key in [("tflite", "fp32"), ("executorch", "fp32"), ("onnx", "fp32"), ("tflite", "fp16")]:
        v = results[key].verification
        assert v.set5_psnr_db == pytest.approx(v.set5_fp32_psnr_db, abs=0.01), key


def test_pt2e_calibrates_the_crops_at_their_own_size_and_converts_at_the_export_size(tmp_path, image_like_model):
    """At 128x128 the shipped 96x96 crops are smaller than the export: PT2E observes them as they are (a graph with
    dynamic height and width) and must find the ranges the mirrored 128x128 batch gives, within the histogram
    observer's spread (measured 0-5% per tensor at 160x160), and the .pte is converted and verified at 128x128."""
    from mobile_sr.export.pt2e import quantize_pt2e

    model = image_like_model("elsr")
    wrapper, example, calib = ExportWrapper(model).eval(), torch.rand(1, 3, 128, 128), load_calib()

    def scales(graph: torch.fx.GraphModule) -> list[float]:
        return [float(n.args[1]) for n in graph.graph.nodes
                if n.op == "call_function" and n.target.__name__.startswith("quantize_per_tensor")]

    native = scales(quantize_pt2e(wrapper, example, calib.native(128, 128)))
    mirrored = scales(quantize_pt2e(wrapper, example, calib.batch(128, 128)))
    assert len(native) == len(mirrored) >= 5
    assert native == pytest.approx(mirrored, rel=0.1)
    (result,) = export(Model.of("elsr", model), ["executorch"], int8=True, size=(128, 128), out_dir=tmp_path)
    assert result.verification.status == "passed", result.verification.problems


def test_onnx_runtime_calibrates_each_image_at_its_own_size_by_percentile(tmp_path, image_like_model):
    """The int8 ONNX file's ranges come from ORT's percentile calibration of a dynamic-size copy of the graph on the
    crops as they are (its cache is keyed by tensor name, so every activation must still be quantized), the input
    sits on the 8-bit image's grid, a QAT model keeps min/max ranges, and no calibration file is left behind."""
    import onnx
    from onnx import numpy_helper

    from mobile_sr.export import onnx as ort_export

    model = image_like_model("elsr")
    calib = load_calib().native(64, 64)

    def scales(qat: bool, out: Path) -> dict[str, float]:
        dest = out / "m.onnx"
        out.mkdir()
        ort_export.export(ExportWrapper(model, qat=qat).eval(), torch.rand(1, 3, 64, 64), "int8", calib, dest)
        assert sorted(p.name for p in out.iterdir()) == ["m.onnx"]
        graph = onnx.load(str(dest)).graph
        inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        return {n.input[0]: float(inits[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear"}

    trimmed, minmax = scales(False, tmp_path / "ptq"), scales(True, tmp_path / "qat")
    assert trimmed.keys() == minmax.keys() and len(trimmed) >= 6  # the same tensors quantized both ways
    assert trimmed["input"] == minmax["input"] == pytest.approx(1 / 255, rel=1e-6)
    inner = [k for k in trimmed if k != "input" and trimmed[k] != pytest.approx(1 / 255, rel=1e-6)]
    assert inner and all(trimmed[k] <= minmax[k] * (1 + 1e-6) for k in inner)  # a percentile range is within min/max
    assert any(trimmed[k] < minmax[k] * 0.999 for k in inner)
