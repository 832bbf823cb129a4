"""The training loop: Adam + L1/Charbonnier, cosine schedule, atomic checkpoints, bit-exact resume, DDP.

Resume is exact because nothing in a step depends on hidden state that is not in the checkpoint:
the batch at step k is a pure function of (seed, k) (see :class:`TrainPatches`), the learning
rate is computed from k, and the model and Adam state are saved whole. Under ``torchrun`` each
rank builds its slice of the same global batch and gloo all-reduces the gradients, so N processes
train the same model as one process with the same global batch.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ..core.files import atomic_write, atomic_write_text
from ..core.weights import write_weights
from ..data.datasets import TrainPatches, load_benchmark
from ..evaluation import Pipeline, evaluate
from ..models import MODELS, ModelError, create_model, load_model
from ..models.fsrcnn import FSRCNN, init_bicubic
from .schedule import warmup_cosine

CHECKPOINT = "last.pt"


@dataclass
class TrainConfig:
    model: str
    scale: int
    data: list[str]
    out: str
    steps: int = 100_000
    batch: int = 32
    patch: int = 64  # HR patch side
    lr: float = 1e-3
    tail_lr_scale: float = 0.1  # the upsampling layer learns slower (FSRCNN paper: 10x smaller)
    min_lr_ratio: float = 0.01  # cosine floor, as a fraction of lr
    warmup: int = 500
    loss: str = "l1"  # or "charbonnier"
    seed: int = 0
    init: str = "paper"  # "paper" or "bicubic" (FSRCNN only, see models.fsrcnn.init_bicubic)
    init_from: str | None = None  # fine-tune: load every weight that fits from this model/checkpoint
    val_every: int = 1000
    ckpt_every: int = 500
    val_dataset: str = "Set5"
    val_root: str | None = None
    config: dict = field(default_factory=dict)  # model constructor overrides

    def check(self) -> None:
        if self.model not in MODELS:
            raise ModelError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}")
        if self.loss not in ("l1", "charbonnier"):
            raise ValueError(f"unknown loss {self.loss!r}; use l1 or charbonnier")
        if self.init not in ("paper", "bicubic"):
            raise ValueError(f"unknown init {self.init!r}; use paper or bicubic")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be >= 1")


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up then cosine decay to ``min_lr_ratio * lr``; step is 0-based."""
    return warmup_cosine(step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)


def _loss(cfg: TrainConfig, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    if cfg.loss == "l1":
        return (sr - hr).abs().mean()
    return torch.sqrt((sr - hr) ** 2 + 1e-6).mean()


def atomic_save(obj: object, path: Path) -> None:
    """torch.save through a temp file, fsync, rename: a kill or a power cut leaves the old checkpoint or the new one."""
    atomic_write(path, lambda f: torch.save(obj, f), fsync=True)


def build_model(cfg: TrainConfig) -> nn.Module:
    torch.manual_seed(cfg.seed)
    try:
        model = create_model(cfg.model, cfg.scale, pretrained=False, **cfg.config)
    except TypeError as exc:
        raise ValueError(f"--arch {cfg.config}: not a setting of {cfg.model} ({exc})") from None
    if cfg.init == "bicubic":
        if not isinstance(model, FSRCNN):
            raise ValueError("--init bicubic is only defined for FSRCNN models")
        init_bicubic(model)
    if cfg.init_from:
        src = load_model(cfg.init_from).module.state_dict()
        own = model.state_dict()
        fitting = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(fitting, strict=False)
    return model


def start_run(out_dir: str, batch: int, resume: bool) -> tuple[int, int, Path, Path]:
    """(world size, rank, run folder, checkpoint path) of a run about to start, under torchrun or not.

    Refuses to overwrite a run (``--resume`` continues it) and to resume one that has no checkpoint.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if batch % world:
        raise ValueError(f"batch {batch} must be divisible by the number of processes ({world})")
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise FileExistsError(f"{ckpt_path} exists; pass --resume to continue it, or choose another --out")
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    return world, rank, out, ckpt_path


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train per ``cfg``; returns the final summary (step, best validation PSNR, paths)."""
    cfg.check()
    world, rank, out, ckpt_path = start_run(cfg.out, cfg.batch, resume)

    data = TrainPatches(cfg.data, cfg.scale, cfg.patch)
    val = load_benchmark(cfg.val_dataset, cfg.scale, cfg.val_root) if rank == 0 and cfg.val_every else []
    model = build_model(cfg)
    tail_ids = {id(p) for p in model.tail().parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in tail_ids], "lr_scale": 1.0},
        {"params": [p for p in model.parameters() if id(p) in tail_ids], "lr_scale": cfg.tail_lr_scale},
    ]
    opt = torch.optim.Adam(groups, lr=cfg.lr)
    step, best, elapsed, history = 0, -math.inf, 0.0, []
    if resume:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        saved = ckpt["train_config"]
        for key in ("model", "scale", "batch", "patch", "seed", "loss", "config"):
            if saved[key] != asdict(cfg)[key]:
                raise ValueError(f"--resume: {key} differs from the checkpoint ({saved[key]!r} vs {asdict(cfg)[key]!r})")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, best, elapsed, history = ckpt["step"], ckpt["best_psnr"], ckpt["train_seconds"], ckpt["history"]
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")

    net: nn.Module = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    meta = {"model": cfg.model, "scale": cfg.scale, "config": model.config()}

    def checkpoint() -> None:
        atomic_save(
            {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "best_psnr": best,
             "train_seconds": elapsed, "history": history, "train_config": asdict(cfg), "meta": meta},
            ckpt_path,
        )

    bar = tqdm(total=cfg.steps, initial=step, disable=not progress or rank != 0,
               dynamic_ncols=True, unit="it")
    val_psnr = float("nan")
    t_last = time.perf_counter()
    while step < cfg.steps:
        lr = lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        lr_img, hr_img = data.batch(cfg.seed, step, range(rank, cfg.batch, world))
        net.train()
        loss = _loss(cfg, net(lr_img), hr_img)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        now = time.perf_counter()
        elapsed += now - t_last
        t_last = now
        if rank == 0:
            if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
                model.eval()
                val_psnr = evaluate(Pipeline(model, cfg.scale), val, with_ssim=False).psnr
                history.append({"step": step, "loss": loss.item(), "val_psnr": val_psnr, "seconds": elapsed})
                if val_psnr > best:
                    best = val_psnr
                    write_weights(model, {**meta, "step": step, "val_psnr": val_psnr}, out / "best.safetensors")
                t_last = time.perf_counter()  # validation is not training time
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                checkpoint()
            bar.set_postfix(loss=f"{loss.item():.4f}", val=f"{val_psnr:.2f}", lr=f"{lr:.1e}", refresh=False)
        bar.update(1)
    bar.close()
    summary = {"step": step, "best_val_psnr": best, "train_seconds": elapsed, "out": str(out)}
    if rank == 0:
        write_weights(model, {**meta, "step": step, "train_seconds": elapsed}, out / "model.safetensors")
        atomic_write_text(out / "summary.json", json.dumps({**summary, "history": history}, indent=2) + "\n")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary
