"""The fair speed comparison: every shipped model in every host runtime, and each in its fastest one.

    python benchmarks/bench_models.py --precisions fp32 --json benchmarks/bench_models_fp32.json \
        --models fsrcnn:2,elsr:2,ofa-s:2,ofa-m:2,ofa-l:2,fsrcnn:4,elsr:4,ofa-s:4,ofa-m:4,ofa-l:4
    python benchmarks/fair_pareto.py [--json benchmarks/bench_models_fp32.json] [--plot benchmarks/pareto_fair.png]

Reads a ``bench_models.py`` results JSON (one run, one host: the latencies compare), prints the README's table per
scale (median ms in each runtime, its share of the one-thread fp32 matmul peak, the fastest runtime) and plots Set5
PSNR against latency: every model in every runtime as a faint marker, each model in its fastest runtime as a
labelled point, and the front of those. Why a second plot beside ``pareto.py``'s: that one times every point in
LiteRT, where the OFA subnets' depthwise layers are slow and FSRCNN is fast, so it answers "which subnet for a LiteRT
app", not "which model is best at a latency".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RUNTIMES = {"tflite": "LiteRT (XNNPACK)", "executorch": "ExecuTorch (XNNPACK)", "onnx": "ONNX Runtime",
            "pytorch": "PyTorch eager"}
MARKERS = {"tflite": "o", "executorch": "s", "onnx": "^", "pytorch": "D"}


def rows_by_model(doc: dict, scale: int) -> dict[str, dict[str, dict]]:
    """{model: {format: result}} for the fp32 results of one scale that ran."""
    out: dict[str, dict[str, dict]] = {}
    for r in doc["results"]:
        if r["scale"] == scale and r["precision"] == "fp32" and r["median_inference_latency(ms)"]:
            out.setdefault(r["model"], {})[r["format"]] = r
    return out


def fastest(runs: dict[str, dict]) -> tuple[str, dict]:
    return min(runs.items(), key=lambda kv: kv[1]["median_inference_latency(ms)"])


def table(doc: dict, scale: int) -> str:
    models = rows_by_model(doc, scale)
    lines = ["| model | Set5 | " + " | ".join(RUNTIMES.values()) + " | fastest |", "|---" * (len(RUNTIMES) + 3) + "|"]
    for name, runs in sorted(models.items(), key=lambda kv: fastest(kv[1])[1]["median_inference_latency(ms)"]):
        best, _ = fastest(runs)
        cells = []
        for fmt in RUNTIMES:
            r = runs.get(fmt)
            if r is None:
                cells.append("-")
                continue
            ms = f"{r['median_inference_latency(ms)']:.1f}"
            ms = f"**{ms}**" if fmt == best else ms
            share = r.get("matmul_peak_ratio")
            cells.append(ms + (f" ({100 * share:.0f}%)" if share and fmt != "pytorch" else ""))
        set5 = next(r["set5_psnr(db)"] for r in runs.values())  # fp32 runtimes agree within 0.01 dB: one column
        lines.append(f"| `{name}` | {set5:.2f} | " + " | ".join(cells) + f" | {RUNTIMES[best]} |")
    return "\n".join(lines)


def plot(doc: dict, scales: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, len(scales), figsize=(6 * len(scales), 4.6), squeeze=False)
    for ax, scale in zip(axes[0], scales, strict=True):
        models = rows_by_model(doc, scale)
        for fmt, marker in MARKERS.items():
            pts = [runs[fmt] for runs in models.values() if fmt in runs]
            ax.scatter([r["median_inference_latency(ms)"] for r in pts], [r["set5_psnr(db)"] for r in pts],
                       marker=marker, s=22, alpha=0.35, label=RUNTIMES[fmt])
        best = sorted((fastest(runs) + (name,) for name, runs in models.items()),
                      key=lambda t: t[1]["median_inference_latency(ms)"])
        front, top = [], float("-inf")
        for fmt, r, name in best:
            x, y = r["median_inference_latency(ms)"], r["set5_psnr(db)"]
            ax.scatter([x], [y], marker=MARKERS[fmt], s=60, color="black", zorder=3)
            ax.annotate(f"{name} ({fmt})", (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
            if y > top:
                front.append((x, y))
                top = y
        ax.plot(*zip(*front, strict=True), "k-", lw=0.8, label="fastest runtime, front")
        ax.set_xscale("log")  # no bicubic line: 3 dB below, it would flatten the 0.6 dB the models span
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([t for t in (10, 20, 30, 50, 100, 200, 500) if t <= 1.2 * max(r["median_inference_latency(ms)"]
                       for runs in models.values() for r in runs.values())])
        ax.set_xlabel("median ms per 256x256 LR tile, 1 thread (log)")
        ax.set_ylabel("Set5 PSNR (dB, Y)")
        ax.yaxis.get_major_formatter().set_useOffset(False)
        ax.set_title(f"x{scale}: each model in every runtime (faint) and in its fastest (black)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    here = Path(__file__).parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=here / "bench_models_fp32.json")
    ap.add_argument("--plot", type=Path, default=here / "pareto_fair.png")
    a = ap.parse_args()
    doc = json.loads(a.json.read_text())
    scales = sorted({r["scale"] for r in doc["results"]})
    dev = doc["device"]
    print(f"{dev['model']}, {dev['cpu_cores']} cores, fp32 matmul peak {doc['matmul_peak(gmac/s)']} GMAC/s\n")
    for scale in scales:
        print(f"x{scale}\n\n{table(doc, scale)}\n")
    plot(doc, [s for s in scales if len(rows_by_model(doc, s)) > 1], a.plot)  # one model draws no comparison
    print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
