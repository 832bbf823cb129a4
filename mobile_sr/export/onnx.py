"""ONNX: fp32 from PyTorch's TorchScript-based exporter; int8 as QDQ from onnxruntime's static quantization.

Why the TorchScript exporter (``dynamo=False``): the torch.export-based one needs onnxscript, which is
no dependency of ours, and for these conv nets both give the same plain Conv/PRelu/ConvTranspose/Clip
graph. The ONNX file is also the input of the TFLite route (onnx2tf).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .common import Loaded, OpsReport, TensorInfo

INPUT, OUTPUT = "input", "output"
OPSET = 17  # the newest opset onnx2tf 1.28 and onnxruntime both cover fully for these ops
CALIB_PERCENTILE = 99.999  # int8 activation ranges: this percentile of |values| of each tensor (see export)


def to_onnx(wrapper: nn.Module, example: torch.Tensor, dest: Path, any_size: bool = False) -> None:
    """Write the fp32 graph with a fixed input shape (phones run fixed tiles); ``any_size``: with dynamic height
    and width instead (the graph int8 calibration runs, on each image at its own size).

    Constant nodes (the exporter's form for non-persistent buffers such as ELSR's anchor weights)
    become initializers: onnxruntime's quantizer treats only initializers as weights and would
    otherwise quantize such a weight at run time, in float storage.
    """
    import onnx

    axes = {INPUT: {2: "height", 3: "width"}, OUTPUT: {2: "out_height", 3: "out_width"}} if any_size else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": deliberate, see module doc
        torch.onnx.export(wrapper, (example,), str(dest), input_names=[INPUT], output_names=[OUTPUT],
                          opset_version=OPSET, dynamo=False, dynamic_axes=axes)
    model = onnx.load(str(dest))
    for node in list(model.graph.node):
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
            model.graph.node.remove(node)
    onnx.save(model, str(dest))


def export(wrapper: nn.Module, example: torch.Tensor, precision: str, calib: list[torch.Tensor] | None,
           dest: Path) -> OpsReport | None:
    """fp32, or int8 QDQ (per-channel int8 weights, int8 activations calibrated on ``calib``).

    Activation ranges reach the 99.999th percentile of each tensor's |values| over the calibration images
    (``CALIB_PERCENTILE``: ORT's percentile calibration, clipped to the tensor's min and max), not its min/max:
    a few extreme values would otherwise set the step of every value. Measured, Set5 x2 int8 loss at 256x256,
    min/max -> percentile: ``ofa-m`` 0.101 -> 0.057 dB, ``ofa-s`` 0.078 -> 0.048, ``ofa-l`` 0.088 -> 0.059,
    ELSR 0.155 -> 0.094, FSRCNN 1.32 -> 1.28. ORT's entropy calibration gave min/max's figure, and tighter
    percentiles lose more (``ofa-m``: 99.99 0.062, 99.95 0.137, 99.9 0.224 dB). A model trained with ``--qat``
    keeps min/max: it learned its ranges against min/max fake-quantizers, and trimming them costs it (``rescale``
    x2 after QAT, 64x64: 0.34 dB lost against min/max's < 0.3).

    The ranges are observed on each image at its own size (``calib``: ``CalibSet.native``), through a copy of the
    graph with dynamic height and width, as PT2E observes them: a histogram of a 96x96 crop mirrored to 256x256
    counts the same pixels 7 times (``ofa-m`` at 256x256: 46 s against 6.7 s, for 0.005 dB). They reach the
    fixed-size graph through ORT's calibration cache, keyed by tensor name, which both graphs share."""
    if precision == "fp32":
        to_onnx(wrapper, example, dest)
        return None
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    assert calib is not None
    fp32, ranges = dest.with_name(dest.name + ".fp32.onnx"), dest.with_name(dest.name + ".ranges.json")
    to_onnx(wrapper, example, fp32)
    method = CalibrationMethod.MinMax if getattr(wrapper, "qat", False) else CalibrationMethod.Percentile
    _calibrate(wrapper, calib, method, dest.with_name(dest.name + ".calib.onnx"), ranges)
    grid = {"scale": np.array(1 / 255, np.float32), "zero_point": np.array(-128, np.int8)}  # the 8-bit image's
    # The input is an 8-bit image: its grid, not a percentile that cuts the brightest levels (scale 0.99954/255).
    pinned = {name: [grid] for name in [INPUT, *_clamped_output(fp32)]}
    quantize_static(str(fp32), str(dest), None, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method, calibration_cache_path=str(ranges),
                    extra_options={"TensorQuantOverrides": pinned})
    fp32.unlink()
    ranges.unlink()
    return None


def _calibrate(wrapper: nn.Module, images: list[torch.Tensor], method: object, graph: Path, dest: Path) -> None:
    """The ranges of every tensor ORT quantizes (``method``: percentile or min/max), over ``images`` each at its
    own size, written to ``dest`` as ORT's calibration cache. One image at a time: the histogram calibrator keeps
    every intermediate tensor of what it is fed until it bins it."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    to_onnx(wrapper, images[0][None], graph, any_size=True)
    with tempfile.TemporaryDirectory(prefix="ort.calib.") as tmp:
        calibrator = create_calibrator(graph, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method,
                                       extra_options={"percentile": CALIB_PERCENTILE}
                                       if method == CalibrationMethod.Percentile else {})
        with contextlib.redirect_stdout(io.StringIO()):  # the percentile calibrator prints its settings
            for img in images:
                calibrator.collect_data(_Reader([img]))
            save_tensors_data(calibrator.compute_data(), dest)
        del calibrator
    graph.unlink()


_TO_OUTPUT = {"Clip", "DepthToSpace", "Reshape", "Transpose", "Identity"}  # move or clamp values, compute none


def _clamped_output(path: Path) -> list[str]:
    """The last computed tensor before the graph's Clip(0, 1) output (through the pixel shuffle), if there is one.

    Its int8 range is pinned at [0, 1], scale 1/255, the 8-bit image's own grid, as ``models.quant.pin_output_range``
    pins it for PT2E (why: there). Calibration would set it to the pre-clamp range, wider than what is kept."""
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
    """onnxruntime's CalibrationDataReader protocol over a list of (3, H, W) images."""

    def __init__(self, images: list[torch.Tensor]) -> None:
        self._items = iter([{INPUT: x[None].numpy()} for x in images])

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
