"""Quality table of the shipped models beside bicubic and the published FSRCNN figures.

    python benchmarks/quality.py [--data-root ../shared/datasets/benchmark] [--json quality.json]

Prints a Markdown table (the one in the README) and writes JSON. Protocol: Y channel, crop = scale,
8-bit output, the published MATLAB LR images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mobile_sr.evaluation import bicubic_pipeline, evaluate_dataset, pipeline_for
from mobile_sr.models import MODELS, load_model, shipped_scales
from mobile_sr.models.deploy import deploy, profile

PUBLISHED = {("fsrcnn", 2): (37.00, 32.63), ("fsrcnn", 4): (30.71, 27.59)}
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "benchmark"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--json", type=Path, default=Path("quality.json"))
    args = ap.parse_args()
    rows = []
    entries = [("bicubic", s) for s in (2, 4)] + [(n, s) for n in MODELS for s in shipped_scales(n)
                                                   if MODELS[n].role == "upscaler"]
    for name, scale in sorted(entries, key=lambda e: (e[1], e[0] != "bicubic", e[0])):
        model = None if name == "bicubic" else deploy(load_model(name, scale))
        pipe = bicubic_pipeline(scale) if model is None else pipeline_for(model)
        row = {"model": name, "scale": scale}
        if model is not None:
            prof = profile(model.upscaler, scale)
            row |= {"params": prof.params, "macs_per_px": round(prof.macs_per_output_pixel)}
        t0 = time.perf_counter()
        for ds in ("Set5", "Set14"):
            res = evaluate_dataset(pipe, ds, args.data_root, model=name)
            row[ds] = {"psnr": round(res.psnr, 2), "ssim": round(res.ssim, 4)}
        row["eval_seconds"] = round(time.perf_counter() - t0, 1)
        row["published"] = PUBLISHED.get((name, scale))
        rows.append(row)
    print("| model | scale | params | MACs/px | Set5 PSNR/SSIM | Set14 PSNR/SSIM | published (Set5/Set14) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        pub = "{:.2f} / {:.2f}".format(*r["published"]) if r["published"] else "-"
        print(f"| {r['model']} | x{r['scale']} | {r.get('params', '-')} | {r.get('macs_per_px', '-')} | "
              f"{r['Set5']['psnr']:.2f} / {r['Set5']['ssim']:.4f} | {r['Set14']['psnr']:.2f} / {r['Set14']['ssim']:.4f} | "
              f"{pub} |")
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
