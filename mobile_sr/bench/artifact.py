"""What is benchmarked: an exported file and its sidecar, or a PyTorch checkpoint run eagerly.

The sidecar (``<artifact>.json``, written by ``mobile-sr export``) says what the file is: model,
scale, precision and the fixed input and output shapes. The bench reads nothing else about it, so
an artifact benchmarks the same on the host and on a phone. A checkpoint has no fixed shape; it is
run at ``input_size``, the baseline a user of the seed repositories gets from plain PyTorch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..core.files import sidecar_path
from ..core.schema import validate
from ..core.text import first_line
from ..core.text import parse_size as core_parse_size
from ..export.sidecar import SCHEMA_PATH as SIDECAR_SCHEMA
from ..export.sidecar import measure
from ..models import MODELS, ModelError, create_model, load_model
from ..models.deploy import deploy, deploy_module, profile

SUFFIXES = {".tflite": "tflite", ".pte": "executorch", ".onnx": "onnx", ".mlpackage": "coreml", ".mlmodel": "coreml"}
CHECKPOINT_SUFFIXES = (".pt", ".safetensors")


class BenchError(ValueError):
    """Bad bench input (missing file or sidecar, bad size); one line saying what to do. Exit code 2."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    format: str  # tflite | executorch | onnx | coreml | pytorch
    precision: str
    model: str | None
    scale: int
    input_size: tuple[int, int]  # LR (height, width)
    output_size: tuple[int, int]
    macs: float | None  # multiply-accumulates per inference, from the model's real layers
    module: nn.Module | None = None  # the eager model (format "pytorch" only)
    tensors: dict | None = None  # the sidecar's {"inputs": [...], "outputs": [...]}, checked against the file
    role: str = "upscaler"  # or "downscaler": a pair's server side (timed; it has no Set5 PSNR of its own)
    pair: str | None = None  # a pair's part: the pair (built-in name or checkpoint) whose downscaler makes its LR

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def output_megapixels(self) -> float:
        return self.output_size[0] * self.output_size[1] / 1e6


def open_artifact(spec: str, input_size: tuple[int, int]) -> Artifact:
    """An exported artifact (with its sidecar), a checkpoint/run folder, or a built-in model name."""
    path = Path(spec)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is not None:
        if not path.exists():
            raise BenchError(f"{spec}: no such file")
        return _from_sidecar(path, fmt)
    if path.exists() or spec in MODELS:
        if path.is_file() and path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise BenchError(f"{spec}: not an artifact ({', '.join(SUFFIXES)}) nor a checkpoint "
                             f"({', '.join(CHECKPOINT_SUFFIXES)})")
        return _from_checkpoint(spec, input_size)
    raise BenchError(f"{spec}: no such file, and not a built-in model ({', '.join(MODELS)})")


def _from_sidecar(path: Path, fmt: str) -> Artifact:
    side = sidecar_path(path)
    if not side.exists():
        raise BenchError(f"{path}: its sidecar {side.name} is missing; export with `mobile-sr export`, "
                         "which writes both")
    try:
        doc = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{side}: not JSON ({first_line(exc)})") from None
    errors = validate(doc, SIDECAR_SCHEMA)
    if errors:
        raise BenchError(f"{side}: not a mobile-sr sidecar ({errors[0]})")
    model, inp, out = doc["model"], doc["inputs"][0], doc["outputs"][0]
    if doc["artifact"]["format"] != fmt:
        raise BenchError(f"{side}: describes a {doc['artifact']['format']} artifact, but {path.name} is {fmt}")
    # As bundle does: the sidecar must describe these very bytes, or every figure it implies is a guess.
    size, digest = measure(path)
    if (size, digest) != (doc["artifact"]["bytes"], doc["artifact"]["sha256"]):
        raise BenchError(f"{path.name}: does not match the size and sha256 in its sidecar (changed, corrupt, or "
                         "the sidecar of another export); export it again")
    scale, size_out = int(model["scale"]), _hw(out)
    tensors = {k: [{key: t[key] for key in ("shape", "layout", "dtype")} for t in doc[k]] for k in ("inputs", "outputs")}
    role = model.get("role", "upscaler")
    paired = model.get("partner") is not None
    arch = _part_model(model.get("name"), role) if paired else model.get("name")
    return Artifact(path, fmt, doc["artifact"]["precision"], model.get("name"), scale, _hw(inp), size_out,
                    _macs(arch, scale, model.get("config", {}), _hw(inp) if role == "downscaler" else size_out,
                          role == "downscaler"),
                    tensors=tensors, role=role, pair=model.get("source") if paired else None)


def _part_model(pair: str | None, role: str) -> str | None:
    """The built-in architecture of a shipped pair's part (``rescale``'s upscaler is ``elsr``), or None."""
    spec = MODELS.get(pair or "")
    if spec is None or spec.role != "pair":
        return None
    return spec.default_config.get(role, {}).get("model")


def _hw(tensor: dict) -> tuple[int, int]:
    """(height, width) of a sidecar tensor (the schema allows NCHW and NHWC only)."""
    shape = tensor["shape"]
    return (int(shape[1]), int(shape[2])) if tensor["layout"] == "NHWC" else (int(shape[2]), int(shape[3]))


def _macs(name: str | None, scale: int, config: dict, size: tuple[int, int], down: bool = False) -> float | None:
    """MACs per inference of a built-in architecture at this output size (a downscaler: its HR input size);
    None for an unknown one."""
    if name not in MODELS:
        return None
    try:
        net = deploy_module(create_model(name, scale, pretrained=False, **config))
    except (ModelError, TypeError, ValueError):
        return None
    if down:
        return profile_down(net, size)
    return profile(net, scale).macs_per_output_pixel * size[0] * size[1]


def profile_down(net: nn.Module, size: tuple[int, int]) -> float:
    """MACs of one pass of a downscaler over an HR input of ``size`` (profile() counts per output pixel of an
    upscaler; a downscaler's work is counted on its input)."""
    s = net.scale
    per_lr_px = profile(net, 1 / s, size=32 * s).macs_per_output_pixel  # a 32*s HR input makes 32x32 LR pixels
    return per_lr_px * (size[0] // s) * (size[1] // s)


def _from_checkpoint(spec: str, input_size: tuple[int, int]) -> Artifact:
    try:
        model = deploy(load_model(spec))
        net = model.upscaler
    except ModelError as exc:
        raise BenchError(str(exc)) from None
    paired = model.role == "pair"
    scale = int(model.scale)
    h, w = input_size
    size_out = (h * scale, w * scale)
    macs = profile(net, scale).macs_per_output_pixel * size_out[0] * size_out[1]
    path = Path(spec) if Path(spec).exists() else Path(f"{spec}_x{scale}")
    return Artifact(path, "pytorch", "fp32", model.name, scale, (h, w), size_out, macs, net,
                    pair=spec if paired else None)


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` or ``N`` -> (H, W) for checkpoints, which have no fixed input shape."""
    try:
        return core_parse_size(text, 1, 4096)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
