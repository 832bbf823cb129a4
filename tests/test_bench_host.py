"""Host benchmarks for real: small models exported by the export stage, run in LiteRT, ExecuTorch, ONNX Runtime
and PyTorch eager; reports, files and the layer latency table checked for consistency, not for speed."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mobile_sr.bench.artifact import open_artifact
from mobile_sr.bench.latency_table import LayerConfig, load_table, lookup, measure_layers, save_table
from mobile_sr.bench.matmul import matmul_gmacs
from mobile_sr.bench.report import validate
from mobile_sr.cli import main
from mobile_sr.core.files import sidecar_path
from mobile_sr.core.weights import write_weights
from mobile_sr.export import export
from mobile_sr.models import Model, create_model
from mobile_sr.models.deploy import deploy_module, profile
from mobile_sr.models.fsrcnn import init_bicubic

pytestmark = [pytest.mark.slow, pytest.mark.extras("onnx", "executorch", "tflite")]  # real exports in every runtime

SIZE = 48  # LR side of the exports: tiles of 32 px for the Set5 check, quick to run


@pytest.fixture(scope="module")
def exported(tmp_path_factory, seal) -> dict[str, Path]:
    """fsrcnn-s x2 started as bicubic (so its PSNR is meaningful without training), exported to every host
    format, plus its checkpoint and a Core ML sidecar with a stand-in package (Core ML cannot run here)."""
    out = tmp_path_factory.mktemp("exports")
    torch.manual_seed(0)
    model = init_bicubic(create_model("fsrcnn-s", 2, pretrained=False))
    declared = Model.of("fsrcnn-s", model, "test")
    fp32 = export(declared, ["onnx", "executorch", "tflite"], size=(SIZE, SIZE), out_dir=out, check=False)
    int8 = export(declared, ["onnx"], int8=True, size=(SIZE, SIZE), out_dir=out, check=False)
    paths = {f"{r.format}-{r.precision}": r.path for r in fp32 + int8}
    ckpt = out / "fsrcnn-s_x2.safetensors"
    write_weights(model, {"model": "fsrcnn-s", "scale": 2, "config": model.config()}, ckpt)
    paths["pytorch"] = ckpt
    mlpackage = out / f"fsrcnn-s_x2_{SIZE}x{SIZE}_fp16.mlpackage"
    mlpackage.mkdir()
    (mlpackage / "Manifest.json").write_text("{}")  # a stand-in: Core ML cannot be exported or run off macOS
    side = json.loads((out / (paths["onnx-fp32"].name + ".json")).read_text())
    side["artifact"] |= {"format": "coreml", "precision": "fp16"}
    seal(mlpackage, side)
    paths["coreml"] = mlpackage
    return paths


def _bench(args: list[str]):
    return CliRunner().invoke(main, ["bench", "--no-progress", *args])


def test_host_bench_every_runtime(exported, tmp_path):
    order = ["onnx-fp32", "onnx-int8", "executorch-fp32", "tflite-fp32", "coreml", "pytorch"]
    res = _bench([*(str(exported[k]) for k in order), "--warmup", "2", "--runs", "6", "--input-size", str(SIZE),
                  "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv"), "--plot", str(tmp_path / "r.png")])
    assert res.exit_code == 0, res.output
    assert "Core ML runs only on macOS/iOS" in res.output  # said per artifact, and the others went on
    doc = json.loads((tmp_path / "r.json").read_text())
    assert validate(doc) == []
    results = {f"{r['format']}-{r['precision']}": r for r in doc["results"]}
    assert [r["artifact"] for r in doc["results"]] == [exported[k].name for k in order]
    assert results["coreml-fp16"]["status"] == "unsupported" and results["coreml-fp16"]["median_inference_latency(ms)"] is None
    ran = [r for r in doc["results"] if r["format"] != "coreml"]
    assert {r["runtime"].split()[0] for r in ran} == {"onnxruntime", "ExecuTorch", "LiteRT", "PyTorch"}
    matmul = doc["matmul_peak(gmac/s)"]
    assert matmul > 0
    eager = results["pytorch-fp32"]
    for r in ran:
        assert r["status"] == "ok" and r["runner"] == "host" and r["threads"] == 1
        assert len(r["latencies(ms)"]) == 6 and min(r["latencies(ms)"]) > 0
        assert r["min_inference_latency(ms)"] <= r["median_inference_latency(ms)"] <= r["p90_inference_latency(ms)"]
        assert r["first_inference_latency(ms)"] > 0 and r["model_load_time(ms)"] > 0 and r["median_cpu_time(ms)"] > 0
        assert r["input_size"] == [SIZE, SIZE] and r["output_size"] == [2 * SIZE, 2 * SIZE]
        median_s = r["median_inference_latency(ms)"] / 1e3
        assert r["throughput(mpix/s)"] == pytest.approx((2 * SIZE) ** 2 / 1e6 / median_s, rel=1e-2)
        assert r["achieved(gmac/s)"] == pytest.approx(r["gmac_per_inference"] / median_s, rel=1e-2)
        assert r["matmul_peak_ratio"] == pytest.approx(r["achieved(gmac/s)"] / matmul, rel=1e-2)
        assert r["gmac_per_inference"] == pytest.approx(eager["gmac_per_inference"])
        assert r["peak_memory(mb)"] is not None
        # Same weights, same tiling: float runtimes reproduce PyTorch's Set5 PSNR; int8 stays close.
        assert r["set5_psnr(db)"] == pytest.approx(eager["set5_psnr(db)"], abs=0.02 if r["precision"] == "fp32" else 0.6)
    (bicubic,) = doc["bicubic"]
    assert bicubic["scale"] == 2 and bicubic["median_inference_latency(ms)"] > 0
    assert 33 < bicubic["set5_psnr(db)"] < 34.5  # MATLAB bicubic on Set5 x2 is 33.66 dB
    assert eager["set5_psnr(db)"] == pytest.approx(bicubic["set5_psnr(db)"], abs=0.7)  # the net starts as bicubic
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [r["artifact"] for r in rows] == [exported[k].name for k in order]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bicubic" in res.output and "onnxruntime" in res.output


def test_checkpoint_macs_follow_the_input_size(exported):
    art = open_artifact(str(exported["pytorch"]), (20, 30))  # a checkpoint has no fixed size: it takes ours
    per_px = profile(deploy_module(create_model("fsrcnn-s", 2, pretrained=False)), 2).macs_per_output_pixel
    assert art.format == "pytorch" and art.output_size == (40, 60)
    assert art.macs == pytest.approx(per_px * 40 * 60)


def _sidecar(path: Path) -> dict:
    return json.loads(sidecar_path(path).read_text())


def test_broken_artifact_fails_alone_and_outputs_stay_whole(exported, tmp_path, seal):
    bad = tmp_path / "broken_x2.onnx"
    bad.write_bytes(b"this is not a protobuf")
    seal(bad, _sidecar(exported["onnx-fp32"]))
    res = _bench([str(bad), str(exported["onnx-fp32"]), "--runs", "2", "--warmup", "0", "--no-psnr",
                  "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 1
    assert "broken_x2.onnx: FAILED:" in res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["status"] for r in doc["results"]] == ["failed", "ok"]
    assert doc["results"][0]["error"] and "\n" not in doc["results"][0]["error"]


def test_a_runtime_that_aborts_on_a_file_fails_that_artifact_alone(exported, tmp_path, seal):
    """Random bytes as a .pte make ExecuTorch's loader abort the process (C++ terminate, SIGABRT); the file is
    opened in a child first, so the other artifacts still run and the JSON is written."""
    bad = tmp_path / "r.pte"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    seal(bad, _sidecar(exported["executorch-fp32"]))  # a sidecar that matches the bytes: only the runtime can tell
    res = _bench([str(bad), str(exported["tflite-fp32"]), "--runs", "2", "--warmup", "0", "--no-psnr",
                  "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 1, res.output
    (r_bad, r_good) = json.loads((tmp_path / "r.json").read_text())["results"]
    assert r_bad["status"] == "failed" and r_good["status"] == "ok"
    assert r_bad["error"].startswith("the executorch runtime ") and "\n" not in r_bad["error"], r_bad["error"]


def test_a_sidecar_of_other_bytes_is_refused_before_timing(exported, tmp_path):
    copy = tmp_path / "m.tflite"
    copy.write_bytes(exported["tflite-fp32"].read_bytes()[:-4] + b"\0\0\0\0")  # same size, other bytes
    shutil.copy(sidecar_path(exported["tflite-fp32"]), sidecar_path(copy))
    res = _bench([str(copy), str(exported["onnx-fp32"]), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "m.tflite: does not match the size and sha256 in its sidecar" in res.output
    assert not (tmp_path / "r.json").exists()


def test_a_sidecar_whose_shapes_disagree_with_the_file_fails_that_artifact(exported, tmp_path, seal):
    """The sidecar of a 32x32 export beside a 48x48 file: timing it would report throughput for the wrong size."""
    lying = tmp_path / "m.tflite"
    shutil.copy(exported["tflite-fp32"], lying)
    doc = _sidecar(exported["tflite-fp32"])
    doc["inputs"][0]["shape"] = [1, 32, 32, 3]
    doc["outputs"][0]["shape"] = [1, 64, 64, 3]
    seal(lying, doc)
    res = _bench([str(lying), "--runs", "2", "--warmup", "0", "--no-psnr", "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 1, res.output
    (r,) = json.loads((tmp_path / "r.json").read_text())["results"]
    assert r["status"] == "failed" and r["median_inference_latency(ms)"] is None
    assert r["error"] == f"its sidecar says input shape [1, 32, 32, 3], the file has [1, {SIZE}, {SIZE}, 3]"


@pytest.mark.parametrize(("args", "message"), [
    (["missing.tflite"], "missing.tflite: no such file"),
    (["{onnx}", "--plot", "{tmp}/p.jpg"], "must be a .png file"),
    (["{onnx}", "--json", "{tmp}/nowhere/r.json"], "/nowhere/r.json: its folder"),
    (["{onnx}", "--serial", "abc"], "apply to --device adb only"),
    (["{onnx}", "--input-size", "12x"], "is not HxW"),
    (["{nosidecar}"], "sidecar m.onnx.json is missing"),
    (["{onnx}", "--device", "adb", "--runner", "binary"], "--runner binary needs --binary"),
])
def test_usage_errors_are_one_line_exit_2(exported, tmp_path, args, message):
    lonely = tmp_path / "m.onnx"
    shutil.copy(exported["onnx-fp32"], lonely)
    filled = [a.format(onnx=exported["onnx-fp32"], tmp=tmp_path, nosidecar=lonely) for a in args]
    res = _bench(filled)
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.count("\n") == 1
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob("*.jpg"))


def test_latency_table_on_host(tmp_path):
    cfgs = [LayerConfig(8, 8, 3, 16, 16), LayerConfig(8, 16, 1, 16, 16, activation="relu"),
            LayerConfig(8, 8, 3, 16, 16, stride=2, groups=8, activation="prelu")]
    table = measure_layers(cfgs, runtime="onnx", warmup=1, runs=3)
    assert table["runtime"] == "onnx" and table["runtime_version"].startswith("onnxruntime")
    assert list(table["entries"]) == [c.key for c in cfgs]
    assert table["entries"][cfgs[0].key]["macs"] == 16 * 16 * 8 * 8 * 9
    assert table["entries"][cfgs[2].key]["macs"] == 8 * 8 * 8 * 1 * 9  # stride 2 halves each side, depthwise
    assert all(lookup(table, c) > 0 for c in cfgs)
    save_table(table, tmp_path / "t.json")
    assert load_table(tmp_path / "t.json") == table
    with pytest.raises(KeyError, match="not in this latency table"):
        lookup(table, LayerConfig(8, 8, 5, 16, 16))
    with pytest.raises(ValueError, match="divisible by groups"):
        LayerConfig(8, 6, 3, 16, 16, groups=4)


def test_latency_table_executorch_and_eager():
    cfg = LayerConfig(4, 4, 3, 16, 16)
    for runtime, name in (("executorch", "ExecuTorch"), ("pytorch", "PyTorch")):
        table = measure_layers([cfg], runtime=runtime, warmup=1, runs=2)
        assert table["runtime_version"].startswith(name) and lookup(table, cfg) > 0


def test_matmul_rate_is_positive_and_restores_threads():
    before = torch.get_num_threads()
    assert matmul_gmacs(1, n=256, repeats=2) > 0
    assert torch.get_num_threads() == before
