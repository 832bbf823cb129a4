"""Turn a finished training run into shipped weights: ``models/weights/<name>_x<s>.safetensors`` + manifest
(``<name>.safetensors`` for a scale-arbitrary pair, whose one file serves every factor).

The manifest is the record the guide asks for: the exact command, steps, wall time, data, and the
Set5/Set14 PSNR/SSIM measured here under the published protocol. Run:

    python -m mobile_sr.train.ship runs/fsrcnn_x2 --data-root ../shared/datasets/benchmark
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import asdict, replace
from pathlib import Path

from ..core.weights import PROTOCOL, hardware, rel, write_weights
from ..data.datasets import BenchmarkImage
from ..data.images import read_rgb
from ..data.imresize import imresize, quantize
from ..evaluation import Jpeg, evaluate, pipeline_for, published_scores
from ..models import WEIGHTS_DIR, Model, ModelError, info, load_model, load_torch_file
from ..models.reparam import reparameterize
from .trainer import TrainConfig


def train_command(cfg: dict, stopped_at: int | None = None) -> str:
    """The ``mobile-sr train`` line that reproduces a run's config.json (flags that differ from defaults)."""
    defaults = asdict(TrainConfig(model="", scale=0, data=[], out=""))
    flags = ["--model", cfg["model"], "--scale", str(cfg["scale"])]
    for d in cfg["data"]:
        flags += ["--data", d]
    flags += ["--out", rel(cfg["out"])]
    for key in ("steps", "batch", "patch", "lr", "tail_lr_scale", "warmup", "loss", "init", "init_from", "seed",
                "val_every", "ckpt_every", "lr_weight", "jpeg", "lr_codec", "ema"):
        if cfg.get(key, defaults[key]) != defaults[key]:
            value = rel(cfg[key]) if key == "init_from" else str(cfg[key])
            flags += ["--lambda" if key == "lr_weight" else "--" + key.replace("_", "-"), value]
    flags += [f"--{key}" for key in ("unconstrained", "qat") if cfg.get(key)]
    for key, value in cfg.get("config", {}).items():
        if isinstance(value, dict):  # a pair: --arch PART.KEY=INT
            for k, v in value.get("config", {}).items():
                flags += ["--arch", f"{key}.{k}={v}"]
        else:
            flags += ["--arch", f"{key}={value}"]
    line = "mobile-sr train " + shlex.join(flags)
    return line + (f"   # stopped at step {stopped_at}" if stopped_at is not None else "")


def _previous(src: str | None) -> tuple[dict, int, float] | None:
    """(config, steps run, seconds) of the run an ``--init-from`` source came out of: a checkpoint (``.pt``), or the
    weights a finished run folder wrote (``best``/``model.safetensors`` beside its config.json and summary.json);
    None for a shipped model or any other file."""
    if not src or not Path(src).exists():
        return None
    path = Path(src)
    if path.suffix == ".pt":
        ckpt = load_torch_file(path)
        return ckpt["train_config"], ckpt["step"], ckpt["train_seconds"]
    folder = path.parent
    if path.suffix == ".safetensors" and (folder / "config.json").exists() and (folder / "summary.json").exists():
        summary = json.loads((folder / "summary.json").read_text())
        return json.loads((folder / "config.json").read_text()), summary["step"], summary["train_seconds"]
    return None


def _stages(cfg: dict) -> tuple[list[str], int, float, str | None]:
    """Commands of every run this one was fine-tuned from (``--init-from``), oldest first, then this run's own
    (not counted: the caller adds this run's steps and seconds), with those earlier runs' steps and seconds, and
    what the oldest run started from (its ``--init-from``: a model name, a file, or None)."""
    stages, steps, seconds, root = [train_command(cfg)], 0, 0.0, cfg.get("init_from")
    prev = _previous(root)
    while prev is not None:
        pcfg, pstep, psec = prev
        stages.insert(0, train_command(pcfg, pstep if pstep < pcfg["steps"] else None))
        steps, seconds, root = steps + pstep, seconds + psec, pcfg.get("init_from")
        prev = _previous(root)
    return stages, steps, seconds, root


def pair_figures(model: Model, data_root: Path, cfg: dict) -> dict:
    """What a pair's manifest adds: how it was trained, the JPEG figures, and the baselines the README compares
    it with (its own upscaler on the published bicubic LR; the same upscaler trained on bicubic LR, shipped)."""
    up = model.module.parts["upscaler"]
    base_name = up["model"]
    out: dict = {
        "training": {"pipeline": "HR -> downscaler -> clamp + 8-bit rounding (straight-through) "
                                 + (f"-> differentiable JPEG q{cfg['jpeg']} " if cfg.get("jpeg") else "")
                                 + "-> upscaler; L1 to HR + lambda * L2 to the MATLAB-bicubic LR"
                                 if not cfg.get("unconstrained") else "unconstrained ablation: float LR, no LR term",
                     "lambda": cfg.get("lr_weight"), "jpeg": cfg.get("jpeg")},
        "eval_jpeg": {f"q{q}": published_scores(pipeline_for(model, codec=Jpeg(q)), data_root) for q in (75, 90)},
        "upscaler_on_bicubic_lr": published_scores(replace(pipeline_for(model), downscale=None), data_root),
    }
    try:  # the same upscaler, trained on bicubic LR and shipped: what the learned downscaler adds
        base = load_model(base_name, model.scale)
    except ModelError:
        return out
    if base.config == model.module.upscaler.config():
        out["baseline"] = {"model": base_name,
                           "eval": published_scores(pipeline_for(base), data_root),
                           "eval_jpeg": {f"q{q}": published_scores(pipeline_for(base, codec=Jpeg(q)), data_root)
                                         for q in (75, 90)}}
        vid4 = data_root.parent / "video" / "vid4"
        if vid4.is_dir():  # natural images in no training or benchmark set: the first frame of each sequence
            images = heldout_frames(vid4, int(model.scale))
            out["heldout_vid4_first_frames"] = {
                "learned": round(evaluate(pipeline_for(model), images, with_ssim=False).psnr, 3),
                "baseline_on_bicubic_lr": round(evaluate(pipeline_for(base), images, with_ssim=False).psnr, 3)}
    return out


def heldout_frames(vid4: Path, scale: int) -> list[BenchmarkImage]:
    """The first frame of every Vid4 sequence, cropped to a multiple of ``scale``, with its MATLAB-bicubic LR."""
    images = []
    for clip in sorted(p for p in vid4.iterdir() if p.is_dir()):
        hr = read_rgb(sorted(clip.glob("*.png"))[0])
        hr = hr[:, : hr.shape[1] // scale * scale, : hr.shape[2] // scale * scale]
        images.append(BenchmarkImage(clip.name, quantize(imresize(hr.double(), 1 / scale)).float(), hr))
    return images


# What a searched subnet's manifest (search/ship.py) records about its cut; a fine-tune of that subnet keeps it.
CUT_KEYS = ("arch", "budget_ms", "runtime", "input_size", "predicted", "measured", "device", "latency_model_check",
            "predictor")


def _cut_record(old: dict, config: dict) -> dict:
    """The search record in the shipped manifest ``old`` when it is a searched subnet's (else nothing), for a run
    that fine-tuned it into ``config``: its latencies still hold where the graph is the cut's; a fine-tune that gave
    the body another tail (``tail=direct``, ofa-s/m x4) says that they do not."""
    if "arch" not in old:
        return {}
    record = {k: old[k] for k in CUT_KEYS if k in old}
    record["cut_from"] = ("ofa-sr by the search command (its 'measured' PSNR is the cut's), then fine-tuned on its own "
                          "by the train command(s) (the first --init-from: the cut)")
    if config.get("tail") == "direct":
        record["tail"] = ("the cut's two PixelShuffle stages replaced by one (--arch tail=direct), trained by the "
                          "fine-tune: 'predicted' and 'measured' are the cut's latencies, not this graph's")
    return record


def ship(run: Path, data_root: Path, weights: str = "model.safetensors") -> Path:
    cfg = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    model = load_model(run / weights)
    name, scale = cfg["model"], cfg["scale"]
    spec = info(name)
    if spec.scale_range is not None:  # one file for every factor: the figures at each reported one
        scores = {f"x{s:g}": published_scores(pipeline_for(load_model(run / weights, s)), data_root, model=name)
                  for s in spec.scales}
    else:
        scores = published_scores(pipeline_for(model), data_root, model=name)
    stages, steps, seconds, root = _stages(cfg)
    seconds, steps = seconds + summary["train_seconds"], steps + summary["step"]
    # A searched subnet fine-tuned in several runs (each --init-from the last) keeps its cut's record too.
    old = (spec.manifest(scale) or {}) if root == name else {}  # the run started from the shipped weights
    cut = _cut_record(old, model.config)  # its search command is the first of old's commands
    if old:  # a further fine-tune of the shipped weights (a searched cut's: its search and fine-tunes so far)
        stages = (old["command"] if isinstance(old["command"], list) else [old["command"]]) + stages
        steps, seconds = steps + old.get("steps", 0), seconds + old.get("wall_minutes", 0) * 60
    manifest = {
        "model": name, "scale": scale, "config": model.config, **cut,
        **({"scales": list(spec.scales), "scale_range": list(spec.scale_range),
            "protocol_fractional": "at a fractional factor p/q no published LR exists: the x2 HR cropped (bottom/right) "
                                   "to a multiple of p, its MATLAB-bicubic LR made here and rounded to 8 bits, crop = "
                                   "ceil(s) (data.datasets.load_benchmark_at)"} if spec.scale_range else {}),
        "command": stages[0] if len(stages) == 1 else stages,
        "steps": steps, "wall_minutes": round(seconds / 60, 1),
        "data": "T91 + BSD200 (../shared/datasets/train), LR by MATLAB-bicubic on the fly"
                + (f", then {cfg['lr_codec']} (a CRF of that range per sample, one-frame clip, data/codec_lr.py)"
                   if cfg.get("lr_codec") else ""),
        "hardware": hardware(1),
        **({"qat": True} if cfg.get("qat") else {}),  # int8 exports then convert the weights as they are
        "eval": scores, "protocol": PROTOCOL,
        **(pair_figures(model, data_root, cfg) if model.role == "pair" else {}),
        "validation_history": summary.get("history", []),
    }
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    dest = WEIGHTS_DIR / spec.weights_path(scale).name  # <name>_x<s>, or <name> for weights shared by every scale
    # Shipped weights are the plain form: re-parameterised branches folded (the exported graph is the same either way).
    module = reparameterize(model.module)
    if module is not model.module:
        manifest["config"] = module.config()
        manifest["trained_as"] = {"config": model.config, "folded": "re-parameterised branches folded by deploy"}
    write_weights(module, manifest, dest)
    return dest


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data-root", type=Path, required=True, help="folder with Set5/ and Set14/")
    ap.add_argument("--weights", default="model.safetensors", help="model.safetensors (final) or best.safetensors")
    a = ap.parse_args()
    print(ship(a.run, a.data_root, a.weights))
