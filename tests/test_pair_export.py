"""A pair's two halves exported (issue 13): the upscaler verified on the pair's own 8-bit LR, the downscaler for
servers (ONNX) and uploading phones (TFLite), each sidecar naming its partner; bundle takes only the upscaler."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from mobile_sr import bundle as bundle_mod
from mobile_sr.bundle import BundleError, bundle, models_dir
from mobile_sr.cli import main
from mobile_sr.data.datasets import load_benchmark
from mobile_sr.evaluation import evaluate, pipeline_for
from mobile_sr.models import load_model

from .conftest import REPO

pytestmark = [pytest.mark.extras("onnx", "tflite"), pytest.mark.slow]  # real exports, as in test_export_formats


@pytest.fixture(scope="module")
def exported(pair_ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports")
    for part, size in (("upscaler", "64x64"), ("downscaler", "128x96")):
        r = CliRunner().invoke(main, ["export", "--model", str(pair_ckpt), "--part", part, "--target", "tflite,onnx",
                                      "--input-size", size, "-o", str(out)])
        assert r.exit_code == 0, r.output
    return out


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_the_pair_upscaler_is_verified_on_its_own_lr_and_names_its_partner(exported, pair_ckpt):
    doc = _sidecar(exported / "rescale_x2_64x64_fp32.tflite")
    assert doc["model"]["role"] == "upscaler" and doc["model"]["arch"] == "ELSR"
    assert doc["model"]["partner"] == {"role": "downscaler", "arch": "TAD", "config": {"width": 32, "blocks": 2}}
    ver = doc["verification"]
    assert ver["status"] == "passed" and "downscaler" in ver["lr_source"]
    # The figure is the learned pipeline's (eval's), not the published-LR one.
    learned = evaluate(pipeline_for(load_model(pair_ckpt)), load_benchmark("Set5", 2), with_ssim=False).psnr
    published = evaluate(pipeline_for(load_model(pair_ckpt)), load_benchmark("Set5", 2), with_ssim=False)
    bicubic_lr = evaluate(replace(pipeline_for(load_model(pair_ckpt)), downscale=None), load_benchmark("Set5", 2),
                          with_ssim=False).psnr
    assert abs(ver["set5_fp32_psnr_db"] - learned) < 0.05 < abs(learned - bicubic_lr)
    assert published.lr_psnr is not None


def test_the_downscaler_exports_to_onnx_and_tflite_verified_end_to_end(exported):
    for suffix in ("tflite", "onnx"):
        doc = _sidecar(exported / f"rescale-downscaler_x2_128x96_fp32.{suffix}")
        assert doc["model"]["role"] == "downscaler" and doc["model"]["partner"]["arch"] == "ELSR"
        nhwc = doc["inputs"][0]["layout"] == "NHWC"  # TFLite's layout
        assert doc["inputs"][0]["shape"] == ([1, 128, 96, 3] if nhwc else [1, 3, 128, 96])
        assert doc["outputs"][0]["shape"] == ([1, 64, 48, 3] if nhwc else [1, 3, 64, 48])
        ver = doc["verification"]
        assert ver["status"] == "passed" and ver["parity_psnr_db"] > 50
        assert abs(ver["set5_psnr_db"] - ver["set5_fp32_psnr_db"]) < 0.05  # its LR restores as PyTorch's does
        assert 35 < ver["lr_psnr_db"] < 60  # it departs from bicubic, and still looks like the picture


def test_downscaler_export_refuses_int8_odd_sizes_and_models_without_one(pair_ckpt, tmp_path):
    for args, why in ((["--model", str(pair_ckpt), "--int8"], "exports in float"),
                      (["--model", str(pair_ckpt), "--input-size", "65x64"], "must divide by 2"),
                      (["--model", "elsr"], "only a pair")):
        r = CliRunner().invoke(main, ["export", "--part", "downscaler", "--target", "onnx", "-o", str(tmp_path),
                                      *args])
        assert r.exit_code == 2 and why in r.output, r.output
    assert not any(tmp_path.iterdir())


def test_bundle_takes_the_pair_upscaler_and_refuses_its_downscaler(exported, tmp_path):
    src = REPO / bundle_mod.APPS["android"][0]
    app = tmp_path / src.name
    shutil.copytree(src, app, ignore=shutil.ignore_patterns("models", "Models", "build", ".gradle"))
    models_dir("android", app).parent.mkdir(parents=True, exist_ok=True)
    _, index = bundle([exported / "rescale_x2_64x64_fp32.tflite"], "android", app_dir=app)
    assert [m["file"] for m in index["models"]] == ["rescale_x2_64x64_fp32.tflite"]
    with pytest.raises(BundleError, match="a downscaler .*bundle the pair's upscaler"):
        bundle([exported / "rescale-downscaler_x2_128x96_fp32.tflite"], "android", app_dir=app)


def test_bench_scores_a_pair_upscaler_on_its_own_lr_and_times_the_downscaler(exported, pair_ckpt):
    r = CliRunner().invoke(main, ["bench", str(exported / "rescale_x2_64x64_fp32.onnx"),
                                  str(exported / "rescale-downscaler_x2_128x96_fp32.onnx"), "--runs", "2",
                                  "--warmup", "0", "--no-progress", "--json", str(exported.parent / "b.json")])
    assert r.exit_code == 0, r.output
    doc = json.loads((exported.parent / "b.json").read_text())
    up, down = doc["results"]
    learned = _sidecar(exported / "rescale_x2_64x64_fp32.onnx")["verification"]["set5_psnr_db"]
    assert up["set5_psnr(db)"] == pytest.approx(learned, abs=0.01)  # the pair's LR, as export verified it
    assert down["set5_psnr(db)"] is None and down["median_inference_latency(ms)"] > 0
    assert [b["input_size"] for b in doc["bicubic"]] == [[64, 64]]  # the reference is sized on the upscaler
