"""PSNR against measured latency: OFA subnets searched for a sweep of budgets, with FSRCNN, ELSR and bicubic.

    python benchmarks/pareto.py [--scales 2,4] [--budgets-2 25,30,40,60,90,130,200] [--budgets-4 ...]
                                [--runtime tflite] [--input-size 256x256] [--data-root ../shared/datasets/benchmark]
                                [--json benchmarks/pareto.json] [--plot benchmarks/pareto.png]

Every point is measured the same way: the model is exported with the export stage's converter for
``--runtime`` and timed on this machine (1 thread; CPU time per run, which other processes on the
cores do not inflate), and scored on Set5 and Set14 under the published protocol. The subnets come
from ``mobile_sr.search.run.search`` on the shipped supernet, with the cached latency table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mobile_sr.bench.latency_table import time_module
from mobile_sr.data.datasets import shared_benchmark_root
from mobile_sr.evaluation import Pipeline, bicubic_pipeline, evaluate_dataset
from mobile_sr.models import create_model, load_model
from mobile_sr.models.deploy import deploy
from mobile_sr.search.run import search

BUDGETS = {2: [25, 30, 40, 60, 90, 130, 200], 4: [90, 100, 125, 150, 200, 250]}  # host LiteRT, 256x256


def psnrs(pipeline: Pipeline, root: Path) -> dict:
    return {d: round(evaluate_dataset(pipeline, d, root).psnr, 3) for d in ("Set5", "Set14")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="2,4")
    ap.add_argument("--budgets-2", default=",".join(map(str, BUDGETS[2])))
    ap.add_argument("--budgets-4", default=",".join(map(str, BUDGETS[4])))
    ap.add_argument("--runtime", default="tflite")
    ap.add_argument("--input-size", default="256x256")
    ap.add_argument("--data-root", type=Path, default=shared_benchmark_root())
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "pareto.json")
    ap.add_argument("--plot", type=Path, default=Path(__file__).parent / "pareto.png")
    a = ap.parse_args()
    h, w = (int(v) for v in a.input_size.split("x"))
    rows = []
    for scale in (int(s) for s in a.scales.split(",")):
        for name in ("fsrcnn", "elsr"):
            model = create_model(name, scale)
            ms = time_module(model, (1, 3, h, w), runtime=a.runtime, runs=10)
            rows.append({"scale": scale, "model": name, "budget_ms": None, "latency_ms": round(ms, 2),
                         **psnrs(Pipeline(model, scale), a.data_root)})
            print(rows[-1], flush=True)
        rows.append({"scale": scale, "model": "bicubic", "budget_ms": None, "latency_ms": None,
                     **psnrs(bicubic_pipeline(scale), a.data_root)})
        for budget in (float(b) for b in getattr(a, f"budgets_{scale}").split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                rep = search(supernet_spec="ofa-sr", scale=scale, budget_ms=budget, runtime=a.runtime, plan=None,
                             threads=1, size=(h, w), out=Path(tmp) / "s", log=lambda m: None)
                model = deploy(load_model(Path(tmp) / "s")).module
            rows.append({"scale": scale, "model": "ofa-sr subnet", "budget_ms": budget,
                         "latency_ms": rep["measured"]["latency_ms"], "predicted_ms": rep["predicted"]["latency_ms"],
                         "blocks": len(rep["config"]["kernels"]), **psnrs(Pipeline(model, scale), a.data_root)})
            print(rows[-1], flush=True)
    a.json.write_text(json.dumps({"runtime": a.runtime, "input_size": [h, w], "threads": 1, "rows": rows}, indent=2))
    print(table(rows, a.runtime, a.input_size))
    plot(rows, a.plot)


def table(rows: list[dict], runtime: str, size: str) -> str:
    lines = [f"| scale | model | budget ms | measured ms ({runtime}, {size}, 1 thread) | Set5 PSNR | Set14 PSNR |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        b = "-" if r["budget_ms"] is None else f"{r['budget_ms']:g}"
        ms = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.1f}"
        lines.append(f"| x{r['scale']} | {r['model']} | {b} | {ms} | {r['Set5']:.2f} | {r['Set14']:.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    timed = [r["latency_ms"] for r in rows if r.get("latency_ms")]
    lo, hi = min(timed) * 0.8, max(timed) * 1.25
    scales = sorted({r["scale"] for r in rows})
    fig, axes = plt.subplots(2, len(scales), figsize=(5.5 * len(scales), 7), squeeze=False)
    for j, scale in enumerate(scales):
        for i, ds in enumerate(("Set5", "Set14")):
            ax = axes[i][j]
            sub = [r for r in rows if r["scale"] == scale and r["model"] == "ofa-sr subnet"]
            ax.plot([r["latency_ms"] for r in sub], [r[ds] for r in sub], "o-", label="ofa-sr subnets (searched)")
            for r in rows:
                if r["scale"] == scale and r["model"] in ("fsrcnn", "elsr"):
                    ax.plot(r["latency_ms"], r[ds], "s", label=r["model"])
                if r["scale"] == scale and r["model"] == "bicubic":
                    ax.axhline(r[ds], color="gray", ls="--", label="bicubic")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())  # plain ms, no crowded 10^x minor labels
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks([t for t in (10, 20, 50, 100, 200, 500, 1000) if lo <= t <= hi])
            ax.set_xlabel("measured latency, ms (log)")
            ax.set_ylabel(f"{ds} PSNR (dB)")
            ax.set_title(f"x{scale}, {ds}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
