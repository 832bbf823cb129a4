"""ONNX: fp32 from PyTorch's TorchScript-based exporter; int8 as QDQ from onnxruntime's static quantization.

Why the TorchScript exporter (``dynamo=False``): the torch.export-based one needs onnxscript, which is
no dependency of ours, and for these conv nets both give the same plain Conv/PRelu/ConvTranspose/Clip
graph. The ONNX file is also the input of the TFLite route (onnx2tf).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .common import Loaded, OpsReport, TensorInfo

INPUT, OUTPUT = "input", "output"
OPSET = 17  # the newest opset onnx2tf 1.28 and onnxruntime both cover fully for these ops


def to_onnx(wrapper: nn.Module, example: torch.Tensor, dest: Path) -> None:
    """Write the fp32 graph with a fixed input shape (phones run fixed tiles).

    Constant nodes (the exporter's form for non-persistent buffers such as ELSR's anchor weights)
    become initializers: onnxruntime's quantizer treats only initializers as weights and would
    otherwise quantize such a weight at run time, in float storage.
    """
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": deliberate, see module doc
        torch.onnx.export(wrapper, (example,), str(dest), input_names=[INPUT], output_names=[OUTPUT],
                          opset_version=OPSET, dynamo=False)
    model = onnx.load(str(dest))
    for node in list(model.graph.node):
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
            model.graph.node.remove(node)
    onnx.save(model, str(dest))


def export(wrapper: nn.Module, example: torch.Tensor, precision: str, calib: torch.Tensor | None,
           dest: Path) -> OpsReport | None:
    """fp32, or int8 QDQ (per-channel int8 weights, int8 activations calibrated by min/max on ``calib``)."""
    if precision == "fp32":
        to_onnx(wrapper, example, dest)
        return None
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    assert calib is not None
    fp32 = dest.with_name(dest.name + ".fp32.onnx")
    to_onnx(wrapper, example, fp32)
    grid = {"scale": np.array(1 / 255, np.float32), "zero_point": np.array(-128, np.int8)}  # the 8-bit image's
    pinned = {name: [grid] for name in _clamped_output(fp32)}
    quantize_static(str(fp32), str(dest), _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, extra_options={"TensorQuantOverrides": pinned})
    fp32.unlink()
    return None


_TO_OUTPUT = {"Clip", "DepthToSpace", "Reshape", "Transpose", "Identity"}  # move or clamp values, compute none


def _clamped_output(path: Path) -> list[str]:
    """The last computed tensor before the graph's Clip(0, 1) output (through the pixel shuffle), if there is one.

    Its int8 range is pinned at [0, 1], scale 1/255, the 8-bit image's own grid, as ``models.quant.pin_output_range``
    pins it for PT2E (why: there). MinMax would calibrate it to the pre-clamp range, wider than what is kept."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    producer = {out: n for n in graph.node for out in n.output}
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    name, clamped = graph.output[0].name, False
    while (node := producer.get(name)) is not None and node.op_type in _TO_OUTPUT:
        if node.op_type == "Clip":
            bounds = [float(consts[i]) if i in consts else None for i in node.input[1:3]]
            clamped = clamped or bounds == [0.0, 1.0]
        name = node.input[0]
    return [name] if clamped and node is not None else []


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over our (N, 3, H, W) batch."""

    def __init__(self, calib: torch.Tensor) -> None:
        self._items = iter([{INPUT: x[None].numpy()} for x in calib])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def load(path: Path, threads: int = 1) -> Loaded:
    """Open in ONNX Runtime (CPU execution provider); it does not report any delegation."""
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {inp.name: x.astype(np.float32)})[0]

    weights, int8_acts = _conv_dtypes(onnx.load(str(path)))
    return Loaded(
        runtime=f"onnxruntime {ort.__version__} (CPU)",
        inputs=[TensorInfo(inp.name, list(inp.shape), "NCHW", "float32")],
        outputs=[TensorInfo(out.name, list(out.shape), "NCHW", "float32")],
        run=run,
        weight_dtypes=weights,
        int8_activations=int8_acts,
    )


def _conv_dtypes(model) -> tuple[list[str], bool]:  # model: onnx.ModelProto
    """Stored dtypes of the Conv/ConvTranspose weights (behind a DequantizeLinear in QDQ graphs), and
    whether every convolution reads a dequantized int8 tensor."""
    from onnx.helper import tensor_dtype_to_np_dtype

    dtypes = {t.name: tensor_dtype_to_np_dtype(t.data_type).name for t in model.graph.initializer}
    dq = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    weights = {dtypes.get(dq.get(n.input[1], n.input[1]), "computed") for n in convs}
    return sorted(weights), bool(convs) and all(n.input[0] in dq for n in convs)
