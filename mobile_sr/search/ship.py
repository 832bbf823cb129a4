"""Ship a trained OFA supernet and its specialized subnets as built-in models.

    python -m mobile_sr.search.ship runs/ofa-cpu --data-root ../shared/datasets/benchmark \
        --budgets 2:S,M,L --budgets 4:S,M,L [--runtime tflite --input-size 256x256]
    python -m mobile_sr.search.ship runs/rescale-ofa_x2 --data-root ../shared/datasets/benchmark   # a supernet pair

Writes ``models/weights/ofa-sr.safetensors`` (+ manifest with the training command and the
held-out history), ``ofa-sr.accuracy.json`` (the scored subnets the accuracy predictor learns from,
so a user's search needs no training data), and for each scale three subnets ``ofa-{s,m,l}_x<s>``
found by :func:`..search.run.search` at the given budgets, each with a manifest recording the
``mobile-sr search`` command, predicted and measured latency, and Set5/Set14 PSNR/SSIM.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import tempfile
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file

from ..core.files import atomic_write_text
from ..core.text import parse_size
from ..core.weights import PROTOCOL, hardware, rel, write_weights
from ..evaluation import Pipeline, pipeline_for, published_scores
from ..models import MODELS, SUPERNET, WEIGHTS_DIR, load_model, load_supernet, manifest
from ..models.deploy import deploy_subnet
from ..models.ofa import largest
from ..train.ofa import PHASES, OFATrainConfig
from ..train.ship import pair_figures
from .run import score_subnets, search, shipped_accuracy

SIZES = ("s", "m", "l")


def train_command(cfg: dict) -> str:
    """The ``mobile-sr train --model ofa-sr`` (or ``--model rescale-ofa``, a supernet pair) line of a run's
    config.json."""
    d = asdict(OFATrainConfig(data=[], out=""))
    pair = cfg.get("pair")
    flags = ["--model", pair, "--scale", str(cfg["scale"])] if pair else ["--model", "ofa-sr"]
    for folder in cfg["data"]:
        flags += ["--data", rel(folder)]
    patch = cfg["lr_patch"] * (cfg["scale"] if pair else 2)
    flags += ["--out", rel(cfg["out"]), "--phase-steps", ",".join(str(cfg["steps"][p]) for p in PHASES),
              "--batch", str(cfg["batch"]), "--patch", str(patch), "--lr", str(cfg["lr"]["full"]),
              "--shrink-lr", str(cfg["lr"]["kernel"])]
    if pair:
        flags += ["--lambda", str(cfg["lr_weight"])] + (["--jpeg", cfg["jpeg"]] if cfg.get("jpeg") else [])
    if cfg["subnets"] != d["subnets"]:
        flags += ["--subnets", str(cfg["subnets"])]
    if cfg["seed"] != d["seed"]:
        flags += ["--seed", str(cfg["seed"])]
    if cfg.get("init_from"):
        flags += ["--init-from", rel(cfg["init_from"])]
    if cfg.get("rep"):
        flags += ["--arch", "rep=1"]
    flags += ["--val-every", str(cfg["val_every"])]
    return "mobile-sr train " + shlex.join(flags)


def run_chain(run: Path) -> list[tuple[dict, dict]]:
    """(config, summary) of a run and of every run it continued (``--init-from``), oldest first; a chain ends at a
    run that started from scratch or from a shipped model (``ofa-sr``, whose own record is its manifest)."""
    chain = []
    while True:
        cfg = json.loads((run / "config.json").read_text())
        chain.insert(0, (cfg, json.loads((run / "summary.json").read_text())))
        if not cfg.get("init_from") or cfg["init_from"] in MODELS:
            return chain
        run = Path(cfg["init_from"])  # as recorded: relative to where training ran, like --out
        if not (run / "config.json").is_file():
            raise FileNotFoundError(f"{run}: the run this one continued (--init-from) is needed for its record")


def _history(chain: list[tuple[dict, dict]]) -> list[dict]:
    """Held-out history of all runs of the chain, with steps counted from the first run's start."""
    out, offset = [], 0
    for _, summary in chain:
        out += [{**h, "step": h["step"] + offset} for h in summary["history"]]
        offset += summary["step"]
    return out


def ship_supernet(run: Path, data_root: Path) -> dict:
    chain = run_chain(run)
    net = load_supernet(run)
    manifest = {
        "model": "ofa-sr", "scales": [2, 4], "config": net.config(),
        "command": [train_command(cfg) for cfg, _ in chain],
        "steps": sum(s["step"] for _, s in chain),
        "wall_minutes": round(sum(s["train_seconds"] for _, s in chain) / 60, 1),
        "data": "T91 + BSD200 (../shared/datasets/train) minus every 10th image (held out), MATLAB-bicubic LR",
        "hardware": hardware(2),
        "eval": {f"x{s}": published_scores(Pipeline(deploy_subnet(net, largest(s)), s), data_root) for s in (2, 4)},
        "protocol": PROTOCOL, "validation_history": _history(chain),
    }
    write_weights(net, manifest, WEIGHTS_DIR / "ofa-sr.safetensors")
    return manifest


def ship_supernet_pair(run: Path, data_root: Path) -> dict:
    """A supernet-pair run (``train --model rescale-ofa``) as the built-in of its name: the pair's weights (the
    downscaler and the whole supernet) with a manifest, and its subnets scored on its own LR
    (``<name>.accuracy.json``), so that ``mobile-sr search --supernet <name>`` needs no training data."""
    chain = run_chain(run)
    cfg = chain[-1][0]
    name, scale = cfg["pair"], cfg["scale"]
    model = load_model(run / "model.safetensors")
    # Started from the shipped supernet: its record comes first, and its steps and time count.
    base = manifest(SUPERNET, 2) if chain[0][0].get("init_from") == SUPERNET else None
    commands = (base["command"] if base else []) + [train_command(c) for c, _ in chain]
    doc = {
        "model": name, "scale": scale, "config": model.config,
        "command": commands if len(commands) > 1 else commands[0],
        "steps": (base["steps"] if base else 0) + sum(s["step"] for _, s in chain),
        "wall_minutes": round((base["wall_minutes"] if base else 0)
                              + sum(s["train_seconds"] for _, s in chain) / 60, 1),
        "data": "T91 + BSD200 (../shared/datasets/train) minus every 10th image (held out); the downscaler's LR "
                "against the MATLAB-bicubic LR",
        "hardware": hardware(1),
        "eval": published_scores(pipeline_for(model), data_root, model=name), "protocol": PROTOCOL,
        "eval_note": "the pair's largest subnet; `mobile-sr search --supernet " + name + "` cuts smaller ones",
        **pair_figures(model, data_root, cfg),
        "validation_history": _history(chain),
    }
    write_weights(model.module, doc, WEIGHTS_DIR / f"{name}_x{scale}.safetensors")
    ship_accuracy(run)
    return doc


def ship_accuracy(run: Path) -> None:
    """The scored subnets of a supernet (or supernet-pair) run, written where search looks for a built-in's."""
    cfg = json.loads((run / "config.json").read_text())
    name = cfg.get("pair") or SUPERNET
    rows = score_subnets(load_supernet(run, pairs=True), cfg["data"], cfg["holdout_every"], progress=True)
    path = shipped_accuracy(name, cfg.get("scale", 2))
    assert path is not None  # a built-in name
    atomic_write_text(path, json.dumps({"supernet": name, "holdout_every": cfg["holdout_every"],
                                        "data": [rel(d) for d in cfg["data"]], "subnets": rows}, indent=1))


def ship_subnet(name: str, scale: int, budget: float, runtime: str, size: tuple[int, int], data_root: Path,
                data: list[str], cache: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "subnet"
        rep = search(supernet_spec="ofa-sr", scale=scale, budget_ms=budget, runtime=runtime, plan=None, threads=1,
                     size=size, out=out, data=data, cache_dir=cache)
        model = load_model(out)
        state = load_file(out / "model.safetensors")
    cmd = (f"mobile-sr search --scale {scale} --latency-ms {budget:g} --runtime {runtime} --device host "
           f"--input-size {size[0]}x{size[1]} -o {name}_x{scale}")
    manifest = {"model": name, "scale": scale, "config": rep["config"], "arch": rep["arch"], "command": cmd,
                "cut_from": "ofa-sr (no retraining)", "budget_ms": budget, "runtime": runtime,
                "input_size": list(size), "predicted": rep["predicted"], "measured": rep["measured"],
                "device": f"host: {platform.machine()}, 1 thread, CPU time per run",
                "latency_model_check": rep["latency_model_check"], "predictor": rep["predictor"],
                "eval": published_scores(pipeline_for(model), data_root), "protocol": PROTOCOL}
    model.module.load_state_dict(state)
    write_weights(model.module, manifest, WEIGHTS_DIR / f"{name}_x{scale}.safetensors")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data-root", type=Path, required=True, help="folder with Set5/ and Set14/")
    ap.add_argument("--budgets", action="append", default=[], metavar="SCALE:S,M,L", help="ms budgets per scale")
    ap.add_argument("--runtime", default="tflite")
    ap.add_argument("--input-size", default="256x256")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--skip-supernet", action="store_true", help="only (re)search the subnets")
    a = ap.parse_args()
    if json.loads((a.run / "config.json").read_text()).get("pair"):  # a supernet pair (train --model rescale-ofa)
        print(json.dumps(ship_supernet_pair(a.run, a.data_root)["eval"]))
        return
    if not a.skip_supernet:
        print(json.dumps(ship_supernet(a.run, a.data_root)["eval"]))
        ship_accuracy(a.run)
    data = json.loads((a.run / "config.json").read_text())["data"]
    for item in a.budgets:
        scale, _, budgets = item.partition(":")
        for name, budget in zip(SIZES, budgets.split(","), strict=True):
            m = ship_subnet(f"ofa-{name}", int(scale), float(budget), a.runtime, parse_size(a.input_size),
                            a.data_root, data, a.cache)
            print(f"ofa-{name} x{scale}: {m['measured']} {m['eval']}")


if __name__ == "__main__":
    main()
