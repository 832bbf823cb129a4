"""Shared test fixtures: where ``../shared/datasets`` is (and a skip when it is absent), and the x2 models the
export tests convert."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from mobile_sr.core.files import sidecar_path
from mobile_sr.export.sidecar import measure
from mobile_sr.export.sidecar import validate as validate_sidecar
from mobile_sr.models import create_model, weights_path
from mobile_sr.models.fsrcnn import init_bicubic

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "datasets"

# What each pip extra must bring for its tests (pyproject.toml's optional-dependencies).
EXTRA_MODULES = {
    "onnx": ("onnx", "onnxruntime"),
    "tflite": ("onnx", "onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert"),
    "executorch": ("executorch", "torchao"),
    "coreml": ("coremltools", "executorch"),
    "video": ("av", "bjontegaard"),
    "train": ("kornia",),
    "bench": ("matplotlib",),
    "dev": ("tree_sitter",),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "extras(*names): needs these pip extras; skipped with the install line without")
    # upscale/eval export the model for the fastest runtime and cache it: in a folder of this run, never the
    # user's ~/.cache (each xdist worker gets its own; a test may still set its own MOBILE_SR_CACHE).
    if "MOBILE_SR_CACHE" not in os.environ:
        os.environ["MOBILE_SR_CACHE"] = _OWN_CACHE[0] = tempfile.mkdtemp(prefix="mobile_sr_test_cache_")


_OWN_CACHE: list[str] = [""]  # the cache folder this process made (xdist workers inherit the controller's)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_CACHE[0]:
        shutil.rmtree(_OWN_CACHE[0], ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test marked ``extras(...)`` before its fixtures run when an extra is not installed: a plain
    ``pip install -e .`` gives a green, smaller run, never an ImportError."""
    for mark in item.iter_markers("extras"):
        for extra in mark.args:
            missing = [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]
            if missing:
                pytest.skip(f"needs the {extra} extra ({', '.join(missing)} not installed): "
                            f"pip install -e '.[{extra}]'")


def shared_or_skip(*parts: str) -> Path:
    """A path under ``../shared/datasets``, or skip: a user's clone has no shared datasets."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: these tests need ../shared/datasets beside the checkout (CI has it)")
    return path


@pytest.fixture
def shared_benchmark() -> Path:
    return shared_or_skip("benchmark")


@pytest.fixture
def shared_train() -> Path:
    return shared_or_skip("train")


def _image_like_model(name: str) -> torch.nn.Module:
    """Shipped x2 weights if present; else a deterministic image-like init (FSRCNN starts as bicubic, ELSR and
    OFA subnets as nearest-neighbour plus a small random residual), so outputs are images, not clamped noise."""
    if weights_path(name, 2).exists():
        return create_model(name, 2)
    torch.manual_seed(0)
    model = create_model(name, 2, pretrained=False)
    if name == "fsrcnn":
        init_bicubic(model)
    elif name == "elsr":
        with torch.no_grad():
            model.up.weight.mul_(0.1)
            model.up.bias.zero_()
    else:  # an OFA subnet: nearest-neighbour plus a small random residual, like ELSR's stand-in
        with torch.no_grad():
            model.upsampler.out.weight.mul_(0.1)
            model.upsampler.out.bias.zero_()
    return model.eval()


@pytest.fixture(scope="session")
def image_like_model() -> Callable[[str], torch.nn.Module]:
    """``image_like_model(name)``: an x2 model whose outputs are images (see ``_image_like_model``)."""
    return _image_like_model


def sidecar(path: Path, fmt: str, precision: str = "fp32", size: int = 32) -> dict:
    """A sidecar written by hand, following mobile_sr/export/sidecar.schema.json (checked below)."""
    layout, shape_in, shape_out = ("NHWC", [1, size, size, 3], [1, 2 * size, 2 * size, 3]) if fmt == "tflite" else \
        ("NCHW", [1, 3, size, size], [1, 3, 2 * size, 2 * size])

    def tensor(name: str, shape: list[int]) -> dict:
        return {"name": name, "shape": shape, "layout": layout, "dtype": "float32", "color_order": "RGB",
                "value_range": [0.0, 1.0], "quantization": None}

    return {
        "schema_version": 1,
        "artifact": {"file": path.name, "format": fmt, "precision": precision, "bytes": 0, "sha256": "0" * 64},
        "model": {"name": "fsrcnn-s", "arch": "FSRCNN", "config": {"d": 32, "s": 5, "m": 1}, "scale": 2,
                  "source": "fsrcnn-s", "clamp_output": True},
        "inputs": [tensor("input", shape_in)], "outputs": [tensor("output", shape_out)],
        "export": {"seconds": 1.0, "created": "2026-01-01T00:00:00+00:00", "tools": {}, "min_runtime": None},
        "calibration": None,
        "verification": {"status": "skipped", "verified": False, "runtime": "none", "parity_psnr_db": None,
                         "set5_psnr_db": None, "set5_fp32_psnr_db": None,
                         "thresholds": {"parity_min_db": 50.0, "int8_max_loss_db": None}, "ops": None, "problems": []},
    }


def _stand_in(folder: Path, name: str) -> Path:
    """A stand-in artifact (the fake phone's binaries do not read it) with a valid, sealed sidecar."""
    path = folder / name
    path.write_bytes(b"not a real model")
    fmt = {".tflite": "tflite", ".pte": "executorch", ".onnx": "onnx"}[path.suffix]
    return _seal(path, sidecar(path, fmt))


def _seal(artifact: Path, doc: dict) -> Path:
    """Write ``doc`` as ``artifact``'s sidecar, with the file's real name, size and sha256 (as export writes them):
    bench and bundle refuse a sidecar that does not describe the bytes beside it."""
    size, digest = measure(artifact)
    doc = {**doc, "artifact": {**doc["artifact"], "file": artifact.name, "bytes": size, "sha256": digest}}
    assert validate_sidecar(doc) == []
    sidecar_path(artifact).write_text(json.dumps(doc))
    return artifact


@pytest.fixture(scope="session")
def make_artifact() -> Callable[[Path, str], Path]:
    """``make_artifact(folder, "m.tflite")``: a stand-in file with a sealed sidecar, for the fake phone."""
    return _stand_in


@pytest.fixture(scope="session")
def seal() -> Callable[[Path, dict], Path]:
    """``seal(artifact, sidecar_doc)``: write the sidecar with the artifact's real size and sha256."""
    return _seal


def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """``mobile-sr ARGS`` in a child process, one thread, output captured."""
    return subprocess.Popen([sys.executable, "-m", "mobile_sr", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _kill_at_checkpoint(args: list[str], step: int, flag: Path) -> None:
    """Run ``mobile-sr ARGS`` and SIGKILL it while it waits right after its checkpoint of ``step`` (the trainer's
    test hook): the kill point is the same on a fast machine and on two busy cores."""
    from mobile_sr.train.trainer import HOLD_ENV

    run = _cli(args, env={HOLD_ENV: f"{step}:{flag}"})
    try:
        deadline = time.monotonic() + 600  # only against a hang; the flag decides when to kill
        while not flag.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists(), f"the run never reached step {step}: {run.poll()=}"
    finally:
        run.send_signal(signal.SIGKILL)
        output = run.communicate()[0]
    assert run.returncode == -signal.SIGKILL, output


@pytest.fixture(scope="session")
def kill_at_checkpoint() -> Callable[[list[str], int, Path], None]:
    """``kill_at_checkpoint(args, step, flag)``: start a training run and SIGKILL it right after that step's
    checkpoint."""
    return _kill_at_checkpoint


def synthetic_latency(height: int = 64, width: int = 64):
    """A search latency table where every layer costs 1 ms per GMAC plus 0.05 ms: a stand-in device, no
    measurement (tests of search and of the supernet pair)."""
    from mobile_sr.search.latency import LatencyModel, all_layers

    entries = {layer.key: {"typical_ms": layer.macs / 1e6 + 0.05} for layer in all_layers(height, width)}
    return LatencyModel({"metric": "typical_ms", "entries": entries}, height, width, {"2": 0.3, "4": 0.6})


def random_pair(scale: int = 2) -> torch.nn.Module:
    """rescale's layout with a downscaler that really departs from bicubic, and the shipped ELSR upscaler: the
    mechanics of a pair (files, exports, runtimes) without training one."""
    torch.manual_seed(0)
    pair = create_model("rescale", scale, pretrained=False)
    torch.nn.init.normal_(pair.downscaler.out.weight, std=0.003)
    pair.upscaler.load_state_dict(create_model("elsr", scale).state_dict())
    return pair.eval()


def write_checkpoint(module: torch.nn.Module, name: str, folder: Path, scale: int = 2) -> Path:
    """``module`` (a built-in ``name``) as a ``.safetensors`` checkpoint, as a user passes it to ``--model``."""
    from mobile_sr.core.weights import write_weights

    path = folder / f"{name}.safetensors"
    write_weights(module, {"model": name, "scale": scale, "config": module.config()}, path)
    return path


@pytest.fixture(scope="module")
def pair_ckpt(tmp_path_factory) -> Path:
    """:func:`random_pair` as a checkpoint."""
    return write_checkpoint(random_pair(), "rescale", tmp_path_factory.mktemp("pair"))


def write_clip(path: Path, frames: list[torch.Tensor], pts: list[int] | None = None, time_base: Fraction = Fraction(1, 25),
               audio_seconds: float = 0.0, fmt: str | None = None) -> None:
    """A real H.264 file of uint8 frames (3, H, W): optionally with AAC audio (a 440 Hz tone), irregular timestamps
    (``pts`` in ``time_base`` ticks: a variable frame rate), or raw Annex B with ``fmt='h264'``."""
    import av
    import numpy as np

    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "threads": "1"})
        v.width, v.height, v.pix_fmt = frames[0].shape[2], frames[0].shape[1], "yuv420p"
        v.time_base = time_base
        a = out.add_stream("aac", rate=48000) if audio_seconds else None
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb.permute(1, 2, 0).numpy().copy(), format="rgb24")
            f.pts, f.time_base = (pts[i] if pts else i), time_base
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            n = int(48000 * audio_seconds)
            tone = (0.2 * np.sin(2 * math.pi * 440 * np.arange(n) / 48000)).astype(np.float32)[None]
            for i in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, i : i + 1024]), format="fltp", layout="mono")
                af.sample_rate, af.pts = 48000, i
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)


def audio_payload(path: Path) -> list[bytes]:
    """The bytes of every audio packet of a file: equal lists mean the audio passed through untouched."""
    import av

    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]
