"""``upscale`` and ``eval`` in the fastest installed runtime, with PyTorch eager's output to 1/255.

Which runtime is fastest depends on the model: on one host ONNX Runtime ran the OFA subnets 1.4-1.6x faster than
either XNNPACK runtime, while ExecuTorch ran FSRCNN 1.9x faster than ONNX Runtime (README, the fair comparison).
So ``auto`` times one window of the deployed model in every installed runtime, once, and keeps the choice in the
cache beside the artifacts (:func:`choose`); the artifacts it exported to time them are the ones later runs use.

PyTorch eager runs these small conv nets at ~15% of the matmul peak; ONNX Runtime, LiteRT and ExecuTorch
(XNNPACK) run the same fp32 graph 2-4x faster (README, "Upscaling images"). So the deployed upscaler is
exported fp32 by the format's own ``export`` and run by its ``load``, exactly as ``mobile-sr export`` and
its verification do, at a fixed input size.

Why the runtime tiles the image itself instead of padding tiles to the fixed size (``at_fixed_size``):
PyTorch's convolutions zero-pad at the image border; a tile padded by replication to the artifact's size
puts other pixels there, which moves border pixels by up to 26/255 (measured, ofa-l and elsr on Set5).
Here every window has exactly the artifact's size and lies inside the image (the last one along each side
is moved inwards), so the artifact's own zero padding falls on the image border, as PyTorch's does; the
other window edges keep ``overlap`` pixels of context, as ``upscale_tiled``'s do. An image smaller than the
window along a side gets an artifact of its own size along that side.

Artifacts are cached under ``$MOBILE_SR_CACHE`` (default ``~/.cache/mobile-sr``), ``runtime/``, keyed by a
hash of everything that decides their content: the weights and buffers, the module's structure and the
source of its classes and of the exporters, the scale, the input size, the runtime and the tool versions.
An entry is written through a staging folder and renamed into place with its SHA-256 beside it (renamed
last: it vouches for the file), so a crash leaves no entry; one whose digest does not match, or that its
runtime cannot load, is rebuilt. An unwritable cache falls back to a temporary folder for this process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from ..core.files import atomic_write_text, check_writable_dir, place, staging
from ..core.quiet import native_quiet
from ..core.weights import cpu_name
from ..inference import OVERLAP, upscale_tiled
from ..models import Model, Scale, scale_arbitrary
from ..models.deploy import ExportWrapper, deploy
from . import FORMATS
from .common import ExportError, versions

RUNTIMES = ("torch", "onnx", "tflite", "executorch")
AUTO_RUNS = 3  # timed runs per runtime after one warm-up; the minimum counts (other load only adds time)
# auto weighs each runtime's start-up (its Python import: ExecuTorch's takes ~3 s, the others' well under 0.1 s) against
# its time per window over the windows of one 12 MP output, a phone photo: a runtime that only wins per window does
# not win a single small image.
AUTO_OUTPUT_PIXELS = 12e6
IMPORTS = {"onnx": "onnxruntime", "tflite": "ai_edge_litert.interpreter", "executorch": "executorch.runtime"}
PRECISION = "fp32"  # int8 cannot reproduce PyTorch to 1/255; fp16 does not run faster on a CPU
DEFAULT_TILE = 256  # LR tile core when the caller runs whole images (eval): upscale's default
NAMES = {"torch": "PyTorch", "onnx": "onnxruntime", "tflite": "LiteRT", "executorch": "ExecuTorch"}
DISTRIBUTIONS = {"torch": "torch", "onnx": "onnxruntime", "tflite": "ai-edge-litert", "executorch": "executorch"}

Run = Callable[[np.ndarray], np.ndarray]  # an opened artifact: NCHW float32 in [0, 1] -> the same, upscaled


class RuntimeMissing(ExportError):
    """``--runtime X`` where X is not installed; the message names the pip extra."""


def installed() -> list[str]:
    """The runtimes that can run here: PyTorch always; another one when its extra (converter and runtime) is
    importable. ``find_spec`` only, so asking costs no TensorFlow import."""
    return [r for r in RUNTIMES if r == "torch" or all(importlib.util.find_spec(m) for m in FORMATS[r].modules)]


def resolve(runtime: str) -> str:
    """``auto`` stays ``auto`` (the model decides, see :func:`choose`); a named runtime must be installed
    (RuntimeMissing otherwise). Called before any work, so that a missing runtime is one line up front."""
    if runtime == "auto":
        return runtime
    if runtime not in RUNTIMES:
        raise ExportError(f"unknown runtime {runtime!r}; choose one of: auto, {', '.join(RUNTIMES)}")
    if runtime not in installed():
        fmt = FORMATS[runtime]
        missing = [m for m in fmt.modules if importlib.util.find_spec(m) is None]
        raise RuntimeMissing(f"--runtime {runtime}: {NAMES[runtime]} is not installed ({', '.join(missing)} missing); "
                             f"install it with: pip install 'mobile-sr[{fmt.extra}]'")
    return runtime


def cache_dir() -> Path:
    return Path(os.environ.get("MOBILE_SR_CACHE") or Path.home() / ".cache" / "mobile-sr") / "runtime"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_hash(module: torch.nn.Module, scale: int, runtime: str) -> str:
    """What decides an artifact's content except its input size. Parameters and buffers (non-persistent ones
    too: ELSR's anchor), the module tree, the source of its classes and of the exporters (a changed forward or
    converter must not reuse an old artifact), and the tool versions."""
    h = hashlib.sha256()
    sources = {sys.modules[type(m).__module__].__file__ for m in module.modules()}
    sources |= {str(p) for p in Path(__file__).parent.glob("*.py")}
    doc = {"runtime": runtime, "precision": PRECISION, "scale": scale, "module": repr(module),
           "tools": versions("torch", "mobile-sr", *FORMATS[runtime].tools)}
    h.update(json.dumps(doc, sort_keys=True).encode())
    for src in sorted(s for s in sources if s):
        h.update(Path(src).read_bytes())
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def spans(n: int, window: int, overlap: int) -> list[tuple[int, int, int]]:
    """(window start, core start, core end) along a side of ``n`` pixels, for windows of exactly ``window``
    pixels (``window <= n``) whose cores tile the side. Cores step by ``window - 2 * overlap`` as
    ``upscale_tiled``'s tiles do; the last window is moved inside the side, so its core keeps its context."""
    if window >= n:
        return [(0, 0, n)]
    step = window - 2 * overlap
    if step < 1:
        raise ValueError(f"a {window}-pixel window leaves no core with {overlap} pixels of overlap")
    return [(min(max(c - overlap, 0), n - window), c, min(c + step, n)) for c in range(0, n, step)]


def levels(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float output to ``dtype``: kept as float, or clamped and rounded to 8/16-bit levels as it is pasted."""
    if dtype.is_floating_point:
        return y.to(dtype)
    peak = 65535.0 if dtype == torch.uint16 else 255.0
    return y.clamp(0, 1).mul(peak).round().to(dtype)


@dataclass
class Runner:
    """The deployed upscaler in one runtime. ``tiled(lr, dtype)`` upscales a whole image (C, H, W) into an
    output of ``dtype`` (memory: the output plus one window); calling it on (1, C, H, W) returns float, the
    ``Upscale`` a ``Pipeline`` takes. ``tile=None`` runs the whole image in one pass (one artifact per size).

    PyTorch runs through ``upscale_tiled`` exactly as before; the others export an artifact per window size
    on first use (``on_export(message)`` is told before each export, which can take seconds)."""

    name: str  # the model's, for the cache's file names
    module: torch.nn.Module
    scale: Scale  # fractional only for a scale-arbitrary model, which runs in PyTorch
    runtime: str
    tile: int | None = DEFAULT_TILE
    overlap: int = OVERLAP
    threads: int = field(default_factory=torch.get_num_threads)
    on_export: Callable[[str], None] | None = None
    choice: Choice | None = None  # how ``auto`` picked ``runtime``, when it did
    sessions: dict[tuple[int, int], Run] = field(default_factory=dict, repr=False)
    exports: int = 0  # artifacts built (not found in the cache) by this runner
    export_seconds: float = 0.0  # and the time they took

    @property
    def window(self) -> tuple[int, int] | None:
        """The artifact's input size for images at least that large; None: each image's own size."""
        return None if self.tile is None else (self.tile + 2 * self.overlap,) * 2  # type: ignore[return-value]

    def resolve(self) -> None:
        """``auto``: pick the runtime now (see :func:`choose`), at the first image, so that a bad input is refused
        before any timing or export."""
        if self.runtime == "auto":
            t0 = time.perf_counter()
            self.choice = choose(self.name, self.module, self.scale, self.window, self.threads, self.on_export)
            self.runtime = self.choice.runtime
            if not self.choice.cached and self.choice.ms:  # exports and timing: a one-time cost, like an export
                self.export_seconds += time.perf_counter() - t0

    def describe(self) -> str:
        """``onnxruntime 1.32.0 (fp32, 272x272 tiles, 1 thread)``: what ran, for the ``runtime:`` line."""
        if self.runtime == "auto":
            return "auto (no image ran)"
        version = metadata.version(DISTRIBUTIONS[self.runtime])
        if self.runtime == "torch":
            how = f"eager, fp32, {self.tile}-pixel LR tiles" if self.tile else "eager, fp32, whole images"
        elif self.window is None:
            how = f"{PRECISION}, whole images"
        else:  # an image smaller than the window along a side runs in one window of its own size
            smaller = any(size != self.window for size in self.sessions)
            how = f"{PRECISION}, {self.window[0]}x{self.window[1]} tiles" + (", smaller images whole" if smaller else "")
        threads = f"{self.threads} thread" + ("s" if self.threads > 1 else "")
        return f"{NAMES[self.runtime]} {version} ({how}, {threads})" + (self.choice.describe() if self.choice else "")

    def brief(self) -> str:
        """``onnxruntime 1.32.0 fp32``: what ran, short enough for every line of a folder's output."""
        if self.runtime == "auto":
            return "auto (no image ran)"
        how = "eager" if self.runtime == "torch" else PRECISION
        return f"{NAMES[self.runtime]} {metadata.version(DISTRIBUTIONS[self.runtime])} {how}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.tiled(x[0], torch.float32)[None]

    def tiled(self, lr: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        self.resolve()
        if self.runtime == "torch":
            return upscale_tiled(self.module, lr, self.scale, tile=self.tile, overlap=self.overlap, out_dtype=dtype)
        c, h, w = lr.shape
        wh, ww = (min(h, self.window[0]), min(w, self.window[1])) if self.window else (h, w)
        run, s = self.session(wh, ww), self.scale
        out = torch.empty(c, h * s, w * s, dtype=dtype)
        with native_quiet():  # ExecuTorch's cpuinfo notices when a thread pool first runs
            for y0, top, bottom in spans(h, wh, self.overlap):
                for x0, left, right in spans(w, ww, self.overlap):
                    x = np.ascontiguousarray(lr[None, :, y0 : y0 + wh, x0 : x0 + ww].numpy(), dtype=np.float32)
                    y = torch.from_numpy(run(x))[0]
                    core = y[:, (top - y0) * s : (bottom - y0) * s, (left - x0) * s : (right - x0) * s]
                    out[:, top * s : bottom * s, left * s : right * s] = levels(core, dtype)
        return out

    def session(self, h: int, w: int) -> Run:
        """The opened artifact for ``h`` x ``w`` inputs: from this runner, else from the cache, else exported."""
        self.resolve()
        if (h, w) not in self.sessions:
            self.sessions[(h, w)] = self.open(h, w)
        return self.sessions[(h, w)]

    def open(self, h: int, w: int) -> Run:
        fmt = FORMATS[self.runtime]
        folder = writable_cache()
        path = folder / f"{self.name}_x{self.scale}_{h}x{w}_{PRECISION}_{self.key[:32]}{fmt.suffix}"
        digest = path.with_name(path.name + ".sha256")
        if not (path.is_file() and digest.is_file() and digest.read_text().strip() == sha256(path)):
            self.build(path, h, w)
        try:
            return self.load(path)
        except Exception:  # a digest that vouches for a file its runtime rejects: rebuild it, once
            self.build(path, h, w)
            return self.load(path)

    def build(self, path: Path, h: int, w: int) -> None:
        fmt = FORMATS[self.runtime]
        if self.on_export is not None:
            self.on_export(f"exporting {self.name} x{self.scale} to {NAMES[self.runtime]} at {h}x{w} (once: cached in "
                           f"{path.parent})")
        t0 = time.perf_counter()
        wrapper = ExportWrapper(self.module).eval()
        digest = path.with_name(path.name + ".sha256")
        digest.unlink(missing_ok=True)  # from here until the new digest is placed, the entry is invalid
        with staging(path.parent, path.name) as tmp, torch.inference_mode(False), native_quiet():
            example = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
            fmt.export(wrapper, example, PRECISION, None, tmp / path.name)
            (tmp / digest.name).write_text(sha256(tmp / path.name) + "\n")
            place(tmp / path.name, path)
            place(tmp / digest.name, digest)  # last: it vouches for the file
        self.exports += 1
        self.export_seconds += time.perf_counter() - t0

    def load(self, path: Path) -> Run:
        with native_quiet():
            if self.runtime == "executorch":  # its Python runtime has one process-wide thread pool
                from executorch.extension.pybindings import portable_lib

                portable_lib._unsafe_reset_threadpool(self.threads)
            loaded = FORMATS[self.runtime].load(path, self.threads)
        assert loaded.run is not None, f"{self.runtime} has a runtime on this platform"
        return loaded.run

    @cached_property
    def key(self) -> str:
        return model_hash(self.module, self.scale, self.runtime)


@dataclass(frozen=True)
class Choice:
    """``auto``'s pick: the installed runtime with the least time for one ``window`` of the model."""

    runtime: str
    ms: dict[str, float]  # the least ms of one window per runtime (empty: only one runtime installed)
    startup_ms: dict[str, float]  # the runtime's import in a fresh process
    windows: float  # windows of one AUTO_OUTPUT_PIXELS output
    window: tuple[int, int]
    cached: bool  # read from the cache, not timed by this process

    def cost_ms(self, runtime: str) -> float:
        return self.startup_ms.get(runtime, 0.0) + self.windows * self.ms[runtime]

    def describe(self) -> str:
        if not self.ms:
            return ""
        timed = ", ".join(f"{NAMES[r]} {self.ms[r]:.1f} ms" + (f" + {self.startup_ms[r] / 1e3:.1f} s start-up"
                                                                if self.startup_ms.get(r, 0) >= 100 else "")
                          for r in sorted(self.ms, key=self.cost_ms))
        when = ", timed earlier" if self.cached else ""
        return (f"; auto: the fastest for a {AUTO_OUTPUT_PIXELS / 1e6:g} MP output ({self.windows:.0f} windows of "
                f"{self.window[0]}x{self.window[1]}) of {timed}{when}")


def choose(name: str, module: torch.nn.Module, scale: int, window: tuple[int, int] | None, threads: int,
           on_export: Callable[[str], None] | None = None) -> Choice:
    """The installed runtime that runs one ``window`` (default: a 256-pixel tile with its overlap) of the deployed
    ``module`` fastest, timed once and kept in the cache, keyed by everything the artifacts are keyed by, the
    window, the thread count and the CPU. Each runtime is timed on its cached artifact (exported here if absent),
    so its first ``upscale`` exports nothing more."""
    candidates = installed()
    h, w = window or (DEFAULT_TILE + 2 * OVERLAP,) * 2
    core = max(h - 2 * OVERLAP, 1) * max(w - 2 * OVERLAP, 1)
    windows = max(AUTO_OUTPUT_PIXELS / scale**2 / core, 1.0)
    if len(candidates) == 1:
        return Choice(candidates[0], {}, {}, windows, (h, w), False)
    # The artifacts' keys (weights, structure, sources, tool versions, torch's included) and the candidates.
    doc = {"keys": {r: model_hash(module, scale, r) for r in candidates if r != "torch"}, "candidates": candidates,
           "window": [h, w], "threads": threads, "cpu": cpu_name()}
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    path = writable_cache() / f"fastest_{name}_x{scale}_{h}x{w}_{threads}t_{key[:32]}.json"
    try:
        kept = json.loads(path.read_text())
        if kept["runtime"] in candidates and set(kept["ms"]) == set(candidates):
            return Choice(kept["runtime"], {r: float(v) for r, v in kept["ms"].items()},
                          {r: float(v) for r, v in kept["startup_ms"].items()}, windows, (h, w), True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # absent or unreadable: time them again
    if on_export is not None:
        on_export(f"timing {name} x{scale} in {', '.join(NAMES[r] for r in candidates)} to pick the fastest (once: "
                  f"cached in {path.parent})")
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    ms: dict[str, float] = {}
    for r in candidates:
        run = _eager(module) if r == "torch" else Runner(name, module, scale, r, threads=threads,
                                                         on_export=on_export).session(h, w)
        samples = []
        with native_quiet():  # ExecuTorch's cpuinfo notices on its first run
            for i in range(1 + AUTO_RUNS):
                t0 = time.perf_counter()
                run(x)
                if i:
                    samples.append((time.perf_counter() - t0) * 1e3)
        ms[r] = round(min(samples), 3)
        del run
    startup = _startup_ms([r for r in candidates if r != "torch"])  # torch is imported already
    choice = Choice("", ms, startup, windows, (h, w), False)
    best = min(ms, key=choice.cost_ms)
    atomic_write_text(path, json.dumps({"runtime": best, "ms": ms, "startup_ms": startup, "windows": windows, **doc},
                                       indent=1) + "\n")
    choice = replace(choice, runtime=best)
    if on_export is not None:
        on_export(f"auto picked {NAMES[best]}{choice.describe().removeprefix('; auto')}")
    return choice


def _startup_ms(runtimes: list[str]) -> dict[str, float]:
    """Each runtime's import time (:func:`_import_ms`): a property of the machine and the installed versions, not
    of the model, so it is measured once and kept in the cache for every later model."""
    doc = {"versions": versions(*(DISTRIBUTIONS[r] for r in runtimes)), "python": sys.executable, "cpu": cpu_name()}
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    path = writable_cache() / f"startup_{key[:32]}.json"
    try:
        kept = json.loads(path.read_text())["startup_ms"]
        if set(kept) == set(runtimes):
            return {r: float(v) for r, v in kept.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # absent or unreadable: measure again
    startup = {r: _import_ms(r) for r in runtimes}
    atomic_write_text(path, json.dumps({"startup_ms": startup, **doc}, indent=1) + "\n")
    return startup


def _import_ms(runtime: str) -> float:
    """Milliseconds a fresh process spends importing ``runtime``'s Python module (after torch, which mobile-sr
    always imports); 0 when it cannot be measured."""
    code = (f"import time, torch; t = time.perf_counter(); import {IMPORTS[runtime]}; "
            "print((time.perf_counter() - t) * 1e3)")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        return round(float(out.stdout.split()[-1]), 1) if out.returncode == 0 else 0.0
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return 0.0


def _eager(module: torch.nn.Module) -> Run:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


_fallback: list[tempfile.TemporaryDirectory] = []  # the per-process cache when the real one is not writable


def writable_cache() -> Path:
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        check_writable_dir(folder)
        return folder
    except OSError:
        if not _fallback:
            _fallback.append(tempfile.TemporaryDirectory(prefix="mobile-sr-runtime."))
        return Path(_fallback[0].name)


def check_runtime(model: Model, runtime: str) -> None:
    """A scale-arbitrary model runs in PyTorch only (``auto`` picks it): the runners of the other runtimes tile at
    integer factors, while PyTorch tiles in cells of p/q. ValueError, one line, for another runtime."""
    if scale_arbitrary(model.name) and runtime not in ("auto", "torch"):
        raise ValueError(f"--runtime {runtime}: {model.name} is scale-arbitrary and runs in PyTorch only; drop --runtime")


def runtime_upscaler(model: Model, runtime: str, tile: int | None = DEFAULT_TILE, overlap: int = OVERLAP,
                     threads: int | None = None, on_export: Callable[[str], None] | None = None) -> Runner:
    """The deployed upscaler of ``model`` (a pair's phone side; its downscaler stays in PyTorch) in ``runtime``
    (``auto``: see :func:`choose`, or one of RUNTIMES), ``tile`` x ``tile`` LR cores with ``overlap`` pixels of
    context each."""
    model = deploy(model)
    runtime = resolve(runtime)
    check_runtime(model, runtime)
    if scale_arbitrary(model.name):
        runtime = "torch"
    return Runner(model.name, model.upscaler.eval(), model.scale, runtime, tile, overlap,
                  threads or torch.get_num_threads(), on_export=on_export)
