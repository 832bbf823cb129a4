"""The ``<artifact>.json`` sidecar: one schema (``sidecar.schema.json``) for this package, the bench
command and the demo apps, and a small validator for it.

Why our own validator: ``jsonschema`` is no dependency, and the schema sticks to a small subset of
JSON Schema 2020-12 (type, const, enum, properties, required, additionalProperties, items,
minItems/maxItems, minimum/exclusiveMinimum, pattern, anyOf, local $ref) that the Kotlin and Swift
checkers can implement just as easily. :func:`validate` rejects any keyword outside that subset,
so the schema cannot silently grow beyond what is checked.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from torch import nn

from .calib import CalibSet
from .common import Loaded, OpsReport, TensorInfo
from .verify import INT8_MAX_LOSS_DB, PARITY_MIN_DB, Verification

SCHEMA_PATH = Path(__file__).resolve().parent / "sidecar.schema.json"
SCHEMA_VERSION = 1


def sidecar_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def build(*, artifact: Path, fmt: str, precision: str, model: nn.Module, source: str, loaded: Loaded,
          seconds: float, tools: dict[str, str], min_runtime: str | None, calib: CalibSet | None,
          size: tuple[int, int], verification: Verification, ops: OpsReport | None) -> dict[str, Any]:
    """The sidecar document of one artifact (plain JSON types only)."""
    size_bytes, digest = measure(artifact)
    return {
        "schema_version": SCHEMA_VERSION,
        "artifact": {"file": artifact.name, "format": fmt, "precision": precision, "bytes": size_bytes,
                     "sha256": digest},
        "model": {"name": model.model_name, "arch": type(model).__name__, "config": model.config(),
                  "scale": model.scale, "source": source, "clamp_output": True},
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
        },
    }


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
    return json.loads(SCHEMA_PATH.read_text())


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
_KEYWORDS = {"$schema", "$defs", "$ref", "title", "description", "type", "const", "enum", "properties",
             "required", "additionalProperties", "items", "minItems", "maxItems", "minimum", "exclusiveMinimum",
             "pattern", "anyOf"}


def validate(doc: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Every way ``doc`` breaks the schema, as 'path: problem' lines; empty when it is valid."""
    root = schema if schema is not None else load_schema()
    errors: list[str] = []
    _check(doc, root, root, "$", errors)
    return errors


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str, errors: list[str]) -> None:
    unknown = set(schema) - _KEYWORDS
    if unknown:
        raise ValueError(f"schema at {path} uses keywords this validator does not implement: {sorted(unknown)}")
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        _check(value, target, root, path, errors)
    if "anyOf" in schema:
        branches = []
        for sub in schema["anyOf"]:
            branch: list[str] = []
            _check(value, sub, root, path, branch)
            branches.append(branch)
        if all(branches):
            errors.append(f"{path}: matches none of the allowed forms ({'; '.join(b[0] for b in branches)})")
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            errors.append(f"{path}: {type(value).__name__} is not {' or '.join(names)}")
            return
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{path}: {value} <= {schema['exclusiveMinimum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{path}: {len(value)} items, allowed {schema.get('minItems', 0)}..{schema.get('maxItems')}")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], root, f"{path}[{i}]", errors)
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                _check(item, props[key], root, f"{path}.{key}", errors)
            elif extra is False:
                errors.append(f"{path}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                _check(item, extra, root, f"{path}.{key}", errors)


def write(doc: dict[str, Any], path: Path) -> None:
    """Validate, then write. An invalid sidecar is a bug in this package, never a user error."""
    errors = validate(doc)
    if errors:
        raise AssertionError("sidecar does not match sidecar.schema.json: " + "; ".join(errors[:5]))
    path.write_text(json.dumps(doc, indent=2) + "\n")
