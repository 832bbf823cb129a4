"""Progressive shrinking for the OFA SR supernet (Cai et al., ICLR 2020), x2 and x4 in one run.

Phases run in OFA's order, each with its own optimizer and warm-up + cosine schedule:

1. ``full``: only the largest subnet trains (k=7, depth 3 per stage, expand 4).
2. ``kernel``: kernels sampled from {3,5,7}; the kernel-transformation matrices learn.
3. ``depth``: stage depths sampled from {1,2,3} as well.
4. ``expand``: hidden channels are importance-sorted once, then expand ratios sampled from {2,3,4}.

The scale alternates every step (x2, x4), so the shared body serves both throughout. In the
shrinking phases a step trains the largest subnet on the ground truth and ``subnets`` sampled
subnets (the first is the phase's smallest: the "sandwich rule") on the ground truth plus
``distill`` times the L1 distance to the largest subnet's (detached) output, i.e. in-place
distillation from the largest subnet. All losses are summed into one backward pass.

A *supernet pair* (``pair``: a built-in pair whose upscaler is ``ofa-sr``, e.g. ``rescale-ofa``) trains one
learned downscaler with the whole supernet, the OFA seed's setting, at the pair's one scale: every step the
downscaler's LR is rounded to 8 bits (``channel``, straight-through; a differentiable JPEG with ``jpeg``) and
restored by the largest subnet and the sampled ones, so the downscaler learns from every subnet at once and
progressive shrinking (or its last phase, for a trained supernet) still holds; λ·L2 to the MATLAB-bicubic LR
keeps the LR the picture. ``mobile-sr search`` then cuts subnets of the pair's supernet for a budget.

Resume is bit-exact like :mod:`.trainer`: batches and sampled archs are pure functions of
(seed, step), the phase and learning rate follow from the step, and the checkpoint holds the
model and the current phase's optimizer. Under ``torchrun`` each rank takes its slice of the
batch and the gradients are all-reduced by hand (several forward passes per step rule out DDP's
wrapper).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..core.files import atomic_write_text
from ..core.weights import write_weights
from ..data.datasets import TrainPatches, holdout_images
from ..evaluation import Pipeline, evaluate
from ..models import SUPERNET, create_model, is_supernet_pair, load_supernet
from ..models.ofa import DEPTHS, EXPANDS, KERNELS, OFASR, SCALES, Arch, largest, sample, smallest
from ..models.pair import SRPair
from .channel import Channel, JpegRange, channel
from .schedule import warmup_cosine
from .trainer import atomic_save, hold_for_test, load_run_checkpoint, start_run, warn, write_config, written

PHASES = ("full", "kernel", "depth", "expand")


def phase_space(phase: str) -> dict:
    """The choices a phase samples from (kernels, depths, expands)."""
    return {
        "full": {"kernels": (KERNELS[-1],), "depths": (DEPTHS[-1],), "expands": (EXPANDS[-1],)},
        "kernel": {"kernels": KERNELS, "depths": (DEPTHS[-1],), "expands": (EXPANDS[-1],)},
        "depth": {"kernels": KERNELS, "depths": DEPTHS, "expands": (EXPANDS[-1],)},
        "expand": {"kernels": KERNELS, "depths": DEPTHS, "expands": EXPANDS},
    }[phase]


@dataclass
class OFATrainConfig:
    data: list[str]
    out: str
    steps: dict = field(default_factory=lambda: {"full": 6000, "kernel": 2000, "depth": 2000, "expand": 2000})
    lr: dict = field(default_factory=lambda: {"full": 2e-3, "kernel": 5e-4, "depth": 5e-4, "expand": 5e-4})
    batch: int = 16
    lr_patch: int = 32  # LR patch side; the HR patch is lr_patch * scale
    subnets: int = 2  # sampled subnets per step in the shrinking phases (plus the largest)
    distill: float = 1.0
    warmup: int = 200
    min_lr_ratio: float = 0.01
    holdout_every: int = 10  # every 10th training image is the validation split
    seed: int = 0
    val_every: int = 1000
    ckpt_every: int = 250
    width: int = 24
    rep: int = 0  # 1: re-parameterised blocks (models/ofa/layers.py), folded by deploy into the plain graph
    # Continue a trained supernet in new phases (e.g. a longer expand phase); a supernet pair may also continue a
    # trained supernet pair of its kind and scale (downscaler included).
    init_from: str | None = None
    # A supernet pair: a built-in pair whose upscaler is ofa-sr, trained at one scale with its downscaler.
    pair: str | None = None
    scale: int = 2  # the pair's scale (a plain supernet alternates x2 and x4)
    lr_weight: float = 1.0  # λ of λ·L2(learned LR, MATLAB-bicubic LR)
    jpeg: str | None = None  # "LO-HI[@P]": JPEG-aware training (train/channel.py)

    def check(self) -> None:
        if set(self.steps) != set(PHASES) or set(self.lr) != set(PHASES):
            raise ValueError(f"steps and lr need one entry per phase: {', '.join(PHASES)}")
        if any(int(v) < 0 for v in self.steps.values()) or self.total_steps < 1:
            raise ValueError("phase steps must be >= 0 and add up to >= 1")
        if self.batch < 1 or self.lr_patch < 8 or self.subnets < 1:
            raise ValueError("batch >= 1, lr_patch >= 8 and subnets >= 1 are required")
        if self.rep not in (0, 1):
            raise ValueError(f"--arch rep={self.rep}: rep must be 0 or 1")
        if self.pair is not None:
            if self.rep:
                raise ValueError(f"--arch rep=1: re-parameterised training is for ofa-sr itself, not the supernet "
                                 f"pair {self.pair} yet")
            if not is_supernet_pair(self.pair):
                raise ValueError(f"{self.pair!r} is not a pair whose upscaler is the {SUPERNET} supernet")
            if self.scale not in SCALES:
                raise ValueError(f"the {SUPERNET} supernet serves x{' and x'.join(map(str, SCALES))}, not x{self.scale}")
            if not self.lr_weight >= 0:
                raise ValueError(f"the LR weight (lambda) must be >= 0, got {self.lr_weight}")
            if self.jpeg is not None:
                JpegRange.parse(self.jpeg)

    @property
    def scales(self) -> tuple[int, ...]:
        """The scales trained: both for the supernet, the pair's one for a supernet pair."""
        return (self.scale,) if self.pair else SCALES

    @property
    def total_steps(self) -> int:
        return sum(int(self.steps[p]) for p in PHASES)

    def phase_at(self, step: int) -> tuple[str, int]:
        """(phase, first step of that phase) for a 0-based step."""
        start = 0
        for p in PHASES:
            n = int(self.steps[p])
            if step < start + n:
                return p, start
            start += n
        return PHASES[-1], start - int(self.steps[PHASES[-1]])

    def lr_at(self, step: int) -> float:
        """Each phase has its own warm-up (at most a tenth of the phase) and cosine."""
        phase, start = self.phase_at(step)
        n = int(self.steps[phase])
        return warmup_cosine(step - start, n, self.lr[phase], min(self.warmup, max(1, n // 10)), self.min_lr_ratio)


def archs_for_step(cfg: OFATrainConfig, step: int) -> tuple[int, list[Arch]]:
    """The scale and the subnets trained at ``step``: [largest] in ``full``, else [largest, smallest, random...]."""
    scale = cfg.scales[step % len(cfg.scales)]
    phase, _ = cfg.phase_at(step)
    if phase == "full":
        return scale, [largest(scale)]
    space = phase_space(phase)
    rng = random.Random(cfg.seed * 1_000_003 + step)  # ints only: str hashes are salted per process
    subs = [smallest(scale, **space)] + [sample(rng, scale, **space) for _ in range(cfg.subnets - 1)]
    return scale, [largest(scale), *subs]


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=1e-4)


def validate(model: OFASR, val: dict[int, list], archs: dict[str, Arch], downscaler: torch.nn.Module | None = None
             ) -> dict[str, float]:
    """Held-out PSNR (Y, crop = scale) of named subnets; with a pair's ``downscaler``, on its own 8-bit LR."""
    out = {}
    model.eval()
    if downscaler is not None:
        downscaler.eval()
    for name, arch in archs.items():
        model.set_active(arch)
        pipe = Pipeline(model, arch.scale, downscale=downscaler)
        out[name] = round(evaluate(pipe, val[arch.scale], with_ssim=False).psnr, 3)
    model.set_active(largest(next(iter(val))))
    return out


def step_loss(cfg: OFATrainConfig, net: torch.nn.Module, archs: list[Arch], lr_img: torch.Tensor,
              hr_img: torch.Tensor, send: Channel | None = None) -> torch.Tensor:
    """One step's loss: the largest subnet (``archs[0]``) on the ground truth, every other one on the ground truth
    plus ``distill`` x its L1 distance to the largest's detached output. A supernet pair's downscaler makes the
    LR from ``hr_img``, ``send`` rounds it to 8 bits (and JPEG-codes some), and every subnet restores that same
    LR, so the downscaler's gradient is the sum over all of them; ``lr_img``, the MATLAB-bicubic LR, is then
    the target of the λ·L2 term."""
    loss = torch.zeros(())
    if isinstance(net, SRPair):
        if send is None:
            raise ValueError("a supernet pair's step needs the channel its LR is sent through")
        made = net.downscaler(hr_img)
        if cfg.lr_weight:
            loss = cfg.lr_weight * (made - lr_img).pow(2).mean()
        lr_img = send(made)
    model = net.upscaler if isinstance(net, SRPair) else net
    lr_img = lr_img.contiguous(memory_format=torch.channels_last)
    model.set_active(archs[0])
    teacher = model(lr_img)
    loss = loss + (teacher - hr_img).abs().mean()
    for arch in archs[1:]:
        model.set_active(arch)
        sr = model(lr_img)
        loss = loss + (sr - hr_img).abs().mean() + cfg.distill * (sr - teacher.detach()).abs().mean()
    return loss


def build_net(cfg: OFATrainConfig) -> tuple[torch.nn.Module, OFASR]:
    """(what trains and is saved, its supernet): the supernet itself, or the pair holding it."""
    if cfg.pair:
        net = create_model(cfg.pair, cfg.scale, pretrained=False)
        return net, net.upscaler
    net = OFASR(width=cfg.width, rep=cfg.rep)
    return net, net


def load_into(target: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``state`` into ``target``: whole, or a plain supernet's weights into a re-parameterised one, whose branches
    then keep their zero start (the same function). Branches into a plain supernet would be dropped: refused."""
    if any(".rep_" in k for k in state) and not any(".rep_" in k for k in target.state_dict()):
        raise ValueError(f"--init-from {source}: a re-parameterised supernet (rep=1); train it with --arch rep=1")
    result = target.load_state_dict(state, strict=False)
    unknown = sorted(result.unexpected_keys) + sorted(k for k in result.missing_keys if ".rep_" not in k)
    if unknown:
        raise ValueError(f"--init-from {source}: weights do not fit ({unknown[0]})")


def train_ofa(cfg: OFATrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) progressive shrinking; writes ``last.pt``, ``model.safetensors`` and ``summary.json``."""
    cfg.check()
    world, rank, out, ckpt_path = start_run(cfg.out, cfg.batch, resume)

    # Unreadable images are named once, by rank 0, by the first scale's loader (the others skip the same files).
    first = cfg.scales[0]
    data = {s: TrainPatches(cfg.data, s, cfg.lr_patch * s, holdout_every=cfg.holdout_every,
                            warn=warn if rank == 0 and s == first else None) for s in cfg.scales}
    val = {s: holdout_images(cfg.data, cfg.holdout_every, s, warn=warn if s == first else None)
           for s in cfg.scales} if rank == 0 and cfg.val_every else {}
    torch.manual_seed(cfg.seed)
    net, model = build_net(cfg)
    # channels_last: PyTorch's CPU depthwise backward is ~4x faster in it for 7x7 kernels.
    net.to(memory_format=torch.channels_last)
    if cfg.init_from and not resume:
        source = load_supernet(cfg.init_from, pairs=cfg.pair is not None, scale=cfg.scale)
        if isinstance(source, SRPair):
            if source.parts != net.parts or source.scale != cfg.scale:
                raise ValueError(f"--init-from {cfg.init_from}: a x{source.scale:g} pair of other parts, not {cfg.pair} "
                                 f"x{cfg.scale}")
            net.load_state_dict(source.state_dict())
        else:
            load_into(model, source.state_dict(), cfg.init_from)
    down = net.downscaler if isinstance(net, SRPair) else None
    jpeg = JpegRange.parse(cfg.jpeg) if cfg.jpeg else None
    opt = _optimizer(net)
    step, elapsed, history = 0, 0.0, []
    if resume:
        ckpt = load_run_checkpoint(ckpt_path)
        saved = ckpt["train_config"]
        for key in ("batch", "lr_patch", "seed", "subnets", "width", "rep", "holdout_every", "pair", "scale"):
            if saved.get(key, asdict(cfg)[key]) != asdict(cfg)[key]:
                raise ValueError(f"--resume: {key} differs from the checkpoint ({saved[key]!r} vs {asdict(cfg)[key]!r})")
        # Phases not begun yet may be lengthened or shortened; the ones already run may not.
        started = OFATrainConfig(**{**saved, "data": cfg.data, "out": cfg.out}).phase_at(ckpt["step"])[0]
        for phase in PHASES[: PHASES.index(started) + 1]:
            if int(saved["steps"][phase]) != int(cfg.steps[phase]) or saved["lr"][phase] != cfg.lr[phase]:
                raise ValueError(f"--resume: the {phase} phase has begun; its steps and lr must stay "
                                 f"{saved['steps'][phase]} and {saved['lr'][phase]}")
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, elapsed, history = ckpt["step"], ckpt["train_seconds"], ckpt["history"]
        for name, p in net.named_parameters():  # restore which gradients exist (zeroed, see the loop)
            if name in ckpt.get("live_grads", []):
                p.grad = torch.zeros_like(p)
    if rank == 0:  # on resume too: the config of record is the one the run finishes with
        write_config(out, asdict(cfg))
    meta = {"model": cfg.pair or SUPERNET, "scale": cfg.scales[0], "config": net.config()}
    saved_step = step if resume else None  # the step of the checkpoint on disk, for the error line

    def kept() -> str:
        return (f"; the previous checkpoint (step {saved_step}) is kept" if saved_step is not None
                else "; no checkpoint was written yet")

    def checkpoint() -> None:
        nonlocal saved_step
        state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                 "train_seconds": elapsed, "history": history, "train_config": asdict(cfg), "meta": meta,
                 "live_grads": [n for n, p in net.named_parameters() if p.grad is not None]}
        written([ckpt_path], kept(), atomic_save, state, ckpt_path)
        saved_step = step
        hold_for_test(step)

    total = cfg.total_steps
    bar = tqdm(total=total, initial=step, disable=not progress or rank != 0, dynamic_ncols=True, unit="it")
    t_last = time.perf_counter()
    while step < total:
        phase, start = cfg.phase_at(step)
        if step == start:  # a new phase: its own optimizer, and the channel sort before the width phase
            if phase == "expand" and not cfg.init_from:  # a trained supernet is sorted already
                model.sort_channels()
            opt = _optimizer(net)
        lr = cfg.lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        scale, archs = archs_for_step(cfg, step)
        share = range(rank, cfg.batch, world)
        lr_img, hr_img = data[scale].batch(cfg.seed, step, share)
        net.train()
        send = channel(jpeg, cfg.seed, step, share) if down is not None else None
        loss = step_loss(cfg, net, archs, lr_img, hr_img, send)
        # Zeroed, not None, as in OFA: parameters idle this step (the other scale's upsampler) keep their
        # Adam momentum moving. The shipped supernet was trained this way; which parameters have a gradient
        # at all is part of the checkpoint, so a resumed run steps exactly the same parameters.
        opt.zero_grad(set_to_none=False)
        loss.backward()
        if world > 1:
            for p in net.parameters():
                if p.grad is not None:  # None only before a parameter's first use: the same on every rank
                    dist.all_reduce(p.grad)
                    p.grad /= world
        opt.step()
        step += 1
        now = time.perf_counter()
        elapsed += now - t_last
        t_last = now
        if rank == 0:
            if cfg.val_every and (step % cfg.val_every == 0 or step == total):
                names = {f"{size}_x{s}": (largest(s) if size == "largest" else smallest(s)) for s in cfg.scales
                         for size in ("largest", "smallest")}
                scores = validate(model, val, names, down)
                history.append({"step": step, "phase": phase, "loss": loss.item(), "seconds": elapsed, **scores})
                bar.write(f"step {step} ({phase}): " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
                t_last = time.perf_counter()
            if step % cfg.ckpt_every == 0 or step == total:
                checkpoint()
            bar.set_postfix(phase=phase, loss=f"{loss.item():.4f}", lr=f"{lr:.1e}", refresh=False)
        bar.update(1)
    bar.close()
    summary = {"step": step, "train_seconds": elapsed, "out": str(out), "history": history}
    if rank == 0:
        final = out / "model.safetensors"
        written([final, final.with_suffix(".json")], kept(),
                write_weights, net, {**meta, "step": step, "train_seconds": elapsed}, final)
        written([out / "summary.json"], kept(), atomic_write_text, out / "summary.json",
                json.dumps(summary, indent=2) + "\n")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary
