"""Learned downscaling against bicubic: PSNR-latency of both pipelines, the JPEG figures, and crops for the README.

    python benchmarks/pairs.py [--pairs rescale,rescale-car] [--scales 2,4] [--runtime tflite] [--input-size 256x256]
                               [--data-root ../shared/datasets/benchmark] [--json benchmarks/pairs.json]
                               [--plot benchmarks/pairs.png] [--crops benchmarks/pair_crops_x{scale}.png]

Both pipelines end in an upscaler on the phone, so both are drawn against the same axis: that upscaler's
latency, measured here the way ``benchmarks/pareto.py`` measures it (exported with the export stage's
converter for ``--runtime``, 1 thread, CPU time per run). The bicubic pipeline is published LR -> upscaler
(fsrcnn, elsr and the searched ofa subnets); the learned one is HR -> the pair's downscaler -> 8-bit PNG ->
the pair's upscaler. Every figure is Set14/Set5 under the published protocol, through ``evaluate``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mobile_sr.bench.latency_table import time_module
from mobile_sr.data.datasets import load_benchmark, shared_benchmark_root
from mobile_sr.evaluation import Jpeg, Pipeline, bicubic, evaluate, pipeline_for
from mobile_sr.models import load_model, shipped_scales
from mobile_sr.models.deploy import deploy

UPSCALERS = ("elsr", "ofa-s", "ofa-m", "ofa-l", "fsrcnn")
DATASETS = ("Set5", "Set14")
HERE = Path(__file__).resolve().parent


def scores(pipe: Pipeline, root: Path) -> dict:
    out = {}
    for ds in DATASETS:
        res = evaluate(pipe, load_benchmark(ds, int(pipe.scale), root), with_ssim=False)
        out[ds] = round(res.psnr, 3)
        if res.lr_psnr is not None:
            out[f"{ds}_lr"] = round(res.lr_psnr, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="rescale", help="comma-separated pair names or run folders")
    ap.add_argument("--scales", default="2,4")
    ap.add_argument("--runtime", default="tflite")
    ap.add_argument("--input-size", default="256x256")
    ap.add_argument("--data-root", type=Path, default=shared_benchmark_root())
    ap.add_argument("--json", type=Path, default=HERE / "pairs.json")
    ap.add_argument("--plot", type=Path, default=HERE / "pairs.png")
    ap.add_argument("--crops", default=str(HERE / "pair_crops_x{scale}.png"))
    ap.add_argument("--replot", action="store_true", help="only redraw --plot from --json")
    a = ap.parse_args()
    if a.replot:
        plot(json.loads(a.json.read_text())["rows"], a.plot)
        return
    torch.set_num_threads(1)
    h, w = (int(v) for v in a.input_size.split("x"))
    rows = []
    for scale in (int(s) for s in a.scales.split(",")):
        for name in UPSCALERS:
            model = deploy(load_model(name, scale))
            ms = time_module(model.upscaler, (1, 3, h, w), runtime=a.runtime, runs=10)
            rows.append({"scale": scale, "pipeline": "bicubic LR", "model": name, "latency_ms": round(ms, 2),
                         **scores(pipeline_for(model), a.data_root),
                         **{f"Set14_jpeg{q}": scores(pipeline_for(model, codec=Jpeg(q)), a.data_root)["Set14"]
                            for q in (75, 90)}})
            print(rows[-1], flush=True)
        for spec in a.pairs.split(","):
            if not Path(spec).exists() and scale not in shipped_scales(spec):
                print(f"{spec}: no x{scale} weights ship; skipped", flush=True)
                continue
            pair = deploy(load_model(spec, scale))
            ms = time_module(pair.upscaler, (1, 3, h, w), runtime=a.runtime, runs=10)
            rows.append({"scale": scale, "pipeline": "learned LR", "model": pair.name, "latency_ms": round(ms, 2),
                         **scores(pipeline_for(pair), a.data_root),
                         **{f"Set14_jpeg{q}": scores(pipeline_for(pair, codec=Jpeg(q)), a.data_root)["Set14"]
                            for q in (75, 90)},
                         "upscaler_on_bicubic_lr": scores(replace(pipeline_for(pair), downscale=None), a.data_root)})
            print(rows[-1], flush=True)
            if spec == a.pairs.split(",")[0]:  # the README's crops: the first pair named
                crops(pair, a.data_root, Path(a.crops.format(scale=scale)))
        rows.append({"scale": scale, "pipeline": "bicubic LR", "model": "bicubic", "latency_ms": None,
                     **scores(Pipeline(lambda t, s=scale: bicubic(t, s), scale), a.data_root)})
    a.json.write_text(json.dumps({"runtime": a.runtime, "input_size": [h, w], "threads": 1, "rows": rows}, indent=2)
                      + "\n")
    print(table(rows))
    plot(rows, a.plot)


def table(rows: list[dict]) -> str:
    lines = ["| scale | LR | upscaler | ms | Set5 | Set14 | Set14 LR dB | Set14 JPEG q75 | Set14 JPEG q90 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.1f}"
        lines.append(f"| x{r['scale']} | {r['pipeline']} | {r['model']} | {ms} | {r['Set5']:.2f} | {r['Set14']:.2f} | "
                     f"{r.get('Set14_lr', '-')} | {r.get('Set14_jpeg75', '-')} | {r.get('Set14_jpeg90', '-')} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    scales = sorted({r["scale"] for r in rows})
    fig, axes = plt.subplots(1, len(scales), figsize=(5.5 * len(scales), 4), squeeze=False)
    for ax, scale in zip(axes[0], scales, strict=True):
        # The bicubic-LR upscalers form one curve; the pairs are separate models (one is trained for JPEG): points.
        for pipeline, style in (("bicubic LR", "o-"), ("learned LR", "s")):
            pts = sorted((r["latency_ms"], r["Set14"], r["model"]) for r in rows
                         if r["scale"] == scale and r["pipeline"] == pipeline and r["latency_ms"])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{pipeline} -> upscaler")
            for x, y, name in pts:
                ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        base = next(r for r in rows if r["scale"] == scale and r["model"] == "bicubic")
        ax.axhline(base["Set14"], color="gray", ls="--", label="bicubic down + bicubic up")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())  # plain ms, no crowded 10^x minor labels
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([t for t in (10, 20, 50, 100, 200, 500) if t <= 400])
        ax.set_xlabel("upscaler latency on the host, ms (TFLite, 256x256, 1 thread, log)")
        ax.set_ylabel("Set14 PSNR (dB)")
        ax.set_title(f"x{scale}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def crops(pair, root: Path, path: Path, image: str = "img_005", size: int = 48) -> None:
    """LR crops at 1:1 (bicubic, learned, and their difference x8), then SR crops at 1:1 (bicubic up, ELSR on
    bicubic LR, the pair) with the HR: one Set14 image, the same region everywhere."""
    from PIL import Image, ImageDraw

    scale = int(pair.scale)
    img = next(i for i in load_benchmark("Set14", scale, root) if i.name == image)
    learned = pipeline_for(pair)
    lr_l = learned.low_res(img)
    sr_l = learned.upscale_lr(lr_l)
    base = deploy(load_model("elsr", scale))
    sr_b = Pipeline(base.upscaler, scale).upscale_lr(img.lr)
    sr_c = bicubic(img.lr[None], scale)[0]
    top, left = img.lr.shape[1] // 2 - size // 2, img.lr.shape[2] // 2 - size // 2

    def lr_crop(t: torch.Tensor) -> np.ndarray:
        return t[:, top : top + size, left : left + size].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()

    def hr_crop(t: torch.Tensor) -> np.ndarray:
        s = size * scale
        c = t[:, top * scale : top * scale + s, left * scale : left * scale + s]
        return c.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()

    diff = ((lr_l - img.lr) * 8 + 0.5)
    rows = [[("bicubic LR", lr_crop(img.lr)), ("learned LR", lr_crop(lr_l)), ("difference x8", lr_crop(diff))],
            [("bicubic up", hr_crop(sr_c)), ("ELSR on bicubic LR", hr_crop(sr_b)), (f"{pair.name}", hr_crop(sr_l)),
             ("HR", hr_crop(img.hr))]]
    pad, label = 6, 14
    width = max(sum(a.shape[1] + pad for _, a in row) for row in rows) + pad
    height = sum(max(a.shape[0] for _, a in row) + label + pad for row in rows) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = pad
    for row in rows:
        x = pad
        for name, arr in row:
            draw.text((x, y), name, fill="black")
            canvas.paste(Image.fromarray(arr), (x, y + label))
            x += arr.shape[1] + pad
        y += max(a.shape[0] for _, a in row) + label + pad
    canvas.save(path)


if __name__ == "__main__":
    main()
