"""Why is a 7x7 depthwise convolution ~30x slower than a 5x5 one in LiteRT on this host? Our graph, or XNNPACK?

The OFA latency table (``mobile-sr search``) measured a 7x7 depthwise layer at 96 channels far slower than the
5x5 one, so the search never picks k=7 on LiteRT. This script separates the suspects, one layer at a time:

- ``ours``: the layer exported by mobile-sr's own converter chain (PyTorch -> ONNX -> onnx2tf -> TFLiteConverter),
  run by LiteRT with its default XNNPACK delegate: what the latency table measures;
- ``keras``: the same depthwise layer written directly in Keras (``DepthwiseConv2D``, ``padding="same"``) and
  converted by TFLiteConverter, with no ONNX or onnx2tf in the way;
- ``builtin``: our file again, with XNNPACK off (LiteRT's built-in kernels);
- ``split``: the kxk filter cut into column strips of at most 25 taps, summed (exact), in Keras;
- ``onnxruntime`` and ``executorch`` (XNNPACK) on the same PyTorch layer, for scale.

If ``keras`` is as slow as ``ours``, the graph is not to blame: it is the runtime's kernel. The ops of every
TFLite file are printed, so a graph difference (an explicit PAD, a dilated or reshaped filter) would show.
Every figure is the median CPU time of one run with one thread (it does not move when the cores are shared).

    python benchmarks/depthwise_study.py [--size 256] [--channels 96] [--runs 10] [--json benchmarks/depthwise_study.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from mobile_sr.bench import host
from mobile_sr.bench.latency_table import LayerConfig, export_layer
from mobile_sr.core.quiet import native_quiet
from mobile_sr.core.weights import cpu_name


def tflite_ops(path: Path) -> list[str]:
    """Op names of a TFLite file with their filter shapes, e.g. ``DEPTHWISE_CONV_2D[1x7x7x96]``."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = []
    for op in interp._get_ops_details():  # the only public-ish op listing LiteRT's Python API has
        shapes = [tensors[i]["shape"].tolist() for i in op["inputs"] if i >= 0 and i in tensors][1:2]
        ops.append(op["op_name"] + ("[" + "x".join(map(str, shapes[0])) + "]" if shapes else ""))
    return ops


def keras_layer(cfg: LayerConfig, dest: Path, kernel: tuple[int, int] | None = None) -> Path:
    """The depthwise layer written directly in Keras and converted by TFLiteConverter (fp32); ``kernel``
    overrides the square kernel with a rectangular one (the tap-count probe)."""
    import tensorflow as tf
    import tf_keras

    inp = tf_keras.Input((cfg.height, cfg.width, cfg.in_channels), batch_size=1)
    out = tf_keras.layers.DepthwiseConv2D(kernel or cfg.kernel, padding="same")(inp)
    model = tf_keras.Model(inp, out)
    with native_quiet():
        dest.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return dest


def keras_split(cfg: LayerConfig, dest: Path) -> Path:
    """The same kxk depthwise layer as a sum of column strips of at most 25 taps each (7x7 = 7x3 + 7x3 + 7x1),
    exact up to float rounding: the workaround a converter could apply when XNNPACK's >25-tap path is slow."""
    import tensorflow as tf
    import tf_keras

    k, h, w = cfg.kernel, cfg.height, cfg.width
    inp = tf_keras.Input((h, w, cfg.in_channels), batch_size=1)
    x = tf_keras.layers.ZeroPadding2D(k // 2)(inp)
    step = max(1, 25 // k)
    parts = []
    for c0 in range(0, k, step):
        kw = min(step, k - c0)
        parts.append(tf_keras.layers.DepthwiseConv2D((k, kw), padding="valid")(x[:, :, c0:c0 + w + kw - 1]))
    model = tf_keras.Model(inp, tf_keras.layers.Add()(parts) if len(parts) > 1 else parts[0])
    with native_quiet():
        dest.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return dest


def builtin_session(path: Path) -> host.Session:
    """LiteRT with no delegate: its own built-in (optimized, non-XNNPACK) kernels."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path), num_threads=1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], np.random.default_rng(0).random(detail["shape"], dtype=np.float32))
    return host.Session("LiteRT built-in kernels", interp.invoke)


def cpu_ms(opener, runs: int) -> float:
    with host.torch_threads(1):
        return round(host.time_session(opener, 2, runs).latency.cpu_median_ms, 3)


def timed(runtime: str, path: Path, shape: tuple[int, ...], runs: int) -> float:
    return cpu_ms(lambda: host.open_session(runtime, path, shape, 1), runs)


def study(kernels: list[int], channels: list[int], size: int, runs: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="dw_study_") as tmp:
        folder = Path(tmp)
        for c in channels:
            for k in kernels:
                cfg = LayerConfig(c, c, k, size, size, groups=c)
                shape = (1, c, size, size)
                ours = export_layer(cfg, "tflite", folder)
                keras = keras_layer(cfg, folder / f"{cfg.key}_keras.tflite")
                split = keras_split(cfg, folder / f"{cfg.key}_split.tflite")
                row = {"channels": c, "kernel": k, "size": size, "macs": cfg.macs,
                       "ops_ours": tflite_ops(ours), "ops_keras": tflite_ops(keras),
                       "litert_ours_ms": timed("tflite", ours, shape, runs),
                       "litert_keras_ms": timed("tflite", keras, shape, runs),
                       "litert_builtin_ms": cpu_ms(lambda p=ours: builtin_session(p), runs),
                       "litert_split_ms": timed("tflite", split, shape, runs)}
                for rt in ("onnx", "executorch"):
                    row[f"{rt}_ms"] = timed(rt, export_layer(cfg, rt, folder), shape, runs)
                rows.append(row)
                print(f"c={c} k={k}: " + ", ".join(f"{key[:-3]} {v:.2f}" for key, v in row.items() if key.endswith("_ms"))
                      + f" ms; ops {' '.join(row['ops_ours'])} (ours), {' '.join(row['ops_keras'])} (Keras)", flush=True)
    return rows


PROBE = ((5, 5), (1, 25), (1, 26), (5, 6), (7, 3), (7, 4), (3, 9))


def taps_probe(channels: int, size: int, runs: int) -> list[dict]:
    """Rectangular depthwise kernels around 25 taps in LiteRT: where the slow path starts."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="dw_taps_") as tmp:
        cfg = LayerConfig(channels, channels, 1, size, size, groups=channels)
        for kh, kw in PROBE:
            path = keras_layer(cfg, Path(tmp) / f"k{kh}x{kw}.tflite", (kh, kw))
            ms = timed("tflite", path, (1, channels, size, size), runs)
            rows.append({"kernel": f"{kh}x{kw}", "taps": kh * kw, "channels": channels, "litert_ms": ms})
            print(f"{kh}x{kw} ({kh * kw} taps): {ms:.2f} ms", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="input side in pixels")
    ap.add_argument("--channels", default="24,48,96", help="comma-separated channel counts")
    ap.add_argument("--kernels", default="3,5,7")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", type=Path, default=Path(__file__).with_name("depthwise_study.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = study([int(k) for k in args.kernels.split(",")], [int(c) for c in args.channels.split(",")],
                 args.size, args.runs)
    print("\n| channels | k | MMAC | LiteRT (ours) | LiteRT (Keras graph) | LiteRT built-in | LiteRT, <=25-tap strips "
          "| ONNX Runtime | ExecuTorch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['channels']} | {r['kernel']} | {r['macs'] / 1e6:.0f} | {r['litert_ours_ms']:.1f} | "
              f"{r['litert_keras_ms']:.1f} | {r['litert_builtin_ms']:.1f} | {r['litert_split_ms']:.1f} | {r['onnx_ms']:.1f} | "
              f"{r['executorch_ms']:.1f} |")
    probe = taps_probe(max(int(c) for c in args.channels.split(",")), args.size, args.runs)
    print("\n| kernel | taps | LiteRT ms |\n|---|---|---|")
    for r in probe:
        print(f"| {r['kernel']} | {r['taps']} | {r['litert_ms']:.1f} |")
    meta = {"host": cpu_name(), "ai_edge_litert": metadata.version("ai-edge-litert"),
            "tensorflow": metadata.version("tensorflow-cpu"), "onnxruntime": metadata.version("onnxruntime"),
            "executorch": metadata.version("executorch"), "metric": "median CPU ms per run, 1 thread",
            "runs": args.runs}
    args.json.write_text(json.dumps({"meta": meta, "rows": rows, "taps_probe": probe}, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
