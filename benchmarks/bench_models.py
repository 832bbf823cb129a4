"""Latency and quality of the shipped models in every host runtime: the README's speed table.

    python benchmarks/bench_models.py [--size 256x256] [--threads 1] [--runs 30] [--precisions fp32,int8]
                                      [--targets tflite,executorch,onnx] [--exports bench_exports] [--no-psnr]
                                      [--json bench_models.json] [--csv ...] [--plot ...]

Video SR's frame rate (360p -> 720p at x2) is the same benchmark at the frame size:

    python benchmarks/bench_models.py --size 360x640 --models elsr:2,ofa-s:2,ofa-m:2,ofa-l:2 --targets tflite,onnx \
        --json benchmarks/video_fps.json

Exports every shipped model (``mobile_sr/models/weights``) with ``mobile_sr.export`` at one fixed input size,
benchmarks the artifacts and the eager PyTorch checkpoint with ``mobile_sr.bench`` on this machine, prints a
Markdown table and writes the results JSON (``mobile_sr/bench/results.schema.json``). The same artifacts can
then be measured on a phone with ``mobile-sr bench --device adb``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mobile_sr.bench.artifact import open_artifact
from mobile_sr.bench.report import write_csv, write_json, write_plot
from mobile_sr.bench.run import bench
from mobile_sr.export import FORMATS, export, parse_size
from mobile_sr.models import MODELS, load_model, shipped_scales, weights_path

COLUMNS = ["model", "scale", "runtime", "precision", "input", "median ms", "p90 ms", "CPU ms", "MP/s", "frames/s", "GMAC/s",
           "% fp32 matmul peak", "Set5 PSNR", "load ms", "peak MB"]


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(doc: dict) -> str:
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in doc["results"]:
        ratio = r["matmul_peak_ratio"]
        cells = [r["model"], f"x{r['scale']}", r["runtime"] or r["format"], r["precision"],
                 "x".join(map(str, r["input_size"])), _f(r["median_inference_latency(ms)"]),
                 _f(r["p90_inference_latency(ms)"]), _f(r["median_cpu_time(ms)"]), _f(r["throughput(mpix/s)"]),
                 _f(r.get("frames_per_second"), 1), _f(r["achieved(gmac/s)"], 1),
                 _f(None if ratio is None else 100 * ratio, 1), _f(r["set5_psnr(db)"]),
                 _f(r["model_load_time(ms)"], 1), _f(r["peak_memory(mb)"], 1)]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    for b in doc["bicubic"]:
        cells = ["bicubic", f"x{b['scale']}", "PyTorch", "fp32", "x".join(map(str, b["input_size"])),
                 _f(b["median_inference_latency(ms)"])] + ["-"] * 6 + [_f(b["set5_psnr(db)"]), "-", "-"]
        rows.append("| " + " | ".join(cells) + " |")
    dev, first = doc["device"], doc["results"][0]
    rows.append(f"\n{dev['model']}, {dev['cpu_cores']} cores; fp32 matmul peak {doc['matmul_peak(gmac/s)']} GMAC/s; "
                f"threads {first['threads']}, warm-up {first['warmup']}, runs {first['runs']}. frames/s is inferences/s: "
                f"a video's frame rate when the input size is its frame size (30 fps needs a median of 33.3 ms at most).")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="256x256", help="LR input size of the exports")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--targets", default="tflite,executorch,onnx")
    ap.add_argument("--models", default=None, help="e.g. fsrcnn:2,fsrcnn:4 (default: every shipped model)")
    ap.add_argument("--exports", type=Path, default=Path("bench_exports"), help="folder for the exported artifacts")
    ap.add_argument("--json", type=Path, default=Path("bench_models.json"))
    ap.add_argument("--no-psnr", action="store_true", help="skip each artifact's Set5 PSNR")
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args()

    size = parse_size(args.size)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.models:
        entries = [(n, int(s)) for n, s in (item.split(":") for item in args.models.split(","))]
    else:
        entries = [(n, s) for n in MODELS for s in shipped_scales(n) if MODELS[n].role == "upscaler"]
    artifacts = []
    for name, scale in entries:
        model = load_model(name, scale)
        for precision in precisions:
            chosen = [t for t in targets if precision in FORMATS[t].precisions]
            if not chosen:
                continue
            t0 = time.perf_counter()
            results = export(model, chosen, int8=precision == "int8", fp16=precision == "fp16",
                             size=size, out_dir=args.exports, check=False)
            print(f"exported {name} x{scale} {precision} to {', '.join(chosen)} in {time.perf_counter() - t0:.0f} s",
                  flush=True)
            artifacts += [open_artifact(str(r.path), size) for r in results]
        artifacts.append(open_artifact(str(weights_path(name, scale)), size))
    doc = bench(artifacts, plan=None, threads=args.threads, warmup=args.warmup, runs=args.runs, psnr=not args.no_psnr)
    print(markdown(doc))
    write_json(doc, args.json)
    if args.csv:
        write_csv(doc["results"], args.csv)
    if args.plot:
        write_plot(doc, args.plot)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
