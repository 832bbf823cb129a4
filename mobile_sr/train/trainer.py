"""The training loop: Adam + L1/Charbonnier, cosine schedule, atomic checkpoints, bit-exact resume, DDP.

Resume is exact because nothing in a step depends on hidden state that is not in the checkpoint:
the batch at step k is a pure function of (seed, k) (see :class:`TrainPatches`), the learning
rate is computed from k, and the model and Adam state are saved whole. Under ``torchrun`` each
rank builds its slice of the same global batch and gloo all-reduces the gradients, so N processes
train the same model as one process with the same global batch.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..core.files import atomic_write, atomic_write_text, check_writable_dir
from ..core.text import first_line
from ..core.weights import write_weights
from ..data.calib import CROP, load_calib
from ..data.codec_lr import CodecRange, CodecTrainPatches, codec_images
from ..data.datasets import BenchmarkImage, ScaledPatches, TrainPatches, load_benchmark
from ..evaluation import Pipeline, evaluate
from ..models import MODELS, SUPERNET, ModelError, create_model, info, load_model, load_torch_file, scale_arbitrary
from ..models.aidn import TRAIN_FACTORS
from ..models.deploy import deploy_module
from ..models.fsrcnn import FSRCNN, init_bicubic
from ..models.pair import PairView, SRPair
from ..models.quant import equalize, frozen_ranges, prepare_qat, snap_weights
from .channel import JpegRange, channel
from .schedule import warmup_cosine

CHECKPOINT = "last.pt"
# Test hook, inert unless set: "STEP:FILE" makes a run create FILE right after its checkpoint of STEP and wait
# there (at most HOLD_SECONDS), so a test can kill it at a known point instead of racing a timer.
HOLD_ENV = "MOBILE_SR_TEST_HOLD_AFTER_CHECKPOINT"
HOLD_SECONDS = 600


class RunWriteError(Exception):
    """Writing a run file failed (disk full, permissions): one line naming the file; the last checkpoint is kept."""


def hold_for_test(step: int) -> None:
    """The test hook of :data:`HOLD_ENV`; does nothing unless the variable names this step."""
    spec = os.environ.get(HOLD_ENV, "")
    at, _, flag = spec.partition(":")
    if not flag or not at.isdigit() or int(at) != step:
        return
    Path(flag).touch()
    time.sleep(HOLD_SECONDS)


def written(paths: list[Path], note: str, write: Callable[..., object], *args: object) -> None:
    """``write(*args)``, which writes ``paths`` atomically and in that order; an OSError becomes a
    :class:`RunWriteError` naming the file that failed and the reason, then ``note``."""
    before = [_identity(p) for p in paths]
    try:
        write(*args)
    except OSError as exc:
        # The files are written in order, each by a rename: the first one not replaced is the one that failed.
        failed = next((p for p, was in zip(paths, before, strict=True) if _identity(p) == was), paths[-1])
        raise RunWriteError(f"cannot write {failed}: {exc.strerror or first_line(exc)}{note}") from None


def _identity(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file, None when absent: a rename onto it changes both."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def write_config(out: Path, cfg: dict) -> None:
    """``config.json`` of a run (creating its folder): the run's record, and how ``search`` finds its data."""
    def write() -> None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(cfg, indent=2) + "\n")
    written([out / "config.json"], "", write)


def load_run_checkpoint(path: Path) -> dict:
    """``last.pt`` for ``--resume``: plain data only (``weights_only``), any failure one line."""
    ckpt = load_torch_file(path)
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "step", "train_config"} <= ckpt.keys():
        raise ModelError(f"{path}: not a mobile-sr training checkpoint (no model/optimizer/step entries)")
    return ckpt


def warn(message: str) -> None:
    """A warning the user should see (skipped training images): one line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


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
    # Pairs only (a downscaler trained with its upscaler, see train/channel.py):
    lr_weight: float = 1.0  # λ of λ·L2(learned LR, MATLAB-bicubic LR): how close the LR stays to the picture
    unconstrained: bool = False  # the OFA seed's setting, as an ablation: float LR, no rounding, no LR term
    jpeg: str | None = None  # "LO-HI[@P]": JPEG-aware training through a differentiable JPEG (train/channel.py)
    # Upscalers only: "CODEC:LO-HI[/STEP][@P]", LR through a real video codec at a CRF of the range (data/codec_lr.py)
    lr_codec: str | None = None
    # Decay of an exponential moving average of the weights (0: none). With it, validation, best.safetensors and
    # model.safetensors are the average's weights; the raw weights and the average both resume from last.pt.
    ema: float = 0.0
    # Quantization-aware fine-tuning (models/quant.py): the deployed module trains through fake-quantizers on XNNPACK's
    # int8 grid, validation scores that int8 simulation, and the written weights are snapped onto the grid.
    qat: bool = False

    def check(self) -> None:
        if self.model not in MODELS:
            raise ModelError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}")
        if self.loss not in ("l1", "charbonnier"):
            raise ValueError(f"unknown loss {self.loss!r}; use l1 or charbonnier")
        if self.init not in ("paper", "bicubic"):
            raise ValueError(f"unknown init {self.init!r}; use paper or bicubic")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be >= 1")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"--ema {self.ema}: the decay must be in [0, 1) (e.g. 0.999; 0 turns it off)")
        if not self.lr_weight >= 0:
            raise ValueError(f"the LR weight (lambda) must be >= 0, got {self.lr_weight}")
        if self.jpeg is not None:
            JpegRange.parse(self.jpeg)
            if self.unconstrained:
                raise ValueError("--jpeg and --unconstrained exclude each other: a JPEG is an 8-bit image")
        if self.lr_codec is not None:
            CodecRange.parse(self.lr_codec)
            if self.pair or self.model == "ofa-sr":
                raise ValueError(f"--lr-codec: not an option of {self.model} (it degrades the bicubic LR of an "
                                 "upscaler; a pair makes its own LR)")
        if self.qat:
            if SUPERNET in (self.model, self._upscaler_name) or self.arbitrary:
                raise ValueError(f"--qat: not an option of {self.model}; it fine-tunes one static upscaler (fsrcnn, "
                                 "elsr, or a subnet that search cut, e.g. ofa-l), or a pair with one (rescale, "
                                 "rescale-car)")
            if not self.init_from:
                raise ValueError("--qat fine-tunes trained weights: pass --init-from MODEL_OR_RUN (e.g. --init-from "
                                 f"{self.model})")
            if self.ema:
                raise ValueError("--qat and --ema exclude each other: the average of weights on the int8 grid is "
                                 "not on it")
            if importlib.util.find_spec("executorch") is None:
                raise ValueError("--qat needs XNNPACK's quantizer, which ships with the executorch extra: "
                                 "pip install -e '.[executorch]'")

    @property
    def pair(self) -> bool:
        return MODELS[self.model].role == "pair"

    @property
    def _upscaler_name(self) -> str | None:
        """A pair's upscaler architecture (``ofa-sr`` in a supernet pair); None for any other model."""
        return (self.config or MODELS[self.model].default_config).get("upscaler", {}).get("model") if self.pair else None

    @property
    def arbitrary(self) -> bool:
        """A scale-arbitrary pair (rescale-aidn): each batch at a factor of TRAIN_FACTORS; ``scale`` is the one
        validated."""
        return self.pair and scale_arbitrary(self.model)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up then cosine decay to ``min_lr_ratio * lr``; step is 0-based."""
    return warmup_cosine(step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)


def _loss(cfg: TrainConfig, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    if cfg.loss == "l1":
        return (sr - hr).abs().mean()
    return torch.sqrt((sr - hr) ** 2 + 1e-6).mean()


def step_loss(cfg: TrainConfig, net: nn.Module, lr_img: torch.Tensor, hr_img: torch.Tensor, step: int = 0,
              indices: range | None = None) -> torch.Tensor:
    """The loss of one batch. An upscaler restores the bicubic LR. A pair downscales the HR itself, rounds its
    LR to 8 bits as a PNG would (straight-through gradient; with ``jpeg``, a differentiable JPEG for some
    images), restores it, and pays λ·L2 for straying from the MATLAB-bicubic LR ``lr_img`` (on the LR before
    clamping, so an out-of-range value is pulled back)."""
    if not cfg.pair:
        return _loss(cfg, net(lr_img), hr_img)
    jpeg = jpeg_range(cfg.jpeg) if cfg.jpeg else None
    send = None if cfg.unconstrained else channel(jpeg, cfg.seed, step, indices)
    if cfg.arbitrary:  # this batch's factor, exactly: HR and LR patch sides are p and q cells (data.ScaledPatches)
        lr, sr = net(hr_img, channel=send, scale=hr_img.shape[-1] / lr_img.shape[-1])
    else:
        lr, sr = net(hr_img, channel=send)
    loss = _loss(cfg, sr, hr_img)
    if not cfg.unconstrained and cfg.lr_weight:
        loss = loss + cfg.lr_weight * (lr - lr_img).pow(2).mean()
    return loss


@lru_cache(maxsize=8)
def jpeg_range(text: str) -> JpegRange:
    """``--jpeg`` parsed once per run, not once per step (parsing also looks kornia up)."""
    return JpegRange.parse(text)


VAL_CRF = 32  # the codec-LR validation figure: a one-frame CRF, about clip CRF 36 (data/codec_lr.py), a low rate


def codec_validation(val: list[BenchmarkImage], cfg: TrainConfig) -> list[BenchmarkImage]:
    """The validation set as the compression-aware model meets it: each HR (even-cropped) -> bicubic -> 8-bit ->
    ``cfg.lr_codec``'s codec at CRF 32 -> decoded LR. A second figure beside the clean one (Set5 PSNR stays the
    run's yardstick, as for every run): made once per run, five one-frame encodes."""
    codec = CodecRange.parse(cfg.lr_codec).codec if cfg.lr_codec else "h264"
    out = []
    for img in val:
        hr = (img.hr * 255).round().to(torch.uint8)
        out += codec_images([hr], cfg.scale, codec, VAL_CRF, name=img.name)
    return out


def validation_pipeline(model: nn.Module, scale: int) -> Pipeline:
    """Validation runs what ships: a pair makes its own LR, rounded to 8 bits, and restores it."""
    if isinstance(model, SRPair | PairView):
        return Pipeline(model.upscaler, scale, downscale=model.downscaler)
    return Pipeline(model, scale)


def atomic_save(obj: object, path: Path) -> None:
    """torch.save through a temp file, fsync, rename: a kill or a power cut leaves the old checkpoint or the new one.

    Serialized in memory first, so a full disk surfaces as the OSError of a plain write (torch's zip writer
    would report it as a RuntimeError)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue(), fsync=True)


def build_model(cfg: TrainConfig) -> nn.Module:
    """The module to train: built from ``cfg`` (a fine-tune of the same model takes its source's settings unless
    ``--arch`` gives others), with ``--init-from``'s weights where they fit; for ``--qat``, in deployed form."""
    torch.manual_seed(cfg.seed)
    source = load_model(cfg.init_from, cfg.scale if cfg.init_from in MODELS else None) if cfg.init_from else None
    # A fine-tune of the same model keeps its source's settings; --arch changes the ones it names (e.g. a cut
    # subnet's kernels and widths stay, and --arch rep=1 adds the branches). So does a variant of the source's network
    # that has no settings of its own yet (no defaults, no shipped manifest): ofa-m-h264 from ofa-m.
    spec = info(cfg.model)
    variant = (source is not None and info(source.name).build is spec.build and not spec.default_config
               and spec.manifest(cfg.scale) is None)
    same = source is not None and (source.name == cfg.model or variant)
    config = {**(source.config if same else {}), **cfg.config}
    try:
        model = create_model(cfg.model, cfg.scale, pretrained=False, **config)
    except TypeError as exc:
        given = " ".join(f"{k}={v}" for k, v in cfg.config.items())
        raise ValueError(f"--arch {given}: not a setting of {cfg.model}, or a value of the wrong kind ({exc})") from None
    if cfg.init == "bicubic":
        if not isinstance(model, FSRCNN):
            raise ValueError("--init bicubic is only defined for FSRCNN models")
        init_bicubic(model)
    if source is not None:
        # A pair can start from a trained upscaler (its downscaler then starts as bicubic, see models/tad.py).
        target = model.upscaler if isinstance(model, SRPair) and source.role == "upscaler" else model
        own = target.state_dict()
        fitting = {k: v for k, v in source.module.state_dict().items() if k in own and own[k].shape == v.shape}
        if not fitting:
            raise ModelError(f"--init-from {cfg.init_from}: no weight of {source.name} fits {cfg.model}")
        target.load_state_dict(fitting, strict=False)
    return deployed_for_qat(cfg, model) if cfg.qat else model


def deployed_for_qat(cfg: TrainConfig, model: nn.Module) -> nn.Module:
    """``model`` in the form that is exported (``deploy``: FSRCNN's deconvolution as its sub-pixel convolution,
    re-parameterised branches folded), rebuilt from its own config so that its checkpoint reloads: QAT must round
    the weights the file will hold, not those of the training form."""
    deployed = deploy_module(model)
    try:
        rebuilt = create_model(cfg.model, cfg.scale, pretrained=False, **deployed.config())
        rebuilt.load_state_dict(deployed.state_dict())
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"--qat: {cfg.model}'s deployed form cannot be rebuilt from its config ({first_line(exc)})") from None
    return rebuilt


def start_run(out_dir: str, batch: int, resume: bool) -> tuple[int, int, Path, Path]:
    """(world size, rank, run folder, checkpoint path) of a run about to start, under torchrun or not.

    Refuses to overwrite a run or anything else in a folder (``--resume`` continues a run), to resume one that
    has no checkpoint, and an ``--out`` that cannot be written; all before any training work.
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
    if not resume and out.is_dir() and (held := sorted(p.name for p in out.iterdir() if not p.name.startswith("."))):
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise FileExistsError(f"{out} is not empty ({shown}) and has no {CHECKPOINT} to resume; "
                              "choose another --out, or delete it")
    check_out_writable(out)
    if world > 1:
        dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    return world, rank, out, ckpt_path


def check_out_writable(out: Path) -> None:
    """The run folder, or the nearest folder above it that exists, must take new files (checked up front)."""
    folder = out
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"--out {out}: {folder} is a file, not a folder")
    check_writable_dir(folder, "run folder" if folder == out else f"folder of --out {out}")


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train per ``cfg``; returns the final summary (step, best validation PSNR, paths)."""
    cfg.check()
    world, rank, out, ckpt_path = start_run(cfg.out, cfg.batch, resume)
    if cfg.qat and world > 1:
        raise ValueError("--qat runs in one process: each process would observe its own activation ranges")

    if cfg.arbitrary:
        data: TrainPatches | ScaledPatches = ScaledPatches(cfg.data, TRAIN_FACTORS, cfg.patch,
                                                           warn=warn if rank == 0 else None)
    elif cfg.lr_codec:
        data = CodecTrainPatches(cfg.data, cfg.scale, cfg.patch, cfg.lr_codec,
                                 warn=warn if rank == 0 else None, progress=progress and rank == 0)
    else:
        data = TrainPatches(cfg.data, cfg.scale, cfg.patch, warn=warn if rank == 0 else None)
    val = load_benchmark(cfg.val_dataset, cfg.scale, cfg.val_root) if rank == 0 and cfg.val_every else []
    val_codec = codec_validation(val, cfg) if cfg.lr_codec else []
    model = build_model(cfg)
    pair = isinstance(model, SRPair)
    if cfg.qat:
        # QAT starts range-equalized (function-preserving, models/quant.py) on the shipped calibration crops, exactly
        # as an int8 export would have prepared it; bias correction is left out, since it changes the float function
        # that QAT learns from. The ranges are maxima, so they need whole crops: on a batch of 24x24 training patches
        # FSRCNN x2 ends 0.2 dB lower in fp32 and in int8. On --resume the checkpoint's weights replace these.
        # A pair's phone side is quantized; its downscaler runs in float on the server and trains on as it did.
        equalized = equalize(model.upscaler if pair else model, load_calib().batch(CROP, CROP))
        if pair:
            model.upscaler = equalized
        else:
            model = equalized
    # QAT trains through the fake-quantized graph, which shares its parameters with ``model`` (a pair's: the upscaler
    # behind the pair's own downscaler, so the downscaler learns the LR the int8 upscaler restores best).
    graph = prepare_qat(model.upscaler if pair else model) if cfg.qat else None
    qat_net = None if graph is None else PairView(model.downscaler, graph) if pair else graph
    tail_ids = {id(p) for p in model.tail().parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in tail_ids], "lr_scale": 1.0},
        {"params": [p for p in model.parameters() if id(p) in tail_ids], "lr_scale": cfg.tail_lr_scale},
    ]
    opt = torch.optim.Adam(groups, lr=cfg.lr)
    # The average starts as a copy of the weights (AveragedModel's first update) and follows every step.
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
           if cfg.ema else None)
    step, best, elapsed, history = 0, -math.inf, 0.0, []
    if resume:
        ckpt = load_run_checkpoint(ckpt_path)
        saved = ckpt["train_config"]
        for key in ("model", "scale", "batch", "patch", "seed", "loss", "config", "lr_weight", "unconstrained", "jpeg",
                    "lr_codec", "ema", "qat"):
            if saved.get(key, asdict(cfg)[key]) != asdict(cfg)[key]:
                raise ValueError(f"--resume: {key} differs from the checkpoint ({saved.get(key)!r} vs {asdict(cfg)[key]!r})")
        model.load_state_dict(ckpt["model"])
        if graph is not None:  # the observed activation ranges
            graph.load_state_dict(ckpt["qat"])
        opt.load_state_dict(ckpt["optimizer"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        step, best, elapsed, history = ckpt["step"], ckpt["best_psnr"], ckpt["train_seconds"], ckpt["history"]
    elif rank == 0:
        write_config(out, asdict(cfg))

    net: nn.Module = (qat_net if qat_net is not None else nn.parallel.DistributedDataParallel(model) if world > 1
                      else model)
    meta = {"model": cfg.model, "scale": cfg.scale, "config": model.config(), **({"qat": True} if cfg.qat else {})}
    shipped: nn.Module = ema.module if ema is not None else model  # what is written as weights
    validated: nn.Module = qat_net if qat_net is not None else shipped  # QAT: the int8 simulation is what is scored

    def weights() -> nn.Module:
        """What is written: the weights, QAT's snapped onto the int8 grid (a copy; training goes on). A pair's
        downscaler is not quantized, so it is written as trained."""
        if not cfg.qat:
            return shipped
        written_model = copy.deepcopy(shipped)
        snap_weights(written_model.upscaler if pair else written_model)
        return written_model

    saved_step = step if resume else None  # the step of the checkpoint on disk, for the error line

    def kept() -> str:
        return (f"; the previous checkpoint (step {saved_step}) is kept" if saved_step is not None
                else "; no checkpoint was written yet")

    def checkpoint() -> None:
        nonlocal saved_step
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "best_psnr": best,
                 "train_seconds": elapsed, "history": history, "train_config": asdict(cfg), "meta": meta,
                 **({"ema": ema.state_dict()} if ema is not None else {}),
                 **({"qat": graph.state_dict()} if graph is not None else {})}
        written([ckpt_path], kept(), atomic_save, state, ckpt_path)
        saved_step = step
        hold_for_test(step)

    bar = tqdm(total=cfg.steps, initial=step, disable=not progress or rank != 0,
               dynamic_ncols=True, unit="it")
    val_psnr, val_lr = float("nan"), ""
    t_last = time.perf_counter()
    while step < cfg.steps:
        lr = lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        share = range(rank, cfg.batch, world)  # this rank's images of the global batch
        lr_img, hr_img = data.batch(cfg.seed, step, share)
        net.train()
        loss = step_loss(cfg, net, lr_img, hr_img, step, share)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        now = time.perf_counter()
        elapsed += now - t_last
        t_last = now
        if rank == 0:
            if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
                validated.eval()
                with frozen_ranges(graph) if graph is not None else nullcontext():  # scoring never trains
                    res = evaluate(validation_pipeline(validated, cfg.scale), val, with_ssim=False)
                    codec_psnr = (evaluate(Pipeline(validated, cfg.scale), val_codec, with_ssim=False).psnr
                                  if val_codec else None)
                val_psnr = res.psnr
                val_lr = f"{res.lr_psnr:.1f}" if res.lr_psnr is not None else ""
                history.append({"step": step, "loss": loss.item(), "val_psnr": val_psnr, "seconds": elapsed,
                                **({"val_lr_psnr": res.lr_psnr} if res.lr_psnr is not None else {}),
                                **({"val_codec_psnr": codec_psnr} if codec_psnr is not None else {})})
                if val_psnr > best:
                    best = val_psnr
                    best_path = out / "best.safetensors"
                    written([best_path, best_path.with_suffix(".json")], kept(),
                            write_weights, weights(), {**meta, "step": step, "val_psnr": val_psnr}, best_path)
                t_last = time.perf_counter()  # validation is not training time
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                checkpoint()
            bar.set_postfix(loss=f"{loss.item():.4f}", val=f"{val_psnr:.2f}", **({"val_lr": val_lr} if val_lr else {}),
                            lr=f"{lr:.1e}", refresh=False)
        bar.update(1)
    bar.close()
    summary = {"step": step, "best_val_psnr": best, "train_seconds": elapsed, "out": str(out)}
    if rank == 0:
        final = out / "model.safetensors"
        written([final, final.with_suffix(".json")], kept(),
                write_weights, weights(), {**meta, "step": step, "train_seconds": elapsed}, final)
        written([out / "summary.json"], kept(), atomic_write_text, out / "summary.json",
                json.dumps({**summary, "history": history}, indent=2) + "\n")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary
