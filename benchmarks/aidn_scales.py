"""The scale-arbitrary pair across factors: its learned pipeline against bicubic down + the same restoration.

    python benchmarks/aidn_scales.py [--model rescale-aidn] [--factors 1.5,2,2.2,2.5,3,3.3,3.5,4]
                                     [--data-root ../shared/datasets/benchmark] [--jpeg 75,90]
                                     [--json benchmarks/aidn_scales.json] [--plot benchmarks/aidn_scales.png]

Per factor and dataset (Set5, Set14; Y, crop = ceil(s), the protocol's), three pipelines through ``evaluate``:
- ``learned``: HR -> the pair's downscaler at s -> 8-bit PNG -> the pair's restoration at s;
- ``bicubic-down``: MATLAB-bicubic LR (the published file at an integer factor; at a fractional one, made from
  the HR cropped to a multiple of the factor's numerator) -> the same restoration: what the downscaler adds;
- ``bicubic``: the same LR -> MATLAB bicubic up.
and the learned LR's PSNR against that bicubic LR. ``--jpeg Q`` adds the learned and bicubic-down pipelines with
the LR through a JPEG of quality Q. Factors off the training grid (quarter steps, ``models.aidn.TRAIN_FACTORS``),
such as 2.2 and 3.3, show whether one network really serves the whole range.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from mobile_sr.data.datasets import load_benchmark_at, shared_benchmark_root
from mobile_sr.evaluation import Jpeg, bicubic_pipeline, evaluate, pipeline_for
from mobile_sr.models import load_model
from mobile_sr.models.aidn import TRAIN_FACTORS

DATASETS = ("Set5", "Set14")
HERE = Path(__file__).resolve().parent


def measure(model: str, factors: list[float], root: Path, qualities: list[int]) -> dict:
    rows = []
    for s in factors:
        pair = load_model(model, s)
        learned = pipeline_for(pair)
        pipes = {"learned": learned, "bicubic-down": replace(learned, downscale=None), "bicubic": bicubic_pipeline(s)}
        for q in qualities:
            pipes[f"learned jpeg{q}"] = replace(learned, codec=Jpeg(q))
            pipes[f"bicubic-down jpeg{q}"] = replace(learned, downscale=None, codec=Jpeg(q))
        row: dict = {"factor": s, "on_training_grid": s in TRAIN_FACTORS}
        for ds in DATASETS:
            images = load_benchmark_at(ds, s, root)
            for name, pipe in pipes.items():
                res = evaluate(pipe, images, with_ssim=False)
                row[f"{ds} {name}"] = round(res.psnr, 3)
                if name == "learned":
                    row[f"{ds} lr_psnr"] = round(res.lr_psnr, 2)
        rows.append(row)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return {"model": model, "datasets": list(DATASETS), "rows": rows}


def table(doc: dict) -> str:
    lines = ["| factor | Set5 learned | Set5 bicubic down + same restoration | Set5 bicubic | Set14 learned | "
             "Set14 bicubic down + same restoration | Set14 bicubic | LR dB (Set5 / Set14) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        grid = "" if r["on_training_grid"] else " (off grid)"
        lines.append(f"| x{r['factor']:g}{grid} | **{r['Set5 learned']:.2f}** | {r['Set5 bicubic-down']:.2f} | "
                     f"{r['Set5 bicubic']:.2f} | **{r['Set14 learned']:.2f}** | {r['Set14 bicubic-down']:.2f} | "
                     f"{r['Set14 bicubic']:.2f} | {r['Set5 lr_psnr']:.1f} / {r['Set14 lr_psnr']:.1f} |")
    return "\n".join(lines)


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["factor"] for r in doc["rows"]]
    for ax, ds in zip(axes, DATASETS, strict=True):
        for name, style in (("learned", "o-"), ("bicubic-down", "s--"), ("bicubic", "^:")):
            label = {"learned": "learned down + restoration", "bicubic-down": "bicubic down + same restoration",
                     "bicubic": "bicubic down + bicubic up"}[name]
            ax.plot(xs, [r[f"{ds} {name}"] for r in doc["rows"]], style, label=label)
        ax.set(title=f"{ds} (Y, crop = ceil(s))", xlabel="factor s", ylabel="PSNR dB")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{doc['model']}: one network for every factor, LR saved as 8-bit PNG")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="rescale-aidn")
    ap.add_argument("--factors", default="1.5,2,2.2,2.5,3,3.3,3.5,4")
    ap.add_argument("--data-root", type=Path, default=shared_benchmark_root())
    ap.add_argument("--jpeg", default="", help="JPEG qualities, e.g. 75,90")
    ap.add_argument("--json", type=Path, default=HERE / "aidn_scales.json")
    ap.add_argument("--plot", type=Path, default=HERE / "aidn_scales.png")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    factors = [float(f) for f in args.factors.split(",")]
    qualities = [int(q) for q in args.jpeg.split(",") if q]
    doc = measure(args.model, factors, args.data_root, qualities)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(table(doc))
    if args.plot:
        plot(doc, args.plot)


if __name__ == "__main__":
    main()
