"""The ``<artifact>.json`` sidecar: one schema (``sidecar.schema.json``, JSON Schema 2020-12) for this
package, the bench command and the demo apps, checked with :mod:`mobile_sr.core.schema`."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core import schema
from ..core.files import atomic_write_text
from ..data.calib import CalibSet
from ..models import Model
from .common import Loaded, OpsReport, TensorInfo
from .verify import INT8_MAX_LOSS_DB, PARITY_MIN_DB, Verification

SCHEMA_PATH = Path(__file__).resolve().parent / "sidecar.schema.json"
SCHEMA_VERSION = 1


def build(*, artifact: Path, fmt: str, precision: str, model: Model, loaded: Loaded,
          seconds: float, tools: dict[str, str], min_runtime: str | None, calib: CalibSet | None,
          size: tuple[int, int], verification: Verification, ops: OpsReport | None,
          part: str = "upscaler") -> dict[str, Any]:
    """The sidecar document of one artifact (plain JSON types only); ``part`` is the half of a pair it holds."""
    size_bytes, digest = measure(artifact)
    net = model.downscaler if part == "downscaler" else model.upscaler
    other = model.upscaler if part == "downscaler" else model.downscaler
    return {
        "schema_version": SCHEMA_VERSION,
        "artifact": {"file": artifact.name, "format": fmt, "precision": precision, "bytes": size_bytes,
                     "sha256": digest},
        "model": {"name": model.name, "arch": type(net).__name__, "config": net.config(),
                  "scale": model.scale, "source": model.source, "clamp_output": True, "role": part,
                  "partner": _partner(other, "upscaler" if part == "downscaler" else "downscaler")
                  if model.role == "pair" else None},
        "inputs": [_tensor(t) for t in loaded.inputs],
        "outputs": [_tensor(t) for t in loaded.outputs],
        "export": {"seconds": round(seconds, 3), "created": datetime.now(UTC).isoformat(timespec="seconds"),
                   "tools": tools, "min_runtime": min_runtime},
        "calibration": None if calib is None else {
            "source": "builtin" if calib.builtin else str(calib.folder),
            "images": calib.names,
            "sha256": calib.sha256,
            "fitted_to": list(size),
            "normalisation": "RGB / 255 in [0, 1], no mean/std; centre-cropped or mirror-padded to the input size",
            # How the float weights were readied for int8: trained on the int8 grid (train --qat), or range-equalized
            # and bias-corrected here (export/dfq.py).
            "preparation": "qat" if model.qat else "equalization+bias-correction",
        },
        "verification": {
            "status": verification.status,
            "verified": verification.verified,
            "runtime": verification.runtime,
            "parity_psnr_db": _round(verification.parity_psnr_db),
            "set5_psnr_db": _round(verification.set5_psnr_db),
            "set5_fp32_psnr_db": _round(verification.set5_fp32_psnr_db),
            "thresholds": {"parity_min_db": PARITY_MIN_DB.get(precision),
                           "int8_max_loss_db": None if precision in PARITY_MIN_DB else INT8_MAX_LOSS_DB},
            "ops": None if ops is None else {"total": ops.total, "delegated": ops.delegated,
                                             "outside": ops.outside, "source": ops.source},
            "problems": verification.problems,
            "warnings": verification.warnings,
            "set5_bicubic_psnr_db": _round(verification.set5_bicubic_psnr_db),
            "lr_source": verification.lr_source,
            **({"lr_psnr_db": _round(verification.lr_psnr_db)} if verification.lr_psnr_db is not None else {}),
        },
    }


def _partner(module: Any, role: str) -> dict[str, Any]:
    """The other half of a pair: what must run on the other side for this artifact's figures to hold."""
    return {"role": role, "arch": type(module).__name__, "config": module.config()}


def _tensor(t: TensorInfo) -> dict[str, Any]:
    quant = None if t.quant is None else {"scale": t.quant[0], "zero_point": t.quant[1]}
    return {"name": t.name, "shape": t.shape, "layout": t.layout, "dtype": t.dtype, "color_order": "RGB",
            "value_range": [0.0, 1.0], "quantization": quant}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def measure(path: Path) -> tuple[int, str]:
    """Bytes and sha256 of a file, or of a folder (sorted relative paths and contents: .mlpackage)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        digest.update(f.read_bytes())
    return sum(f.stat().st_size for f in files), digest.hexdigest()


def load_schema() -> dict[str, Any]:
    return schema.load_schema(SCHEMA_PATH)


def validate(doc: Any, against: dict[str, Any] | None = None) -> list[str]:
    """Every way ``doc`` breaks the sidecar schema (or ``against``), as 'path: problem' lines; empty when valid."""
    return schema.validate(doc, SCHEMA_PATH if against is None else against)


def write(doc: dict[str, Any], path: Path) -> None:
    """Validate, then write. An invalid sidecar is a bug in this package, never a user error."""
    errors = validate(doc)
    if errors:
        raise AssertionError("sidecar does not match sidecar.schema.json: " + "; ".join(errors[:5]))
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
