"""The supernet pair against the supernet: PSNR-latency of the learned and the bicubic pipeline, subnet by subnet.

    python benchmarks/supernet_pair.py [--pair rescale-ofa] [--scale 2] [--runtime tflite] [--input-size 256x256]
                                       [--data-root ../shared/datasets/benchmark]
                                       [--json benchmarks/supernet_pair_x{scale}.json]
                                       [--plot benchmarks/supernet_pair_x{scale}.png]

Every point is one upscaler graph, cut twice at the same arch: from the shipped ``ofa-sr`` supernet, restoring the
published MATLAB-bicubic LR (these cuts at the archs of ``ofa-s``/``-m``/``-l`` *are* those shipped models), and
from the supernet pair, restoring the pair's own downscaler's LR saved as an 8-bit PNG. The two share the graph,
so they share the latency, which is measured once per arch the way ``benchmarks/pairs.py`` measures it (exported
with the export stage's converter for ``--runtime``, 1 thread, CPU time per run). The ELSR pair (``rescale``) and
ELSR on bicubic LR are drawn for reference. Figures: Set5/Set14, Y, crop = scale, through ``evaluate``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from pairs import scores  # the sibling benchmark (run as a script, its folder is on sys.path)

from mobile_sr.bench.latency_table import time_module
from mobile_sr.data.datasets import shared_benchmark_root
from mobile_sr.evaluation import Jpeg, Pipeline, pipeline_for
from mobile_sr.models import Model, load_model, load_supernet, manifest
from mobile_sr.models.deploy import deploy, deploy_pair_subnet, deploy_subnet
from mobile_sr.models.ofa import Arch, largest, smallest

HERE = Path(__file__).resolve().parent


def archs(scale: int) -> dict[str, Arch]:
    """The smallest subnet, the three shipped searched cuts, and the largest subnet."""
    out = {"smallest": smallest(scale)}
    out.update({name: Arch.from_dict(manifest(name, scale)["arch"]) for name in ("ofa-s", "ofa-m", "ofa-l")})
    out["largest"] = largest(scale)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="rescale-ofa", help="a supernet pair: built-in name or run folder")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--runtime", default="tflite")
    ap.add_argument("--input-size", default="256x256")
    ap.add_argument("--data-root", type=Path, default=shared_benchmark_root())
    ap.add_argument("--json", type=Path, default=None, help="default: benchmarks/supernet_pair_x{scale}.json")
    ap.add_argument("--plot", type=Path, default=None, help="default: benchmarks/supernet_pair_x{scale}.png")
    ap.add_argument("--replot", action="store_true", help="only redraw --plot from --json")
    a = ap.parse_args()
    a.json = a.json or HERE / f"supernet_pair_x{a.scale}.json"
    a.plot = a.plot or HERE / f"supernet_pair_x{a.scale}.png"
    scale = a.scale
    if a.replot:
        plot(json.loads(a.json.read_text()), a.plot)
        return
    torch.set_num_threads(1)
    h, w = (int(v) for v in a.input_size.split("x"))
    supernet = load_supernet("ofa-sr")
    pair = load_supernet(a.pair, pairs=True, scale=scale)
    rows = []
    for name, arch in archs(scale).items():
        bicubic_net = deploy_subnet(supernet, arch)
        cut = Model(f"{a.pair}@{name}", "pair", scale, deploy_pair_subnet(pair, arch), a.pair, deployed=True)
        ms = time_module(bicubic_net, (1, 3, h, w), runtime=a.runtime, runs=10)
        learned = pipeline_for(cut)
        row = {"arch": name, "arch_config": arch.to_dict(), "latency_ms": round(ms, 2),
               "bicubic_lr": scores(Pipeline(bicubic_net, scale), a.data_root),
               "learned_lr": {**scores(learned, a.data_root),
                              **{f"Set14_jpeg{q}": scores(pipeline_for(cut, codec=Jpeg(q)), a.data_root)["Set14"]
                                 for q in (75, 90)}},
               "pair_upscaler_on_bicubic_lr": scores(replace(learned, downscale=None), a.data_root)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    reference = []
    for name in ("elsr", "rescale"):
        model = deploy(load_model(name, scale))
        ms = time_module(model.upscaler, (1, 3, h, w), runtime=a.runtime, runs=10)
        reference.append({"model": name, "latency_ms": round(ms, 2), **scores(pipeline_for(model), a.data_root)})
        print(json.dumps(reference[-1]), flush=True)
    doc = {"pair": a.pair, "scale": scale, "runtime": a.runtime, "input_size": [h, w], "threads": 1,
           "rows": rows, "reference": reference}
    a.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(table(doc))
    plot(doc, a.plot)


def table(doc: dict) -> str:
    lines = ["| subnet | ms | Set14, bicubic LR | Set14, learned LR | gain | Set14 LR dB | Set5, bicubic LR | "
             "Set5, learned LR | learned, JPEG q75 / q90 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        b, lr = r["bicubic_lr"], r["learned_lr"]
        lines.append(f"| {r['arch']} | {r['latency_ms']:.1f} | {b['Set14']:.2f} | {lr['Set14']:.2f} | "
                     f"{lr['Set14'] - b['Set14']:+.2f} | {lr['Set14_lr']:.2f} | {b['Set5']:.2f} | {lr['Set5']:.2f} | "
                     f"{lr['Set14_jpeg75']:.2f} / {lr['Set14_jpeg90']:.2f} |")
    for r in doc["reference"]:
        learned = "Set14_lr" in r  # a pair makes its own LR
        on_bicubic, on_learned = ("-", f"{r['Set14']:.2f}") if learned else (f"{r['Set14']:.2f}", "-")
        lines.append(f"| {r['model']} (reference) | {r['latency_ms']:.1f} | {on_bicubic} | {on_learned} | - | "
                     f"{r.get('Set14_lr', '-')} | - | - | - |")
    return "\n".join(lines)


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    rows = sorted(doc["rows"], key=lambda r: r["latency_ms"])
    xs = [r["latency_ms"] for r in rows]
    ax.plot(xs, [r["bicubic_lr"]["Set14"] for r in rows], "o-", label="bicubic LR -> ofa-sr subnet")
    ax.plot(xs, [r["learned_lr"]["Set14"] for r in rows], "s-", label=f"{doc['pair']}: learned 8-bit LR -> its subnet")
    for r in rows:
        ax.annotate(r["arch"], (r["latency_ms"], r["learned_lr"]["Set14"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    for r in doc["reference"]:
        ax.plot([r["latency_ms"]], [r["Set14"]], "^", label=f"{r['model']} ({'learned' if 'Set14_lr' in r else 'bicubic'} LR)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    every = xs + [r["latency_ms"] for r in doc["reference"]]
    ax.set_xticks([t for t in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if min(every) / 2 <= t <= max(every) * 2])
    h, w = doc["input_size"]
    ax.set_xlabel(f"upscaler latency on the host, ms ({doc['runtime']}, {h}x{w}, 1 thread, log)")
    ax.set_ylabel(f"Set14 PSNR x{doc['scale']} (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
