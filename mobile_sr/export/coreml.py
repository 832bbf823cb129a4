"""Core ML ML Program (``.mlpackage``) from a ``torch.export`` graph.

fp16 (the default; what the GPU and Neural Engine run) and fp32 need iOS15 (ML Program). int8 is the
PT2E graph of :mod:`.pt2e` converted as is: int8 weights (``constexpr_affine_dequantize``) and int8
activations (``quantize``/``dequantize``), which needs iOS17; on A17/M4 and later the Neural Engine runs
int8 x int8. I/O stays float32 NCHW in every case.

``MLModel.predict`` exists only on macOS, so on Linux :func:`load` checks the spec instead: input and
output names, shapes and dtypes, and the dtype of every convolution's weights.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .common import Loaded, OpsReport, TensorInfo
from .pt2e import quantize_pt2e

INPUT, OUTPUT = "input", "output"
TARGETS = {"fp32": "iOS15", "fp16": "iOS15", "int8": "iOS17"}  # the oldest OS whose Core ML has every op used


def export(wrapper: nn.Module, example: torch.Tensor, precision: str, calib: Sequence[torch.Tensor] | None,
           dest: Path) -> OpsReport | None:
    import coremltools as ct

    module: nn.Module = wrapper
    if precision == "int8":
        assert calib is not None
        module = quantize_pt2e(wrapper, example, calib)
    program = torch.export.export(module, (example,)).run_decompositions({})
    model = ct.convert(
        program,
        inputs=[ct.TensorType(name=INPUT, shape=tuple(example.shape), dtype=np.float32)],
        outputs=[ct.TensorType(name=OUTPUT, dtype=np.float32)],
        convert_to="mlprogram",
        minimum_deployment_target=getattr(ct.target, TARGETS[precision]),
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
    )
    model.save(str(dest))
    return None


def load(path: Path, threads: int = 1) -> Loaded:
    """Check the spec; on macOS also open the model so it can be run."""
    import coremltools as ct
    from coremltools.proto import MIL_pb2

    spec = ct.utils.load_spec(str(path))
    ios = {int(t.value): t.name for t in ct.target}.get(spec.specificationVersion, "?")
    inputs = [_info(d) for d in spec.description.input]
    outputs = [_info(d) for d in spec.description.output]
    main = spec.mlProgram.functions["main"]
    ops = list(main.block_specializations[main.opset].operations)
    producers = {o.name: op for op in ops for o in op.outputs}

    weight_dtypes = set()
    for op in ops:
        if op.type in ("conv", "conv_transpose"):
            src = producers[op.inputs["weight"].arguments[0].name]
            typed = src.attributes["quantized_data"] if src.type.startswith("constexpr") else src.outputs[0]
            weight_dtypes.add(MIL_pb2.DataType.Name(typed.type.tensorType.dataType).lower())
    problems = [f"input {i.name}: {i.dtype}, not float32" for i in inputs if i.dtype != "float32"]
    problems += [f"output {o.name}: {o.dtype}, not float32" for o in outputs if o.dtype != "float32"]
    if [i.name for i in inputs] != [INPUT] or [o.name for o in outputs] != [OUTPUT]:
        problems.append(f"I/O names {[i.name for i in inputs]} -> {[o.name for o in outputs]}, not {INPUT} -> {OUTPUT}")
    types = [op.type for op in ops if op.type != "const"]
    run = None
    if sys.platform == "darwin":  # pragma: no cover - Core ML runs only on Apple platforms
        model = ct.models.MLModel(str(path))
        run = lambda x: model.predict({INPUT: x.astype(np.float32)})[OUTPUT]  # noqa: E731
    return Loaded(
        runtime=f"Core ML spec {spec.specificationVersion} ({ios}+, {main.opset})"
        + ("" if run else "; spec checked, predict needs macOS"),
        inputs=inputs,
        outputs=outputs,
        run=run,
        problems=problems,
        weight_dtypes=sorted(weight_dtypes),
        int8_activations="quantize" in types and "dequantize" in types,
    )


def _info(desc) -> TensorInfo:  # desc: Model_pb2.FeatureDescription
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    arr = desc.type.multiArrayType
    dtype = ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower()
    return TensorInfo(desc.name, [int(d) for d in arr.shape], "NCHW", dtype)
