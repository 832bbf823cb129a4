"""``mobile-sr bundle``: put exported models, with their sidecars, into a demo app's model folder.

Why a command and not "copy the files": the apps pick a backend and feed a model from its sidecar and list
models from ``models.json`` (schema: ``models.schema.json`` beside this file), so a model without a
sidecar, a stale sidecar, a failed or skipped verification or a format the app cannot run would only fail on
the phone (unverified artifacts need ``--force`` and never become the default on their own).
Every check runs before anything is written; files are staged inside the model folder and renamed into
place, and ``models.json`` is replaced in one rename, so an interrupted run leaves the old state.
Entries are keyed by name and written sorted, with no timestamps: bundling twice gives the same bytes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.files import atomic_write_text, place, sidecar_path, staging
from .core.schema import load_schema, validate
from .export.sidecar import SCHEMA_PATH as SIDECAR_SCHEMA
from .export.sidecar import measure

REPO = Path(__file__).resolve().parent.parent
MODELS_SCHEMA_PATH = Path(__file__).resolve().parent / "models.schema.json"
INDEX_NAME = "models.json"
INDEX_VERSION = 1

# format -> the name ending `mobile-sr export` gives it; a .mlpackage is a folder, everything else one file
SUFFIXES = {"tflite": ".tflite", "executorch": ".pte", "coreml": ".mlpackage", "onnx": ".onnx"}

# app -> (default app folder, model folder inside it, format -> backend the app runs it with)
APPS: dict[str, tuple[str, str, dict[str, str]]] = {
    "android": ("android_demo", "app/src/main/assets/models", {"tflite": "litert", "executorch": "executorch"}),
    "ios": ("ios_demo", "MobileSRDemo/Models", {"coreml": "coreml"}),
}


class BundleError(Exception):
    """A refusal: one line saying which artifact and why. Nothing has been written when it is raised."""


@dataclass(frozen=True)
class Item:
    """One checked artifact: where it is, its sidecar, and its models.json entry."""

    artifact: Path
    sidecar: Path
    entry: dict[str, Any]


def models_dir(app: str, app_dir: Path | None = None) -> Path:
    default_dir, sub, _ = APPS[app]
    return (app_dir if app_dir is not None else REPO / default_dir) / sub


def safe_name(name: str) -> str:
    """``name`` if it is one plain entry of a folder; refuse anything that could land outside it."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or Path(name).is_absolute() or Path(name).name != name):
        raise BundleError(f"refusing file name {name!r}: it would escape the model folder")
    return name


def digest(path: Path) -> str:
    """sha256 exactly as the sidecar records it (one implementation: ``export.sidecar.measure``)."""
    return measure(path)[1]


def check(artifact: Path, app: str, force: bool = False) -> Item:
    """Everything that must hold before ``artifact`` may go into ``app``; BundleError otherwise."""
    name = safe_name(artifact.name)
    if not artifact.exists():
        raise BundleError(f"{name}: no such file")
    side = sidecar_path(artifact)
    if not side.is_file():
        raise BundleError(f"{name}: no sidecar {side.name} beside it (export it with `mobile-sr export`)")
    try:
        doc = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{name}: sidecar {side.name} is not JSON: {exc}") from None
    errors = validate(doc, SIDECAR_SCHEMA)
    if errors:
        raise BundleError(f"{name}: sidecar {side.name} does not match sidecar.schema.json: {errors[0]}")
    if doc["model"].get("role", "upscaler") != "upscaler":
        raise BundleError(f"{name}: a {doc['model']['role']} ({doc['model']['name']}); the {app} app upscales, so "
                          "bundle the pair's upscaler (the downscaler runs on the server)")
    fmt = doc["artifact"]["format"]
    backends = APPS[app][2]
    if fmt not in backends:
        raise BundleError(f"{name}: the {app} app cannot run {fmt} models (it runs {', '.join(backends)})")
    if safe_name(doc["artifact"]["file"]) != name:
        raise BundleError(f"{name}: its sidecar describes {doc['artifact']['file']!r}, not this file")
    check_kind(artifact, fmt)
    if digest(artifact) != doc["artifact"]["sha256"]:
        raise BundleError(f"{name}: does not match the sha256 in its sidecar (changed or corrupt since export)")
    ver = doc["verification"]
    if not (ver["verified"] and ver["status"] in ("passed", "spec-only")) and not force:
        if ver["status"] == "failed":
            problem = ver["problems"][0] if ver["problems"] else "see the sidecar"
            raise BundleError(f"{name}: verification failed ({problem}); pass --force to bundle it anyway")
        how = " (exported with --no-verify)" if ver["status"] == "skipped" else f" (status {ver['status']})"
        raise BundleError(f"{name}: not verified{how}; export it again without --no-verify, or pass --force "
                          "to bundle it anyway")
    inp, out = doc["inputs"][0], doc["outputs"][0]
    entry = {
        "name": f"{_stem(name)}-{backends[fmt]}",
        "file": name,
        "sidecar": side.name,
        "backend": backends[fmt],
        "format": fmt,
        "precision": doc["artifact"]["precision"],
        "scale": doc["model"]["scale"],
        "input_size": hw(inp),
        "output_size": hw(out),
        "verified": bool(ver["verified"]),
        "set5_psnr_db": ver["set5_psnr_db"],
    }
    return Item(artifact, side, entry)


def check_kind(artifact: Path, fmt: str) -> None:
    """The artifact is what its format is on disk: a regular file (a link to one is copied as its content), or for
    Core ML a real ``.mlpackage`` folder with no symbolic link in it. A link would be followed by the copy and
    put whatever it points at (a folder named ``x.tflite``, a file outside the package) into the app."""
    name = artifact.name
    if not name.endswith(SUFFIXES[fmt]):
        raise BundleError(f"{name}: a {fmt} artifact is named *{SUFFIXES[fmt]}")
    if fmt != "coreml":
        if not artifact.is_file():
            raise BundleError(f"{name}: a folder (or a link to one), not a {fmt} file")
        return
    if artifact.is_symlink() or not artifact.is_dir():
        raise BundleError(f"{name}: not a .mlpackage folder (a symbolic link or a file); bundle the folder itself")
    links = sorted(p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_symlink())
    if links:
        raise BundleError(f"{name}: holds a symbolic link ({links[0]}); an .mlpackage is plain files")


def hw(tensor: dict[str, Any]) -> list[int]:
    """[height, width] of a sidecar tensor, whatever its layout."""
    shape = tensor["shape"]
    return [shape[1], shape[2]] if tensor["layout"] == "NHWC" else [shape[2], shape[3]]


def _stem(file_name: str) -> str:
    for ext in (".tflite", ".pte", ".onnx", ".mlpackage"):
        if file_name.endswith(ext):
            return file_name[: -len(ext)]
    return file_name


def read_index(folder: Path) -> dict[str, Any]:
    path = folder / INDEX_NAME
    if not path.exists():
        return {"schema_version": INDEX_VERSION, "default": None, "models": []}
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise BundleError(f"{path} is not JSON ({exc}); fix or delete it") from None
    errors = validate(doc, MODELS_SCHEMA_PATH)
    if errors:
        raise BundleError(f"{path} does not match models.schema.json: {errors[0]}; fix or delete it")
    return doc


def load_models_schema() -> dict[str, Any]:
    return load_schema(MODELS_SCHEMA_PATH)


def bundle(artifacts: list[Path], app: str, app_dir: Path | None = None, default: str | None = None,
           force: bool = False) -> tuple[Path, dict[str, Any]]:
    """Check every artifact, then copy them and their sidecars in and rewrite models.json; (folder, index)."""
    if app not in APPS:
        raise BundleError(f"unknown app {app!r}: android or ios")
    if not artifacts:
        raise BundleError("no artifacts given")
    items = [check(Path(a), app, force) for a in artifacts]
    names = [i.entry["name"] for i in items]
    if len(set(names)) != len(names):
        raise BundleError(f"the same model is given twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    folder = models_dir(app, app_dir)
    if not folder.parent.is_dir():
        raise BundleError(f"{folder.parent} does not exist: is {app_dir or REPO / APPS[app][0]} the {app} app?")
    folder.mkdir(exist_ok=True)
    index = read_index(folder)
    entries = {e["name"]: e for e in index["models"]}
    entries.update({i.entry["name"]: i.entry for i in items})
    by_file = {e["file"]: k for k, e in entries.items()}
    chosen = by_file.get(default, default) if default is not None else index["default"]
    if chosen is not None and chosen not in entries:
        if default is not None:
            raise BundleError(f"--default {default}: no such model (have: {', '.join(sorted(entries))})")
        chosen = None
    if chosen is None:  # the app starts on a verified model whenever there is one, never on a --force'd one
        verified = [n for n in [*names, *sorted(entries)] if entries[n]["verified"]]
        chosen = verified[0] if verified else names[0]
    new_index = {"schema_version": INDEX_VERSION, "default": chosen,
                 "models": [entries[k] for k in sorted(entries)]}
    _install(items, folder, new_index)
    return folder, new_index


def _install(items: list[Item], folder: Path, index: dict[str, Any]) -> None:
    """Stage every file inside ``folder``, then rename into place; the index last, also by rename."""
    with staging(folder, "bundle") as stage:
        for item in items:
            for src in (item.artifact, item.sidecar):
                if src.is_dir():
                    shutil.copytree(src, stage / src.name)
                else:
                    shutil.copy2(src, stage / src.name)
        for item in items:
            for src in (item.artifact, item.sidecar):
                place(stage / src.name, folder / src.name)
    atomic_write_text(folder / INDEX_NAME, json.dumps(index, indent=2) + "\n")
