"""Latency lookup tables: single convolution layers timed on a device, for hardware-aware architecture search.

A search cannot benchmark every candidate network; it sums the measured latencies of the layers a
candidate is made of. Each layer configuration is exported on its own with the chosen runtime's
real converter, and timed on the host (in-process) or on a phone (with the user's benchmark binary),
exactly as a whole artifact is, so the table and the full-model benchmarks agree.

The table is JSON: ``{"device", "runtime", "threads", ..., "entries": {key: {"config", "macs", "median_ms",
...}}}``; :func:`lookup` reads a configuration's latency back.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..core.files import atomic_write
from . import host
from .remote import pick_binary, run_binary
from .run import AdbPlan, host_device

SUFFIX = {"onnx": ".onnx", "executorch": ".pte", "tflite": ".tflite"}
ACTIVATIONS = ("none", "relu", "prelu")
TABLE_VERSION = 1


@dataclass(frozen=True)
class LayerConfig:
    """One convolution (``same`` padding) with an optional activation, at an input resolution."""

    in_channels: int
    out_channels: int
    kernel: int
    height: int
    width: int
    stride: int = 1
    groups: int = 1
    activation: str = "none"

    def __post_init__(self) -> None:
        if min(self.in_channels, self.out_channels, self.kernel, self.height, self.width, self.stride, self.groups) < 1:
            raise ValueError(f"{self}: every size must be >= 1")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{self}: channels must be divisible by groups")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {', '.join(ACTIVATIONS)}")

    @property
    def key(self) -> str:
        return (f"conv_k{self.kernel}_s{self.stride}_i{self.in_channels}_o{self.out_channels}_g{self.groups}_"
                f"{self.activation}_{self.height}x{self.width}")

    @property
    def out_size(self) -> tuple[int, int]:
        pad = self.kernel // 2
        return ((self.height + 2 * pad - self.kernel) // self.stride + 1,
                (self.width + 2 * pad - self.kernel) // self.stride + 1)

    @property
    def macs(self) -> int:
        h, w = self.out_size
        return h * w * self.out_channels * (self.in_channels // self.groups) * self.kernel * self.kernel

    def module(self) -> nn.Module:
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel, self.stride, self.kernel // 2,
                         groups=self.groups)
        act = {"none": nn.Identity(), "relu": nn.ReLU(), "prelu": nn.PReLU(self.out_channels)}[self.activation]
        return nn.Sequential(conv, act).eval()


def export_layer(cfg: LayerConfig, runtime: str, folder: Path) -> Path:
    """The layer as a file in ``runtime``'s format, made by the export stage's converter (fp32)."""
    return export_module(cfg.module(), (1, cfg.in_channels, cfg.height, cfg.width), runtime, folder / cfg.key)


def export_module(module: nn.Module, shape: tuple[int, ...], runtime: str, stem: Path) -> Path:
    """``module`` as ``stem`` + the runtime's suffix, made by the export stage's converter (fp32)."""
    from ..export import FORMATS

    dest = stem.with_name(stem.name + SUFFIX[runtime])
    example = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        FORMATS[runtime].export(module.eval(), example, "fp32", None, dest)
    return dest


def metric(runtime_plan: AdbPlan | None, threads: int) -> str:
    """The figure a table keeps for lookups: on the host with one thread, the CPU time per run (it does not
    move when other processes share the cores); otherwise the wall-clock median (or the tool's typical figure)."""
    return "cpu_median_ms" if runtime_plan is None and threads == 1 else "typical_ms"


def time_module(module: nn.Module, shape: tuple[int, ...], *, runtime: str, plan: AdbPlan | None = None,
                threads: int = 1, warmup: int = 3, runs: int = 20) -> float:
    """Latency (ms, the :func:`metric` figure) of a whole module in ``runtime`` on the host or ``plan``'s phone."""
    if plan is None:
        host.preload(runtime)
    with tempfile.TemporaryDirectory(prefix="mobile_sr_module_") as tmp:
        if runtime == "pytorch":
            m = _host_time(runtime, None, shape, threads, warmup, runs, module.eval())
        else:
            path = export_module(module, shape, runtime, Path(tmp) / "model")
            m = _measure_file(path, runtime, shape, plan, threads, warmup, runs)
    return getattr(m.latency, metric(plan, threads))


def _measure_file(path: Path, runtime: str, shape: tuple[int, ...], plan: AdbPlan | None, threads: int, warmup: int,
                  runs: int):
    if plan is None:
        return _host_time(runtime, path, shape, threads, warmup, runs, None)
    binary = pick_binary(plan.binaries, runtime)
    if binary is None:
        raise ValueError(f"no benchmark binary for {runtime} among {[b.name for b in plan.binaries]}")
    return run_binary(plan.adb, path, runtime, binary, threads, warmup, runs)


def measure_layers(configs: list[LayerConfig], *, runtime: str = "onnx", plan: AdbPlan | None = None,
                   threads: int = 1, warmup: int = 3, runs: int = 20, progress: bool = False) -> dict[str, Any]:
    """Time every configuration with ``runtime`` (onnx, executorch, tflite; pytorch on the host only) on the
    host, or on the phone of ``plan`` (binary runner). Returns the table (JSON-ready)."""
    if runtime not in (*SUFFIX, "pytorch"):
        raise ValueError(f"runtime {runtime!r} is not one of {', '.join((*SUFFIX, 'pytorch'))}")
    if plan is not None and (runtime not in ("tflite", "executorch") or plan.runner != "binary"):
        raise ValueError("on a phone, layer tables need the binary runner and runtime tflite or executorch")
    binary = pick_binary(plan.binaries, runtime) if plan is not None else None
    if plan is not None and binary is None:
        raise ValueError(f"no benchmark binary for {runtime} among {[b.name for b in plan.binaries]}")
    if plan is None:
        host.preload(runtime)
    entries: dict[str, Any] = {}
    version = None
    with tempfile.TemporaryDirectory(prefix="mobile_sr_layers_") as tmp:
        for cfg in tqdm(configs, desc="layers", unit="layer", disable=None if progress else True, leave=False):
            shape = (1, cfg.in_channels, cfg.height, cfg.width)
            if runtime == "pytorch":
                m = _host_time(runtime, None, shape, threads, warmup, runs, cfg.module())
            else:
                path = export_layer(cfg, runtime, Path(tmp))
                m = _measure_file(path, runtime, shape, plan, threads, warmup, runs)
                path.unlink()
            version = m.runtime_version
            lat = m.latency
            entries[cfg.key] = {"config": asdict(cfg), "macs": cfg.macs, "median_ms": _r(lat.median_ms),
                                "min_ms": _r(lat.min_ms), "avg_ms": _r(lat.avg_ms), "typical_ms": _r(lat.typical_ms),
                                "cpu_median_ms": _r(lat.cpu_median_ms)}
    return {"table_version": TABLE_VERSION, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "device": host_device() if plan is None else plan.adb.describe(), "runtime": runtime,
            "runtime_version": version, "threads": threads, "warmup": warmup, "runs": runs,
            "metric": metric(plan, threads), "entries": entries}


def _host_time(runtime: str, path: Path | None, shape: tuple[int, ...], threads: int, warmup: int, runs: int,
               module: nn.Module | None):
    with host.torch_threads(threads):
        return host.time_session(lambda: host.open_session(runtime, path or Path(), shape, threads, module),
                                 warmup, runs)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def lookup(table: dict[str, Any], cfg: LayerConfig) -> float:
    """Latency (ms) of ``cfg`` in ``table``, in the table's :func:`metric` (the median/typical figure by default)."""
    entry = table["entries"].get(cfg.key)
    if entry is None:
        raise KeyError(f"{cfg.key} is not in this latency table ({len(table['entries'])} entries); measure it first")
    return entry[table.get("metric", "typical_ms")]


def save_table(table: dict[str, Any], path: Path) -> None:
    data = (json.dumps(table, indent=2) + "\n").encode()
    atomic_write(path, data)


def load_table(path: Path) -> dict[str, Any]:
    table = json.loads(Path(path).read_text())
    if table.get("table_version") != TABLE_VERSION or "entries" not in table:
        raise ValueError(f"{path}: not a mobile-sr latency table (version {TABLE_VERSION})")
    return table
