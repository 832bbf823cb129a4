"""The price of an honest LR: SR PSNR against LR fidelity for a sweep of λ, plus the unconstrained ablation.

    python benchmarks/lambda_sweep.py [--model rescale] [--scale 2] [--lambdas 0.25,1,4,16] [--steps 1500]
                                      [--init-from elsr] [--runs runs/lambda_sweep]
                                      [--data-root ../shared/datasets/benchmark]
                                      [--json benchmarks/lambda_sweep_x2.json] [--plot benchmarks/lambda_sweep_x2.png]

Each point is one short joint training run (``mobile_sr.train.trainer.train``, the same loop as
``mobile-sr train``), started from ``--init-from``: by default the shipped upscaler and a bicubic-equivalent
downscaler; for the scale-arbitrary pair, ``--model rescale-aidn --init-from rescale-aidn`` fine-tunes the shipped
pair (a scale-arbitrary run draws its factors as in training; the points are scored at ``--scale``), with the loss
L1(SR, HR) + λ·L2(LR, MATLAB-bicubic LR) on an 8-bit LR. LR fidelity is the Y-PSNR of that LR against the
published MATLAB-bicubic LR. The ``unconstrained`` run is the OFA seed's setting (float LR, no rounding, no
LR term), scored on the float LR it was trained for and on that LR saved as an 8-bit PNG: its figure is
not one of an image anybody can send. Runs resume: a killed sweep continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mobile_sr.data.datasets import load_benchmark, shared_benchmark_root
from mobile_sr.evaluation import Pipeline, evaluate, pipeline_for
from mobile_sr.models import load_model
from mobile_sr.models.deploy import deploy
from mobile_sr.train.trainer import TrainConfig, train

HERE = Path(__file__).resolve().parent
TRAIN = shared_benchmark_root().parent / "train"


def run(cfg: TrainConfig) -> Path:
    out = Path(cfg.out)
    if not (out / "summary.json").exists():
        train(cfg, resume=(out / "last.pt").exists(), progress=False)
    return out


def figures(spec: Path, scale: int, root: Path, float_lr: bool = False) -> dict:
    pair = deploy(load_model(spec, scale))
    out = {}
    for ds in ("Set5", "Set14"):
        images = load_benchmark(ds, scale, root)
        res = evaluate(pipeline_for(pair), images, with_ssim=False)
        out[ds], out[f"{ds}_lr"] = round(res.psnr, 3), round(res.lr_psnr, 2)
        if float_lr:  # what the unconstrained pair reports when its LR never leaves memory
            free = evaluate(Pipeline(pair.upscaler, scale), _float_lr(images, pair.downscaler), with_ssim=False)
            out[f"{ds}_float_lr"] = round(free.psnr, 3)
    return out


def _float_lr(images: list, down: torch.nn.Module) -> list:
    """The benchmark images with their LR replaced by the downscaler's float output (not rounded, not clamped)."""
    from mobile_sr.data.datasets import BenchmarkImage

    with torch.no_grad():
        return [BenchmarkImage(i.name, down(i.hr[None])[0], i.hr) for i in images]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="rescale")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--lambdas", default="0.25,1,4,16")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--init-from", default="elsr")
    ap.add_argument("--runs", type=Path, default=Path("runs/lambda_sweep"))
    ap.add_argument("--data-root", type=Path, default=shared_benchmark_root())
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    a = ap.parse_args()
    stem = f"lambda_sweep_x{a.scale}" if a.model == "rescale" else f"lambda_sweep_{a.model}_x{a.scale}"
    json_path = a.json or HERE / f"{stem}.json"
    plot_path = a.plot or HERE / f"{stem}.png"
    base = dict(model=a.model, scale=a.scale, data=[str(TRAIN / "T91"), str(TRAIN / "BSD200")], steps=a.steps,
                batch=a.batch, patch=a.patch, init_from=a.init_from, warmup=100, val_every=0, ckpt_every=250)
    a.runs = a.runs / a.model if a.model != "rescale" else a.runs
    rows = []
    for lam in (float(v) for v in a.lambdas.split(",")):
        out = run(TrainConfig(out=str(a.runs / f"x{a.scale}_lambda{lam:g}"), lr_weight=lam, **base))
        rows.append({"lambda": lam, **figures(out, a.scale, a.data_root)})
        print(rows[-1], flush=True)
    out = run(TrainConfig(out=str(a.runs / f"x{a.scale}_unconstrained"), unconstrained=True, **base))
    rows.append({"lambda": None, "unconstrained": True, **figures(out, a.scale, a.data_root, float_lr=True)})
    print(rows[-1], flush=True)
    doc = {"model": a.model, "scale": a.scale, "steps": a.steps, "batch": a.batch, "patch": a.patch,
           "init_from": a.init_from, "rows": rows}
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    print(table(rows))
    plot(rows, a.scale, plot_path)


def table(rows: list[dict]) -> str:
    lines = ["| λ | Set14 SR PSNR | Set14 LR PSNR vs MATLAB | Set5 SR PSNR | Set5 LR PSNR |", "|---|---|---|---|---|"]
    for r in rows:
        lam = "unconstrained (float LR; 8-bit PNG below)" if r.get("unconstrained") else f"{r['lambda']:g}"
        if r.get("unconstrained"):
            lines.append(f"| {lam} | {r['Set14_float_lr']:.2f} | - | {r['Set5_float_lr']:.2f} | - |")
            lam = "unconstrained, LR saved as 8-bit"
        lines.append(f"| {lam} | {r['Set14']:.2f} | {r['Set14_lr']:.2f} | {r['Set5']:.2f} | {r['Set5_lr']:.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict], scale: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    pts = [r for r in rows if not r.get("unconstrained")]
    ax.plot([r["Set14_lr"] for r in pts], [r["Set14"] for r in pts], "o-", label="8-bit LR, λ sweep")
    for r in pts:
        ax.annotate(f"λ={r['lambda']:g}", (r["Set14_lr"], r["Set14"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    for r in rows:
        if r.get("unconstrained"):
            ax.plot(r["Set14_lr"], r["Set14"], "x", color="red", label="unconstrained, LR saved as 8-bit")
    ax.set_xlabel("LR fidelity: Set14 Y-PSNR vs MATLAB-bicubic LR (dB)")
    ax.set_ylabel(f"Set14 SR PSNR x{scale} (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
