"""Timing artifacts on this machine, in the runtime a phone would use, called the way an app calls it.

Each runtime gets a session whose ``invoke`` runs one inference on an input that was set once: only
the runtime's own work is timed (no layout change or quantization in Python), as ``benchmark_model``
and the ExecuTorch app time it. Opening the session is the load time.

Memory: before loading, the kernel's peak-RSS mark of this process is reset (``/proc/self/clear_refs``),
so ``VmHWM`` afterwards is the peak while this artifact loaded and ran; we report how far above the
resident size before loading it went. PSS growth is measured as the ExecuTorch app measures it.

CPU time: the process CPU time of each run is recorded beside its wall time. On a machine shared with
other work, wall time measures the contention; with one thread, CPU time still measures the runtime.
"""

from __future__ import annotations

import gc
import importlib
import re
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..core.quiet import native_quiet
from .artifact import Artifact
from .stats import Latency, Measurement

HOST_FORMATS = ("tflite", "executorch", "onnx", "pytorch")
NOT_ON_HOST = {"coreml": "Core ML runs only on macOS/iOS; skipped on this host" if sys.platform != "darwin" else
               "Core ML is not benchmarked by mobile-sr yet; use Xcode's Core ML performance report"}
EXTRAS = {"tflite": "tflite", "executorch": "executorch", "onnx": "onnx"}


class RuntimeMissing(RuntimeError):
    """The runtime for this format is not installed; the message names the pip extra."""


@dataclass
class Session:
    version: str  # runtime and version, e.g. "onnxruntime 1.31.1 (CPU)"
    invoke: Callable[[], object]


RUNTIME_MODULES = {"tflite": ("ai_edge_litert.interpreter",), "onnx": ("onnxruntime",),
                   "executorch": ("executorch.runtime", "executorch.extension.pybindings.portable_lib"), "pytorch": ()}


def preload(fmt: str) -> None:
    """Import the runtime before any timing, so the first artifact's load time holds no import time."""
    for name in RUNTIME_MODULES[fmt]:
        try:
            with native_quiet():  # TensorFlow/absl/ExecuTorch notices at import
                importlib.import_module(name)
        except ImportError as exc:
            raise RuntimeMissing(f"{fmt} runtime missing ({exc}); install it with: pip install "
                                 f"'mobile-sr[{EXTRAS[fmt]}]'") from None


def open_session(fmt: str, path: Path, shape: tuple[int, ...], threads: int, module: torch.nn.Module | None = None
                 ) -> Session:
    """Load ``path`` in its runtime with ``threads`` threads and set a random input of ``shape`` (NCHW)."""
    preload(fmt)
    with native_quiet():  # "Created TensorFlow Lite XNNPACK delegate", ExecuTorch's cpuinfo and threadpool lines
        if fmt == "tflite":
            return _tflite(path, threads)
        if fmt == "executorch":
            return _executorch(path, shape, threads)
        if fmt == "onnx":
            return _onnx(path, shape, threads)
    if fmt == "pytorch":
        assert module is not None
        return _torch(module, shape)
    raise ValueError(f"no host runtime for {fmt}")


def _tflite(path: Path, threads: int) -> Session:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)  # XNNPACK is applied by default
    interp.allocate_tensors()
    detail = interp.get_input_details()[0]
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        x = np.random.default_rng(0).integers(np.iinfo(dtype).min, np.iinfo(dtype).max, detail["shape"], dtype=dtype)
    else:
        x = np.random.default_rng(0).random(detail["shape"], dtype=np.float32).astype(dtype)
    interp.set_tensor(detail["index"], x)
    return Session(f"LiteRT {metadata.version('ai-edge-litert')} (XNNPACK)", interp.invoke)


def _executorch(path: Path, shape: tuple[int, ...], threads: int) -> Session:
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(threads)  # the only thread setting the Python runtime has
    method = Runtime.get().load_program(path).load_method("forward")
    x = [torch.rand(shape, generator=torch.Generator().manual_seed(0))]
    return Session(f"ExecuTorch {metadata.version('executorch')} (XNNPACK)", lambda: method.execute(x))


def _onnx(path: Path, shape: tuple[int, ...], threads: int) -> Session:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    return Session(f"onnxruntime {ort.__version__} (CPU)", lambda: sess.run(None, feed))


def _torch(module: torch.nn.Module, shape: tuple[int, ...]) -> Session:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))

    def invoke() -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return Session(f"PyTorch {torch.__version__} eager", invoke)


@contextmanager
def torch_threads(n: int):
    """Set torch's intra-op threads for a block (eager runs, bicubic, matmul), then restore them."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _status_kb(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _pss_kb() -> int | None:
    try:
        m = re.search(r"^Pss:\s+(\d+) kB", Path("/proc/self/smaps_rollup").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def time_session(opener: Callable[[], Session], warmup: int, runs: int, bar: tqdm | None = None) -> Measurement:
    """Load (timed), the first run (timed, counted as a warm-up run), warm-up, then ``runs`` timed runs."""
    gc.collect()
    rss0, pss0 = _status_kb("VmRSS"), _pss_kb()
    can_peak = _reset_peak_rss()
    t0 = time.perf_counter_ns()
    session = opener()
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    samples: list[float] = []
    cpu: list[float] = []
    first_ms = None
    for i in range(max(warmup, 0) + runs):
        c, t = time.process_time_ns(), time.perf_counter_ns()
        session.invoke()
        ms = (time.perf_counter_ns() - t) / 1e6
        if i == 0:
            first_ms = ms
        if i >= warmup:
            samples.append(ms)
            cpu.append((time.process_time_ns() - c) / 1e6)
        if bar is not None:
            bar.update(1)
    hwm, pss1 = _status_kb("VmHWM"), _pss_kb()
    version = session.version
    del session
    gc.collect()
    peak = max(hwm - rss0, 0) / 1024 if can_peak and hwm is not None and rss0 is not None else None
    pss = (pss1 - pss0) / 1024 if pss0 is not None and pss1 is not None else None
    latency = Latency.from_samples(samples, load_ms, first_ms)
    latency.cpu_median_ms = float(np.median(cpu))
    return Measurement(latency, version, peak, pss)


def measure(artifact: Artifact, threads: int, warmup: int, runs: int, bar: tqdm | None = None) -> Measurement:
    """Benchmark one artifact on this machine."""
    shape = (1, 3, *artifact.input_size)
    preload(artifact.format)
    with torch_threads(threads):
        return time_session(lambda: open_session(artifact.format, artifact.path, shape, threads, artifact.module),
                            warmup, runs, bar)


def set5_psnr(artifact: Artifact, threads: int) -> float | None:
    """Set5 PSNR (Y, crop = scale) of the artifact run in its runtime, tiled at its fixed input size the way an
    app runs it (the export stage's own check, so both agree). None where Set5 lacks this scale, and for a
    downscaler. A pair's upscaler is scored on its pair's 8-bit LR (the pair is loaded from the sidecar's
    source); a ModelError there (the checkpoint is not on this machine) leaves the figure out with a warning."""
    from ..export import FORMATS
    from ..export.verify import set5_psnr as tiled_set5_psnr

    h, w = artifact.input_size
    if artifact.format == "pytorch":
        assert artifact.module is not None
        net = artifact.module

        def fn(x: torch.Tensor) -> torch.Tensor:
            return net(x).clamp(0, 1)
    else:
        with native_quiet():
            run = FORMATS[artifact.format].load(artifact.path, threads).run
        assert run is not None

        def fn(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(run(x.numpy()))

    if artifact.role == "downscaler":  # its quality is the pair's, measured by export's end-to-end check
        return None
    downscale = None
    if artifact.pair is not None:  # a pair's upscaler restores the pair's own LR, not the published one
        from ..models import load_model
        from ..models.deploy import deploy

        downscale = deploy(load_model(artifact.pair, artifact.scale)).downscaler
    with torch_threads(threads), torch.no_grad():
        return tiled_set5_psnr(fn, artifact.scale, h, w, downscale)


def bicubic_latency(input_size: tuple[int, int], scale: int, threads: int, warmup: int, runs: int) -> Latency:
    """Bicubic upscaling in PyTorch at the same input size: the cost floor of the reference point."""
    x = torch.rand(1, 3, *input_size, generator=torch.Generator().manual_seed(0))

    def opener() -> Session:
        return Session("PyTorch bicubic", lambda: F.interpolate(x, scale_factor=scale, mode="bicubic"))

    with torch_threads(threads):
        return time_session(opener, warmup, runs).latency


def bicubic_set5_psnr(scale: int) -> float | None:
    """Set5 PSNR of MATLAB bicubic: the quality floor every SR table quotes."""
    from ..data.datasets import load_benchmark
    from ..evaluation import bicubic_pipeline, evaluate

    try:
        images = load_benchmark("Set5", scale)
    except FileNotFoundError:
        return None
    return evaluate(bicubic_pipeline(scale), images, with_ssim=False).psnr
