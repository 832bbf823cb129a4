"""Turn a finished training run into shipped weights: ``models/weights/<name>_x<s>.safetensors`` + manifest.

The manifest is the record the guide asks for: the exact command, steps, wall time, data, and the
Set5/Set14 PSNR/SSIM measured here under the published protocol. Run:

    python -m mobile_sr.train.ship runs/fsrcnn_x2 --data-root ../shared/datasets/benchmark
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
from pathlib import Path

import torch

from ..models import WEIGHTS_DIR, load_model
from .evaluate import evaluate_dataset
from .trainer import write_weights


def ship(run: Path, data_root: Path, weights: str = "model.safetensors") -> Path:
    cfg = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    model = load_model(run / weights)
    name, scale = cfg["model"], cfg["scale"]
    scores = {}
    for dataset in ("Set5", "Set14"):
        res = evaluate_dataset(model, dataset, scale, data_root, model=name)
        scores[dataset] = {"psnr": round(res.psnr, 3), "ssim": round(res.ssim, 4)}
    flags = ["--model", name, "--scale", str(scale)]
    for d in cfg["data"]:
        flags += ["--data", d]
    flags += ["--out", str(run), "--steps", str(cfg["steps"]), "--batch", str(cfg["batch"]), "--patch", str(cfg["patch"]),
              "--lr", str(cfg["lr"]), "--init", cfg["init"], "--seed", str(cfg["seed"])]
    manifest = {
        "model": name, "scale": scale, "config": model.config(),
        "command": "mobile-sr train " + shlex.join(flags),
        "steps": summary["step"], "wall_minutes": round(summary["train_seconds"] / 60, 1),
        "data": "T91 + BSD200 (../shared/datasets/train), LR by MATLAB-bicubic on the fly",
        "hardware": f"{platform.machine()} CPU, torch {torch.__version__}, 1 thread, shared with other jobs",
        "eval": scores, "protocol": "Y (BT.601), crop = scale, 8-bit output; published MATLAB LR images",
        "validation_history": summary.get("history", []),
    }
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    dest = WEIGHTS_DIR / f"{name}_x{scale}.safetensors"
    write_weights(model, manifest, dest)
    return dest


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data-root", type=Path, required=True, help="folder with Set5/ and Set14/")
    ap.add_argument("--weights", default="model.safetensors", help="model.safetensors (final) or best.safetensors")
    a = ap.parse_args()
    print(ship(a.run, a.data_root, a.weights))
