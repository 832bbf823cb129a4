"""What every exporter shares: the error type, and what a runtime reports. The wrapper that is exported
(``ExportWrapper``) lives in ``models/deploy.py``, since ``train --qat`` trains that very graph."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np


class ExportError(ValueError):
    """Bad export input (target, size, precision, calibration folder, missing extra); one line saying what to do."""


@dataclass
class TensorInfo:
    """One model input or output as an app has to feed or read it."""

    name: str
    shape: list[int]
    layout: str  # "NCHW" or "NHWC"
    dtype: str  # "float32", "float16" or "int8"
    quant: tuple[float, int] | None = None  # (scale, zero_point): real = scale * (q - zero_point)


@dataclass
class OpsReport:
    """How much of the graph the accelerator delegate runs, and what stays outside it."""

    total: int
    delegated: int
    outside: list[str]  # op names that run outside the delegate, one entry per op
    source: str  # who said so: "runtime" (the interpreter) or "lowering" (the export-time partitioner)


@dataclass
class Loaded:
    """An artifact opened in its runtime. ``run`` maps NCHW float32 RGB in [0, 1] to the same; it hides
    layout and int8 I/O, so verification is the same for every format. ``run`` is None where the
    runtime does not exist on this platform (Core ML off macOS); ``problems`` then lists failed
    structural checks."""

    runtime: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    run: Callable[[np.ndarray], np.ndarray] | None
    ops: OpsReport | None = None
    problems: list[str] = field(default_factory=list)
    # As stored in the file, where the loader can read them; verification checks them against the precision.
    weight_dtypes: list[str] | None = None  # dtypes of all convolution weights, e.g. ["int8"]
    int8_activations: bool | None = None  # convolutions compute on int8 activations


def require(extra: str, *modules: str) -> None:
    """Import ``modules`` or fail with the pip command that installs them."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ExportError(
                f"this export needs {name} ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
                f"install it with: pip install 'mobile-sr[{extra}]'"
            ) from None


def versions(*dists: str) -> dict[str, str]:
    """Installed versions of ``dists`` (recorded in every sidecar)."""
    out = {}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = "not installed"
    return out


def quantize(x: np.ndarray, quant: tuple[float, int], dtype: type) -> np.ndarray:
    """Float to integer with a runtime's (scale, zero_point), saturating like the runtime does."""
    scale, zero = quant
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, quant: tuple[float, int]) -> np.ndarray:
    scale, zero = quant
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)
