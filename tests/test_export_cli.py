"""``mobile-sr export`` as users call it: a full run, one-line errors with exit code 2, exit code 1 on a
failed check, and no partial artifact under a final name when the process is killed mid-export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mobile_sr.cli import main
from mobile_sr.core.files import sidecar_path
from mobile_sr.core.weights import write_weights
from mobile_sr.export import verify
from mobile_sr.export.sidecar import validate
from mobile_sr.models import create_model

pytestmark = pytest.mark.extras("onnx")  # every export here is to ONNX, the quickest runtime

ARTIFACT = "fsrcnn_x2_64x64_fp32.onnx"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, image_like_model) -> Path:
    """An FSRCNN x2 checkpoint as `mobile-sr train` writes it (no shipped weights needed)."""
    model = image_like_model("fsrcnn")
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    write_weights(model, {"model": "fsrcnn", "scale": 2, "config": model.config()}, path)
    return path


def run(*args: str):
    return CliRunner().invoke(main, ["export", *args])


def test_export_writes_artifact_sidecar_table_and_next_step(checkpoint, tmp_path):
    res = run("--target", "onnx", "--model", str(checkpoint), "--input-size", "64x64", "-o", str(tmp_path))
    assert res.exit_code == 0, res.output
    header = next(line for line in res.stdout.splitlines() if line.startswith("file"))
    for column in ("size", "precision", "export s", "parity dB", "Set5 dB", "delegated/total"):
        assert column in header
    assert ARTIFACT in res.stdout and "passed" in res.stdout
    assert f"next: mobile-sr bench {tmp_path / ARTIFACT}" in res.stdout
    doc = json.loads(sidecar_path(tmp_path / ARTIFACT).read_text())
    assert validate(doc) == [] and doc["verification"]["verified"] is True
    assert doc["model"]["source"] == str(checkpoint)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ARTIFACT, ARTIFACT + ".json"]


@pytest.mark.extras("tflite")
def test_shipped_fsrcnn_x3_exports_verified_to_onnx_and_tflite(tmp_path):
    """x3 is the one FSRCNN scale whose sub-pixel rewrite needs a crop (a 4x4 sub-kernel, models/subpixel.py):
    the crop must survive ONNX and onnx2tf, and the artifacts must score Set5 as PyTorch does."""
    res = run("--target", "onnx,tflite", "--model", "fsrcnn", "--scale", "3", "--input-size", "63x63",
              "-o", str(tmp_path))
    assert res.exit_code == 0, res.output
    for name in ("fsrcnn_x3_63x63_fp32.onnx", "fsrcnn_x3_63x63_fp32.tflite"):
        doc = json.loads(sidecar_path(tmp_path / name).read_text())
        assert doc["verification"]["verified"] is True, doc["verification"]
        assert doc["outputs"][0]["shape"].count(189) == 2  # 3 x 63 on both sides, NCHW or NHWC


def test_no_verify_marks_the_artifact_unverified(checkpoint, tmp_path):
    res = run("--target", "onnx", "--model", str(checkpoint), "--input-size", "64x64", "-o", str(tmp_path),
              "--no-verify")
    assert res.exit_code == 0, res.output
    doc = json.loads(sidecar_path(tmp_path / ARTIFACT).read_text())
    assert doc["verification"]["status"] == "skipped" and doc["verification"]["verified"] is False
    assert doc["inputs"][0]["shape"] == [1, 3, 64, 64]  # the I/O is still described, from the runtime


def test_failed_check_exits_1_and_keeps_the_artifact_marked_unverified(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(verify.PARITY_MIN_DB, "fp32", 1000.0)  # no real export reaches 1000 dB
    res = run("--target", "onnx", "--model", str(checkpoint), "--input-size", "64x64", "-o", str(tmp_path))
    assert res.exit_code == 1
    assert res.stderr.strip().startswith("error: verification failed for " + ARTIFACT)
    doc = json.loads(sidecar_path(tmp_path / ARTIFACT).read_text())
    assert (tmp_path / ARTIFACT).exists()
    assert doc["verification"]["status"] == "failed" and doc["verification"]["verified"] is False
    assert "parity" in doc["verification"]["problems"][0]


@pytest.mark.parametrize("args,message", [
    (["--target", "tfjs"], "unknown target tfjs"),
    (["--target", "onnx", "--model", "srgan"], "neither a built-in model"),
    (["--target", "onnx", "--model", "nowhere/model.pt"], "neither a built-in model"),
    (["--target", "onnx", "--input-size", "8x8"], "--input-size 8x8"),
    (["--target", "onnx", "--input-size", "big"], "--input-size 'big'"),
    (["--target", "onnx", "--fp16"], "onnx cannot export fp16"),
    (["--target", "executorch", "--int8-io"], "executorch cannot export int8io"),
    (["--target", "onnx", "--int8", "--calib", "EMPTY"], "holds no images"),
    (["--target", "onnx", "--int8", "--calib", "CORRUPT"], "unreadable calibration image"),
    (["--target", "onnx", "--int8", "--calib", "MISSING"], "calibration folder not found"),
])
def test_bad_input_is_one_line_and_exit_2(checkpoint, tmp_path, args, message):
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "CORRUPT").mkdir()
    (tmp_path / "CORRUPT" / "x.png").write_bytes(b"\x89PNG broken")
    args = [str(tmp_path / a) if a in ("EMPTY", "CORRUPT", "MISSING") else a for a in args]
    if "--model" not in args:
        args += ["--model", str(checkpoint)]
    res = run(*args, "-o", str(tmp_path / "out"))
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ") and message in res.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("module,args,extra", [
    ("onnx2tf", ["--target", "tflite"], "tflite"),
    ("onnxruntime", ["--target", "onnx"], "onnx"),
    ("executorch", ["--target", "coreml", "--int8"], "coreml,executorch"),  # Core ML int8 uses ExecuTorch's PT2E
])
def test_missing_extra_says_which_pip_extra(checkpoint, tmp_path, monkeypatch, module, args, extra):
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    res = run(*args, "--model", str(checkpoint), "-o", str(tmp_path))
    assert res.exit_code == 2
    assert f"pip install 'mobile-sr[{extra}]'" in res.stderr and res.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())  # checked before any work


# The export CLI in a child process whose verification step, once reached, creates $HOLD_FLAG and waits: the
# artifact is complete in its staging folder by then, so the test kills at exactly that point, on any machine.
HELD_EXPORT = """
import os, sys, time
import mobile_sr.export as export
verify_artifact = export.verify_artifact

def held(*args, **kwargs):
    open(os.environ["HOLD_FLAG"], "w").close()
    time.sleep(600)
    return verify_artifact(*args, **kwargs)

export.verify_artifact = held
from mobile_sr.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_killed_export_leaves_no_file_under_a_final_name(checkpoint, tmp_path):
    """SIGKILL while the artifact is complete in its staging folder but still being verified."""
    out, flag = tmp_path / "out", tmp_path / "held"
    cmd = [sys.executable, "-c", HELD_EXPORT, "export", "--target", "onnx", "--model", str(checkpoint),
           "--input-size", "64x64", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HOLD_FLAG": str(flag)})
    try:
        deadline = time.monotonic() + 600  # only against a hang: the flag says when
        while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists(), f"the export never reached verification: {proc.poll()=}"
        staged = list(out.glob(f".{ARTIFACT}.*/{ARTIFACT}"))
        assert staged and staged[0].stat().st_size > 0, "the artifact is not staged in a hidden folder"
        assert not (out / ARTIFACT).exists(), "final name appeared before the export was verified"
    finally:
        proc.kill()
        err = proc.communicate()[1]
    assert proc.returncode == -signal.SIGKILL, err
    assert not (out / ARTIFACT).exists() and not sidecar_path(out / ARTIFACT).exists()
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []


@pytest.mark.parametrize("where", ["/proc/mobile-sr-exports", "FILE/sub"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_conversion(checkpoint, tmp_path, where):
    """/proc refuses new entries even to root (for whom a chmod-ed folder would still be writable)."""
    (tmp_path / "FILE").write_text("a file, not a folder")
    out = str(tmp_path / where) if where.startswith("FILE") else where
    res = run("--target", "onnx", "--model", str(checkpoint), "--input-size", "64x64", "-o", out)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith(f"error: -o {out}: ") and res.stderr.count("\n") == 1, res.stderr
    assert "export s" not in res.stdout  # nothing was converted


def test_a_full_disk_during_export_is_one_line_and_leaves_no_partial_file(checkpoint, tmp_path, monkeypatch):
    import errno

    import mobile_sr.export as export_mod

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_mod, "place", full)
    res = run("--target", "onnx", "--model", str(checkpoint), "--input-size", "64x64", "-o", str(tmp_path))
    assert res.exit_code == 1, res.output
    assert res.stderr == f"error: cannot write into {tmp_path} (No space left on device); nothing half-written " \
                         "is left there\n"
    assert list(tmp_path.iterdir()) == []  # the staging folder went with the failure


def test_a_model_worse_than_bicubic_exports_with_a_warning(tmp_path):
    """An untrained ELSR converts faithfully (parity passes) but makes images worse than bicubic: the summary and
    the sidecar say so, and it is still a warning, not a failure."""
    torch.manual_seed(0)
    model = create_model("elsr", 2, pretrained=False)
    ckpt = tmp_path / "untrained.safetensors"
    write_weights(model, {"model": "elsr", "scale": 2, "config": model.config()}, ckpt)
    res = run("--target", "onnx", "--model", str(ckpt), "--input-size", "64x64", "-o", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    name = "elsr_x2_64x64_fp32.onnx"
    ver = json.loads(sidecar_path(tmp_path / "out" / name).read_text())["verification"]
    assert ver["status"] == "passed" and ver["set5_bicubic_psnr_db"] == pytest.approx(33.68, abs=0.02)
    assert ver["set5_fp32_psnr_db"] < ver["set5_bicubic_psnr_db"]
    assert len(ver["warnings"]) == 1 and "below bicubic upscaling (33.6" in ver["warnings"][0]
    assert f"warning: {ver['warnings'][0]}" in res.stdout


NOISE = ("cudart_stub", "absl::InitializeLog", "cpuinfo_utils", "Created TensorFlow Lite XNNPACK delegate",
         "Resetting threadpool")


@pytest.mark.slow
@pytest.mark.extras("tflite", "executorch")
def test_converter_and_runtime_notices_show_only_with_verbose(tmp_path):
    """What TensorFlow, absl and ExecuTorch print from C++ stays out of export's and bench's output (a real
    process, since those lines go straight to file descriptor 2)."""

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mobile_sr", *args], capture_output=True, text=True, timeout=900)

    out = tmp_path / "e"
    quiet = cli("export", "--target", "tflite,executorch", "--model", "elsr", "--input-size", "64x64", "-o", str(out))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and not any(n in quiet.stdout for n in NOISE), quiet.stderr
    arts = sorted(str(p) for p in out.iterdir() if p.suffix in (".tflite", ".pte"))
    bench = cli("bench", *arts, "--runs", "2", "--warmup", "0", "--no-progress", "--no-psnr")
    assert bench.returncode == 0 and not any(n in bench.stdout + bench.stderr for n in NOISE), bench.stderr
    loud = cli("bench", *arts, "--runs", "2", "--warmup", "0", "--no-progress", "--no-psnr", "--verbose")
    assert loud.returncode == 0 and "Created TensorFlow Lite XNNPACK delegate" in loud.stderr
