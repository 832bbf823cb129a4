"""TFLite: PyTorch -> ONNX -> onnx2tf (Keras graph, NHWC) -> TFLiteConverter, run by the LiteRT interpreter.

Why we call TFLiteConverter ourselves instead of onnx2tf's ``output_integer_quantized_tflite``: that flag
writes seven variants (fp32, fp16, dynamic range, int8, full int8, two int16) with up to four
calibration passes, where one is wanted; and its calibration normalises with ImageNet mean/std unless
told otherwise. Here onnx2tf only translates the graph (``disable_model_save``) and the converter is fed
our calibration batch as NHWC RGB in [0, 1], no mean/std: exactly what the app feeds.

Offline: onnx2tf downloads 20 sample images (``download_test_image_data``) for a shape check whenever
the input is 4-D with 3 channels. :func:`_offline_samples` hands it our own images instead, so the
conversion never opens a socket (a test runs it with sockets blocked).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.deploy import ExportWrapper
from .common import Loaded, OpsReport, TensorInfo, dequantize, quantize
from .onnx import CALIB_PERCENTILE, to_onnx

MODULES = ("onnx", "onnx_graphsurgeon", "onnx2tf", "tensorflow", "tf_keras", "psutil", "ai_edge_litert")


def export(wrapper: nn.Module, example: torch.Tensor, precision: str, calib: torch.Tensor | None,
           dest: Path) -> OpsReport | None:
    """fp32, fp16 (fp16 weights), int8 (int8 weights and activations, float I/O) or int8io (int8 I/O too)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    onnx_path = dest.with_name(dest.name + ".onnx")
    # int8: the clamp to [0, 1] becomes the output's fake-quantization on [0, 1] (see the docstring of _on_image_grid)
    int8 = precision in ("int8", "int8io") and isinstance(wrapper, ExportWrapper)
    to_onnx(wrapper.model if int8 else wrapper, example, onnx_path)
    keras_model = _to_keras(onnx_path, nhwc(example.numpy()), dest.parent / "onnx2tf")
    fn = tf.function(_on_image_grid(keras_model) if int8 else lambda x: keras_model(x),
                     input_signature=[tf.TensorSpec(t.shape, t.dtype, t.name) for t in keras_model.inputs])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], keras_model)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision in ("int8", "int8io"):
        assert calib is not None
        samples = nhwc(calib.numpy())
        assert samples.min() >= 0.0 and samples.max() <= 1.0, "calibration data must be RGB in [0, 1]"
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([s[None]] for s in samples)
        if not getattr(wrapper, "qat", False):  # percentile ranges (see _quantize); QAT keeps min/max, as in onnx.py
            converter._experimental_calibrate_only = True  # the converter's own min/max pass, then ours
            dest.write_bytes(_quantize(converter.convert(), samples, tf.int8 if precision == "int8io" else tf.float32))
            onnx_path.unlink()
            return None
        if precision == "int8io":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    dest.write_bytes(converter.convert())
    onnx_path.unlink()
    return None


def _quantize(calibrated: bytes, samples: np.ndarray, io_type) -> bytes:
    """The int8 model of a calibrated one (the converter's ``_experimental_calibrate_only`` output: the float graph
    with each activation's min/max), its ranges first narrowed to the 99.999th percentile of |values|.

    Why: TFLite's converter has min/max calibration only, where a few extreme values set the step of all the others;
    ONNX Runtime's percentile calibration (``onnx.CALIB_PERCENTILE``, the same percentile here) halved its loss.
    The ranges are the percentile of each tensor's |values| over ``samples``, clipped to its min and max, as ORT
    computes them. Left as calibrated: the graph's input (the 8-bit image's [0, 1]) and the tensor the output's
    fake-quantization reads (its range is the image's, see :func:`_on_image_grid`). Then the converter's own
    quantizer (``mlir_quantize``, what ``convert()`` calls after calibrating) writes the int8 graph."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.python.convert import mlir_quantize
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    graph = model.subgraphs[0]
    codes = [c.builtinCode for c in model.operatorCodes]
    quantize_op = flatbuffer_utils.schema_fb.BuiltinOperator.QUANTIZE
    fixed = set(graph.inputs) | {int(op.inputs[0]) for op in graph.operators if codes[op.opcodeIndex] == quantize_op}
    ranges = {i: (float(t.quantization.min[0]), float(t.quantization.max[0])) for i, t in enumerate(graph.tensors)
              if i not in fixed and t.quantization is not None and t.quantization.min is not None
              and len(t.quantization.min) == 1}
    tops = {i: max(abs(lo), abs(hi)) or 1.0 for i, (lo, hi) in ranges.items()}  # each histogram spans [0, top]
    # No delegate: XNNPACK would keep the intermediate tensors to itself.
    interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    bins = 2048  # ORT's default for its percentile calibration
    hist = {i: np.zeros(bins, np.int64) for i in ranges}
    for sample in samples:
        interp.set_tensor(graph.inputs[0], sample[None])
        interp.invoke()
        for i, top in tops.items():
            idx = np.minimum((np.abs(interp.get_tensor(i)) * (bins / top)).astype(np.int64), bins - 1)
            hist[i] += np.bincount(idx.ravel(), minlength=bins)
    for i, (lo, hi) in ranges.items():
        cdf = np.cumsum(hist[i]) / hist[i].sum()
        edge = (int(np.searchsorted(cdf, CALIB_PERCENTILE / 100)) + 1) * tops[i] / bins
        q = graph.tensors[i].quantization
        q.min, q.max = np.array([max(lo, -edge)], np.float32), np.array([min(hi, edge)], np.float32)
    return mlir_quantize(bytes(flatbuffer_utils.convert_object_to_bytearray(model)),
                         input_data_type=io_type, output_data_type=io_type)


def _on_image_grid(keras_model):  # -> a function x -> image
    """The unclamped model followed by TF's fake-quantization on [0, 1] at 8 bits, for the int8 converter.

    Why: the converter takes a fake-quant op's range as the range of the tensor it quantizes, so the model's last
    tensor (the add or convolution before the pixel shuffle, which shares its scale) is quantized at 1/255 from 0,
    the 8-bit image's own grid, as ``models.quant.pin_output_range`` does for PT2E. Saturating at that range *is* the
    clamp: the clamp's int8 MINIMUM and RELU, which XNNPACK does not take (they ran outside the delegate, a
    partition boundary at the output: `ofa-m` x2 int8 34/36 delegated, now 34/34 and 7% less CPU time per run), are
    gone. A calibrated range would reach past [0, 1] (the clamp's MINIMUM keeps its input's scale, -0.27 to 1.0 for
    `rescale` x2)."""
    import tensorflow as tf

    return lambda x: tf.quantization.fake_quant_with_min_max_args(keras_model(x), min=0.0, max=1.0, num_bits=8)


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32)


def _to_keras(onnx_path: Path, samples_nhwc: np.ndarray, workdir: Path):  # -> tf_keras.Model
    """onnx2tf's graph translation only, after two graph fixes that onnx2tf 1.28 needs for PReLU:
    constants are folded (the TorchScript exporter shares equal slopes through Identity nodes),
    and (C, 1, 1) slopes become (1, C, 1, 1), the rank-4 form onnx2tf maps onto NHWC."""
    import onnx
    import onnx2tf
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(onnx.load(str(onnx_path)))
    graph.fold_constants().cleanup()
    for node in graph.nodes:
        slope = node.inputs[1] if node.op == "PRelu" else None
        if isinstance(slope, gs.Constant) and slope.values.ndim == 3:
            node.inputs[1] = gs.Constant(f"{slope.name}_rank4", slope.values[None])
    with _offline_samples(samples_nhwc):
        return onnx2tf.convert(onnx_graph=onnx.shape_inference.infer_shapes(gs.export_onnx(graph)),
                               output_folder_path=str(workdir),
                               disable_model_save=True, non_verbose=True, verbosity="error")


@contextlib.contextmanager
def _offline_samples(samples_nhwc: np.ndarray) -> Iterator[None]:
    """Replace onnx2tf's sample-image download by our images for the duration of one conversion."""
    import onnx2tf.onnx2tf as o2t

    original = o2t.download_test_image_data
    o2t.download_test_image_data = lambda: samples_nhwc
    try:
        yield
    finally:
        o2t.download_test_image_data = original


def load(path: Path, threads: int = 1) -> Loaded:
    """Open in the LiteRT interpreter (XNNPACK delegate applied by default, as on a phone's CPU)."""
    from ai_edge_litert import __version__ as litert_version
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    in_info, out_info = _info(inp), _info(out)

    def run(x: np.ndarray) -> np.ndarray:
        v = nhwc(x)
        if in_info.quant:
            v = quantize(v, in_info.quant, inp["dtype"])
        interp.set_tensor(inp["index"], v)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out_info.quant:
            y = dequantize(y, out_info.quant)
        return y.astype(np.float32).transpose(0, 3, 1, 2)

    try:  # the interpreter's only node listing; private, hence the guard
        nodes = interp._get_ops_details()
    except AttributeError:
        return Loaded(f"LiteRT {litert_version} (XNNPACK)", [in_info], [out_info], run)
    weights, int8_acts = _conv_dtypes(interp, nodes)
    return Loaded(f"LiteRT {litert_version} (XNNPACK)", [in_info], [out_info], run, _delegation(nodes),
                  weight_dtypes=weights, int8_activations=int8_acts)


def _info(detail: dict) -> TensorInfo:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero = detail["quantization"]
    quant = (float(scale), int(zero)) if dtype in ("int8", "uint8") else None
    return TensorInfo(detail["name"], [int(d) for d in detail["shape"]], "NHWC", dtype, quant)


def _conv_dtypes(interp, nodes: list[dict]) -> tuple[list[str], bool]:
    """Stored dtypes of the convolution weights (through a DEQUANTIZE for fp16) and whether every
    convolution reads int8 activations. TFLite puts the weights at input 1 and the activations at
    input 0 (CONV_2D) or 2 (TRANSPOSE_CONV)."""
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    dequant = {int(n["outputs"][0]): int(n["inputs"][0]) for n in nodes if n["op_name"] == "DEQUANTIZE"}
    weights, acts = set(), []
    for n in nodes:
        if n["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
            w = int(n["inputs"][1])
            weights.add(dtypes[dequant.get(w, w)])
            acts.append(dtypes[int(n["inputs"][2 if n["op_name"] == "TRANSPOSE_CONV" else 0])] == "int8")
    return sorted(weights), bool(acts) and all(acts)


def _delegation(nodes: list[dict]) -> OpsReport:
    """Which ops the XNNPACK delegate took, from the interpreter's node list.

    After delegation the node list holds the original ops plus one DELEGATE node per partition.
    A partition covers the ops between its inputs and outputs, so walking back from each DELEGATE's
    outputs to its inputs finds its ops; the others run on TFLite's own kernels.
    """
    ops = {n["index"]: n for n in nodes if n["op_name"] != "DELEGATE"}
    producer = {int(t): i for i, n in ops.items() for t in n["outputs"]}
    covered: set[int] = set()
    for d in (n for n in nodes if n["op_name"] == "DELEGATE"):
        stop = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        while stack:
            t = stack.pop()
            i = producer.get(t)
            if t in stop or i is None or i in covered:
                continue
            covered.add(i)
            stack += [int(s) for s in ops[i]["inputs"] if s >= 0]
    outside = [n["op_name"] for i, n in sorted(ops.items()) if i not in covered]
    return OpsReport(len(ops), len(covered), outside, "runtime")
