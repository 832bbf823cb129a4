"""JSON documents checked against their schema (JSON Schema Draft 2020-12, by ``jsonschema``).

One validator for every document this package writes or reads back: the export sidecar, the bench
results and the apps' ``models.json``. ``jsonschema`` keeps JSON's types apart where Python does not:
``true`` is not the integer 1, so ``"schema_version": true`` is refused.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator


@lru_cache(maxsize=8)
def _validator(path: str) -> Draft202012Validator:
    schema = json.loads(Path(path).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def load_schema(path: Path) -> dict[str, Any]:
    return _validator(str(path)).schema


def validate(doc: Any, schema: Path | dict[str, Any]) -> list[str]:
    """Every way ``doc`` breaks ``schema`` (a schema file or a loaded schema), as 'path: problem' lines; empty
    when it is valid. Paths read like ``$.verification.status``."""
    if isinstance(schema, Path):
        validator = _validator(str(schema))
    else:
        Draft202012Validator.check_schema(schema)  # a broken schema is a bug, never a valid document
        validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_path(e.absolute_path)}: {e.message}" for e in errors]


def _path(parts) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out
