"""Export a model for phones: one table of formats, and one loop that exports, times, verifies and
describes every artifact the same way.

Each format module has ``export(wrapper, example, precision, calib, dest) -> OpsReport | None`` and
``load(path, threads) -> Loaded``; everything else (naming, calibration, verification, the sidecar,
atomic placement) happens here, once.

Atomic output: an artifact is written and verified inside a hidden temporary folder in the output
folder, and only then renamed to its final name (``os.replace``, atomic on one file system), its
sidecar last. A crash or a kill leaves at most a ``.<name>.*`` temporary folder, never a partial
file under a final name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.files import check_writable_dir, place, sidecar_path, staging
from ..core.text import parse_size as core_parse_size
from ..data.calib import MAX_SIDE as CALIB_MAX_SIDE
from ..data.calib import CalibError, CalibSet, load_calib
from ..data.datasets import load_benchmark
from ..models import Model
from ..models.deploy import ExportWrapper, deploy
from . import coreml, executorch, onnx, tflite
from . import sidecar as sc
from .common import ExportError, Loaded, OpsReport, require, versions
from .dfq import prepare
from .verify import MIN_SIDE, DownReference, Reference, Verification, verify_artifact, verify_downscaler

__all__ = ["FORMATS", "DEFAULT_SIZE", "ExportError", "Result", "export", "parse_size", "parse_targets"]

DEFAULT_SIZE = (256, 256)  # LR tile side: a 512x512 output at x2, small enough for any phone NPU/GPU
MAX_SIDE = CALIB_MAX_SIDE  # the calibration set keeps no more than this


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    extra: str  # pip extra that installs the converter and runtime
    modules: tuple[str, ...]  # what the extra must provide (checked before any work starts)
    precisions: tuple[str, ...]  # the first one is the default
    int8_extra: str | None  # another format whose extra int8 needs too (Core ML int8 uses ExecuTorch's PT2E)
    tools: tuple[str, ...]  # distributions whose versions go into the sidecar
    export: Callable[..., OpsReport | None]
    load: Callable[[Path, int], Loaded]
    # int8 calibrates on the images at their own size (CalibSet.native, a list), not on the export-size batch:
    # PT2E graphs run at any size (export/pt2e.py), ONNX Runtime calibrates a copy of the graph with dynamic
    # height and width (export/onnx.py); the TFLite converter takes the batch.
    calib_native: bool = False


FORMATS: dict[str, Format] = {
    "tflite": Format("tflite", ".tflite", "tflite", tflite.MODULES, ("fp32", "fp16", "int8", "int8io"), None,
                     ("onnx", "onnx2tf", "tensorflow", "ai-edge-litert"), tflite.export, tflite.load),
    "executorch": Format("executorch", ".pte", "executorch", ("executorch", "torchao"), ("fp32", "int8"), None,
                         ("executorch", "torchao"), executorch.export, executorch.load, calib_native=True),
    "coreml": Format("coreml", ".mlpackage", "coreml", ("coremltools",), ("fp16", "fp32", "int8"), "executorch",
                     ("coremltools", "executorch", "torchao"), coreml.export, coreml.load, calib_native=True),
    "onnx": Format("onnx", ".onnx", "onnx", ("onnx", "onnxruntime"), ("fp32", "int8"), None,
                   ("onnx", "onnxruntime"), onnx.export, onnx.load, calib_native=True),
}


@dataclass
class Result:
    path: Path
    format: str
    precision: str
    bytes: int
    seconds: float
    verification: Verification
    ops: OpsReport | None


def parse_targets(values: list[str] | tuple[str, ...]) -> list[str]:
    """Target names (repeatable, comma-separated allowed, ``all``) in table order, without duplicates."""
    names = {v.strip().lower() for value in values for v in value.split(",") if v.strip()}
    if "all" in names:
        return list(FORMATS)
    unknown = sorted(names - set(FORMATS))
    if unknown or not names:
        raise ExportError(f"unknown target {', '.join(unknown) or '(none)'}; use --target with one or more of: "
                          f"{', '.join(FORMATS)}, all")
    return [name for name in FORMATS if name in names]


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` or ``N`` (square) -> (H, W), within what the exporters and the tiled check support."""
    try:
        return core_parse_size(text, MIN_SIDE, MAX_SIDE)
    except ValueError as exc:
        raise ExportError(f"{exc} (phones run fixed LR tiles; e.g. {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})") from None


def precision_for(fmt: Format, int8: bool, fp16: bool, int8_io: bool) -> str:
    if int8 and fp16:
        raise ExportError("--int8 and --fp16 exclude each other; pick one")
    wanted = "int8io" if int8_io else "int8" if int8 else "fp16" if fp16 else fmt.precisions[0]
    if wanted not in fmt.precisions:
        flag = "--int8-io" if int8_io else "--fp16" if fp16 else "--int8"
        raise ExportError(f"{fmt.name} cannot export {wanted} ({flag}); it supports {', '.join(fmt.precisions)}")
    return wanted


def artifact_name(model_name: str, scale: int, size: tuple[int, int], precision: str, suffix: str,
                  part: str = "upscaler") -> str:
    tag = "-downscaler" if part == "downscaler" else ""
    return f"{model_name}{tag}_x{scale}_{size[0]}x{size[1]}_{precision}{suffix}"


def check_part(model: Model, part: str, size: tuple[int, int], plan: list[tuple[Format, str]]) -> None:
    """What may be exported: the phone's upscaler of any model, or a pair's downscaler in float at an HR size
    that divides by the scale."""
    if part == "upscaler":
        if model.role == "downscaler":
            raise ExportError(f"{model.name} is a downscaler: it runs on the server, and export is for the phone's "
                              "upscaler (export a pair to get its upscaler)")
        return
    if model.role != "pair":
        raise ExportError(f"--part downscaler: {model.name} is an {model.role}; only a pair (e.g. rescale) has a "
                          "learned downscaler to export")
    if any(p in ("int8", "int8io") for _, p in plan):
        raise ExportError("--part downscaler exports in float (fp32/fp16): an int8 downscaler would lose the fine "
                          "detail its LR carries for the upscaler")
    if size[0] % int(model.scale) or size[1] % int(model.scale):
        raise ExportError(f"--input-size {size[0]}x{size[1]}: a x{model.scale:g} downscaler's HR input must "
                          f"divide by {model.scale:g}")


def export(model: Model, targets: list[str], *, int8: bool = False, fp16: bool = False,
           int8_io: bool = False, size: tuple[int, int] = DEFAULT_SIZE, calib_dir: str | Path | None = None,
           out_dir: str | Path = "exports", check: bool = True,
           on_result: Callable[[Result], None] | None = None, part: str = "upscaler") -> list[Result]:
    """Export the deployed ``model`` to every target. All input problems raise ExportError before any work starts.

    ``part="downscaler"`` exports a pair's downscaler instead (``size`` is then its HR input): for servers
    (ONNX) and for phones that downscale before uploading (TFLite). It is verified end to end: its 8-bit LR,
    restored by the pair's PyTorch upscaler, must score what the PyTorch downscaler's LR scores.

    ``check=False`` (``--no-verify``) still opens each artifact in its runtime to describe its I/O in
    the sidecar, but runs nothing.
    """
    plan = [(FORMATS[t], precision_for(FORMATS[t], int8, fp16, int8_io)) for t in targets]
    for fmt, precision in plan:
        require(fmt.extra, *fmt.modules)
        if fmt.int8_extra and precision in ("int8", "int8io"):
            require(f"{fmt.extra},{fmt.int8_extra}", *FORMATS[fmt.int8_extra].modules)
    check_part(model, part, size, plan)
    if check:
        try:
            load_benchmark("Set5", model.scale)
        except FileNotFoundError:
            raise ExportError(f"no Set5 x{model.scale} to verify against (it ships x2, x3, x4); "
                              "pass --no-verify") from None
    needs_calib = any(p in ("int8", "int8io") for _, p in plan)
    try:
        calib: CalibSet | None = load_calib(calib_dir) if needs_calib or calib_dir is not None else None
    except CalibError as exc:
        raise ExportError(str(exc)) from None

    model = deploy(model)
    # A pair's phone side (or its server side); the graph, MACs and figures are those of the deployed module.
    net = model.downscaler if part == "downscaler" else model.upscaler
    wrapper = ExportWrapper(net).eval()
    h, w = size
    example = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    batch = calib.batch(h, w) if calib is not None and needs_calib else None
    native = calib.native(h, w) if calib is not None and needs_calib else None  # the same pixels, each once
    # int8 exports convert an equalized, bias-corrected copy (dfq.py); float exports the model itself.
    # Its statistics come from the batch the static-graph quantizers calibrate on; PT2E's `native` images hold the
    # same pixels without the mirrored repeats, so every quantizer sees the activations the preparation saw.
    # Weights trained quantization-aware (train --qat) already sit on the int8 grid: adjusting them again would
    # undo what QAT learned, so they are converted as they are, calibrated on the same batch.
    int8_wrapper = None if batch is None else ExportWrapper(net if model.qat else prepare(net, batch),
                                                            qat=model.qat).eval()
    threads = torch.get_num_threads()
    ref: Reference | DownReference | None = None  # PyTorch's tiled Set5, computed once, when a runtime can use it
    out = Path(out_dir)
    try:  # before minutes of conversion, not after
        out.mkdir(parents=True, exist_ok=True)
        check_writable_dir(out, "output folder")
    except OSError as exc:
        raise ExportError(f"-o {out}: {exc.strerror or exc}") from None

    results = []
    for fmt, precision in plan:
        name = artifact_name(model.name, model.scale, size, precision, fmt.suffix, part)
        with staging(out, name) as tmp:
            staged = tmp / name
            t0 = time.perf_counter()
            quantized = precision in ("int8", "int8io")
            fmt_calib = (native if fmt.calib_native else batch) if quantized else None
            ops = fmt.export(int8_wrapper if quantized else wrapper, example, precision, fmt_calib, staged)
            seconds = time.perf_counter() - t0
            loaded = fmt.load(staged, threads)
            ops = loaded.ops or ops  # the runtime's own report wins over the export-time one
            if check and ref is None and loaded.run is not None:  # a pair's upscaler is scored on its own LR
                ref = (DownReference.of(wrapper, model.upscaler, model.scale, h, w) if part == "downscaler"
                       else Reference.of(wrapper, model.scale, h, w, model.downscaler))
            if not check:
                checked = Verification("skipped", loaded.runtime)
            elif part == "downscaler":
                checked = verify_downscaler(loaded, precision, ref)  # type: ignore[arg-type]
            else:
                checked = verify_artifact(loaded, precision, ref, model.scale)  # type: ignore[arg-type]
            doc = sc.build(artifact=staged, fmt=fmt.name, precision=precision, model=model,
                           loaded=loaded, seconds=seconds, tools=versions("torch", "mobile-sr", *fmt.tools),
                           min_runtime=coreml.TARGETS[precision] if fmt.name == "coreml" else None,
                           calib=calib if quantized else None, size=size,
                           verification=checked, ops=ops, part=part)
            sc.write(doc, sidecar_path(staged))
            place(staged, out / name)
            place(sidecar_path(staged), sidecar_path(out / name))  # the sidecar last: it vouches for the file
        results.append(Result(out / name, fmt.name, precision, doc["artifact"]["bytes"], seconds, checked, ops))
        if on_result is not None:
            on_result(results[-1])
    return results
