"""``mobile-sr search``: specialize the supernet for a latency budget on one runtime and device.

Steps, each cached so a second search on the same device is seconds:

1. latency model: the layer table of the runtime/device plus per-scale overheads, checked against
   whole subnets (rank correlation, mean error), cached under ``cache_dir``;
2. accuracy predictor: held-out PSNR of sampled subnets (shipped for the built-in supernet,
   measured and cached for a trained one), an MLP fitted on it, its held-out error reported;
3. evolutionary search; the winner is cut out as a static subnet, measured (latency with the
   same runtime, PSNR on the held-out split and Set5) and written to the output folder.

A supernet pair (``train --model rescale-ofa``) is searched the same way at its one scale: the latency of its
upscaler is the supernet's (the same layers), every subnet is scored on the pair's own 8-bit LR, and the result
is a pair, the downscaler whole and the upscaler cut, which loads and exports like any pair.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from dataclasses import asdict
from pathlib import Path

from ..bench.run import AdbPlan
from ..core.files import atomic_write, atomic_write_text, staging
from ..core.weights import write_weights
from ..data.datasets import holdout_images, load_benchmark
from ..evaluation import Pipeline, evaluate
from ..models import MODELS, WEIGHTS_DIR, load_supernet
from ..models.deploy import deploy_module, deploy_pair_subnet, deploy_subnet
from ..models.ofa import OFASR, SCALES, smallest
from ..models.pair import SRPair
from . import latency as lat
from . import predictor as acc
from .evolution import EvolutionConfig, check_budget, evolve

SHIPPED_ACCURACY = WEIGHTS_DIR / "ofa-sr.accuracy.json"
ACCURACY_SUBNETS = 150  # per scale


def shipped_accuracy(spec: str, scale: int) -> Path | None:
    """The scored subnets shipped beside a built-in supernet (one file for both scales) or supernet pair (one per
    scale, beside its weights), so that its search needs no data."""
    if spec not in MODELS:
        return None
    return MODELS[spec].weights_path(scale).with_suffix("").with_suffix(".accuracy.json")


class SearchError(ValueError):
    """A search input that cannot work (no data to score subnets, folder exists, ...)."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("MOBILE_SR_CACHE", Path.home() / ".cache" / "mobile-sr"))


def supernet_digest(net: OFASR | SRPair) -> str:
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def device_id(plan: AdbPlan | None) -> str:
    if plan is None:
        return "host-" + hashlib.sha256(f"{platform.node()}|{lat.host_cpu()}".encode()).hexdigest()[:8]
    return "adb-" + plan.adb.serial


def latency_model(supernet: OFASR, scale: int, size: tuple[int, int], *, runtime: str, plan: AdbPlan | None,
                  threads: int, cache_dir: Path, check_n: int = 20, progress: bool = False, log=print,
                  budget_ms: float | None = None) -> tuple[lat.LatencyModel, dict]:
    """The cached (or freshly measured) latency model of ``scale`` and its check against whole subnets.

    With ``budget_ms``, a budget below the smallest subnet is refused (BudgetError) before any long work: from
    the cached model's prediction, or on a cold cache from one measurement of the smallest subnet (seconds),
    which the model then reuses for its overhead, so that prediction and this figure are the same number."""
    path = cache_dir / f"latency_{runtime}_{device_id(plan)}_{size[0]}x{size[1]}_t{threads}_x{scale}.json"
    cached = _read_cache(path)
    if cached is not None:
        model, check = lat.LatencyModel.from_dict(cached["model"]), cached["check"]
        if budget_ms is not None:
            check_budget(scale, budget_ms, model.predict(smallest(scale)))
        return model, check
    floor = lat.measure_subnet(supernet, smallest(scale), *size, runtime=runtime, plan=plan, threads=threads)
    if budget_ms is not None:
        check_budget(scale, budget_ms, floor, how="measures")
    log(f"measuring the {runtime} layer table on {device_id(plan)} (once; cached in {path})")
    model = lat.build(supernet, *size, runtime=runtime, plan=plan, threads=threads, scales=(scale,), progress=progress,
                      smallest_ms={str(scale): floor})
    log(f"checking it against {check_n} whole subnets")
    check = lat.check(model, supernet, check_n, runtime=runtime, plan=plan, threads=threads, scales=(scale,))[str(scale)]
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"model": model.to_dict(), "check": check}, indent=1).encode()
    atomic_write(path, data)
    return model, check


def _read_cache(path: Path) -> dict | None:
    """A cached latency model, or None when absent or unreadable (another version's, damaged): then it is
    measured again rather than trusted."""
    try:
        doc = json.loads(path.read_text())
        lat.LatencyModel.from_dict(doc["model"])
        complete = "subnets" in doc["check"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):  # OSError: FileNotFoundError, the usual case
        return None
    return doc if complete else None


def accuracy_rows(target: OFASR | SRPair, spec: str, scale: int, cache_dir: Path, data: list[str] | None,
                  holdout_every: int, progress: bool = False, log=print) -> list[dict]:
    """(arch, held-out PSNR) rows: shipped for the built-in supernet, else measured once and cached (a supernet
    pair's at its scale, on its own LR, under the digest of the whole pair)."""
    shipped = shipped_accuracy(spec, scale)
    if shipped is not None and shipped.exists():
        return json.loads(shipped.read_text())["subnets"]
    path = cache_dir / f"accuracy_{supernet_digest(target)}.json"
    if path.exists():
        return json.loads(path.read_text())["subnets"]
    if not data:
        raise SearchError("scoring subnets needs the supernet's training images: pass --data (the held-out split "
                          "of those folders is used, never Set5/Set14)")
    rows = score_subnets(target, data, holdout_every, progress, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = json.dumps({"supernet": supernet_digest(target), "data": data, "holdout_every": holdout_every,
                      "subnets": rows}, indent=1).encode()
    atomic_write(path, doc)
    return rows


def score_subnets(target: OFASR | SRPair, data: list[str], holdout_every: int, progress: bool = False,
                  log=print) -> list[dict]:
    """The held-out PSNR of ``ACCURACY_SUBNETS`` random subnets per scale (plus the largest and the smallest): a
    supernet's at x2 and x4 on bicubic LR, a supernet pair's at its scale on its own 8-bit LR. What search caches
    and what shipping writes beside the weights."""
    pair = isinstance(target, SRPair)
    val = held_out(data, holdout_every, log, scales=(int(target.scale),) if pair else SCALES)
    first = next(iter(val.values()))
    on = ", each on the pair's own LR" if pair else ""
    log(f"scoring {ACCURACY_SUBNETS} random subnets per scale on {len(first)} held-out images{on} (once; cached)")
    return acc.collect(target.upscaler if pair else target, val, ACCURACY_SUBNETS, progress=progress,
                       downscaler=target.downscaler if pair else None)


def held_out(data: list[str], holdout_every: int, log=print, scales: tuple[int, ...] = SCALES) -> dict[int, list]:
    """The held-out split at each scale (x2 and x4); an unreadable image is skipped, named once."""
    return {s: holdout_images(data, holdout_every, s, warn=(lambda m: log(f"warning: {m}")) if s == scales[0] else None)
            for s in scales}


def run_config(spec: str) -> dict:
    """The training config of a supernet run folder (for its data and held-out split), else {}."""
    p = Path(spec)
    cfg = (p if p.is_dir() else p.parent) / "config.json"
    return json.loads(cfg.read_text()) if cfg.exists() else {}


def search(*, supernet_spec: str, scale: int, budget_ms: float, runtime: str, plan: AdbPlan | None, threads: int,
           size: tuple[int, int], out: Path, seed: int = 0, data: list[str] | None = None,
           cache_dir: Path | None = None, evolution: EvolutionConfig | None = None, progress: bool = False,
           log=print) -> dict:
    """Run the whole specialization and write ``out``/{model.safetensors, model.json, search.json}.

    Cheap refusals come first: a budget that is not a positive number, an output in the way, then (before the
    layer table or the predictor, minutes of work) a budget below the smallest subnet."""
    if not (math.isfinite(budget_ms) and budget_ms > 0):
        raise SearchError(f"latency budget {budget_ms!r} ms: must be a number of milliseconds > 0")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SearchError(f"{out} exists and is not empty; choose another -o")
    if not out.resolve().parent.is_dir():
        raise SearchError(f"{out}: its folder does not exist")
    cache_dir = cache_dir or default_cache_dir()
    target = load_supernet(supernet_spec, pairs=True, scale=scale)
    pair = target if isinstance(target, SRPair) else None
    supernet: OFASR = pair.upscaler if pair is not None else target  # type: ignore[assignment]
    if pair is not None and scale != pair.scale:
        raise SearchError(f"{supernet_spec} is a x{pair.scale:g} pair; search it with --scale {pair.scale:g}")
    down = deploy_module(pair.downscaler) if pair is not None else None
    train_cfg = run_config(supernet_spec) if supernet_spec not in MODELS else {}
    data = data or train_cfg.get("data")
    holdout_every = int(train_cfg.get("holdout_every", 10))

    lat_model, lat_check = latency_model(supernet, scale, size, runtime=runtime, plan=plan, threads=threads,
                                         cache_dir=cache_dir, progress=progress, log=log, budget_ms=budget_ms)
    rows = accuracy_rows(target, supernet_spec, scale, cache_dir, data, holdout_every, progress=progress, log=log)
    pred_report = acc.holdout_error(rows, seed)
    predictor = acc.fit(rows, seed)
    arch, pred_psnr, pred_ms, history = evolve(scale, budget_ms, lat_model.predict, predictor.predict, seed,
                                               evolution)

    net = deploy_subnet(supernet, arch)
    measured_ms = lat.measure_subnet(supernet, arch, *size, runtime=runtime, plan=plan, threads=threads, runs=20)
    set5_result = evaluate(Pipeline(net, scale, downscale=down), load_benchmark("Set5", scale), with_ssim=False)
    held = None
    if data:
        held = acc.score(supernet, arch, holdout_images(data, holdout_every, scale), down)
    measured = {"latency_ms": round(measured_ms, 3), "heldout_psnr": None if held is None else round(held, 3),
                "set5_psnr": round(set5_result.psnr, 3)}
    out_module, identity = net, {"model": "ofa-subnet", "scale": scale, "config": net.config()}
    if pair is not None:  # the downscaler whole, the upscaler cut: a pair that loads, evaluates and exports as one
        out_module = deploy_pair_subnet(pair, arch)
        identity = {"model": "pair", "scale": scale, "config": out_module.config()}
        measured["set5_lr_psnr"] = round(set5_result.lr_psnr, 2)
    meta = {**identity, "arch": arch.to_dict(),
            "supernet": {"spec": supernet_spec, "digest": supernet_digest(target)},
            "budget_ms": budget_ms, "runtime": runtime, "device": device_id(plan), "threads": threads,
            "input_size": list(size), "seed": seed,
            "predicted": {"latency_ms": round(pred_ms, 3), "heldout_psnr": round(float(pred_psnr), 3)},
            "measured": measured}
    report = {**meta, "latency_model_check": {k: v for k, v in lat_check.items() if k != "subnets"},
              "latency_check_subnets": lat_check["subnets"], "predictor": pred_report,
              "accuracy_subnets": len(rows), "evolution": asdict(evolution or EvolutionConfig()),
              "best_per_generation": history}
    _write(out, out_module, meta, report)
    return report


def _write(out: Path, net, meta: dict, report: dict) -> None:
    """All three files into a staging folder beside ``out``, then one rename: no half-written result."""
    with staging(out.resolve().parent, out.name) as stage:
        write_weights(net, meta, stage / "model.safetensors")
        atomic_write_text(stage / "search.json", json.dumps(report, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(stage, out)  # the whole folder at once
