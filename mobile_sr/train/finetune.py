"""NAS-style content-aware fine-tuning (Yeo et al., OSDI 2018): an upscaler overfitted to one video, streamed with it.

A generic upscaler has to be good on every picture; the one shipped with a video only has to be good on that
video, so it is trained on the video's own frames, the decoded low-resolution frames against the originals, for a
bounded CPU budget. Its bits travel with the stream, so they are counted: :attr:`FinetuneResult.bytes` is the
size of the weight update as it would be sent.

What is sent: an *update* to the weights the phone already has (the upscaler it ships with), not the weights.
Fine-tuning moves each parameter by a whole number of steps of :data:`UPDATE_STEP` (2^-6): the offsets are
trained on that grid with a straight-through gradient, so the model the phone rebuilds (base + indices x step,
exact in float32) is the model that was trained and scored. The indices go as int8, in parameter order, behind a
small header, compressed with xz (LZMA2, preset 9e): :func:`encode_update` / :func:`apply_update`. Most
offsets are zero or one step, so ELSR-16's update is 1-3 KB against 12.8 KB for its whole weights as fp16 +
xz (the form sent before 2026-12-04). On Vid4's 1.4-1.9 s clips each KB is 4-6 kbps, so the update's size
decides whether fine-tuning pays (measured in ``benchmarks/video_rd.py``): at 2^-4 the update is ~1 KB but
training on so coarse a grid gains less and can lose (-0.15 dB at CRF 40 on city); at 2^-8 and finer it
costs 4-6 KB for no more gain.

PSNR before/after is Y-PSNR (published protocol: crop = scale, 8-bit output) on the fine-tuning frames themselves:
NAS overfits on purpose, and those are the frames the viewer sees.
"""

from __future__ import annotations

import copy
import lzma
import math
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call
from tqdm import tqdm

from ..core.files import check_writable_dir, place, staging
from ..core.weights import write_weights
from ..data.codec_lr import bicubic_lr
from ..data.datasets import BenchmarkImage
from ..data.video import even_crop
from ..evaluation import Pipeline, evaluate
from ..models import Model, ModelError, info
from ..models.ofa import OFASR
from ..models.pair import SRPair

XZ_PRESET = 9 | lzma.PRESET_EXTREME
UPDATE_STEP = 2.0**-6  # the grid of the weight offsets (a power of two: base + k * step is one float32 rounding)
UPDATE_MAGIC = b"MSRU1"  # header: magic, step (float32 little-endian), parameter count (uint32)
UPDATE_FILE = "update.xz"
STREAMED_FORM = "weight update on the base model: int8 offsets in steps of 2^-6, xz (LZMA2, preset 9e)"
FINETUNE_STREAM = 0x4E4153  # "NAS": keeps the patch draws apart from the trainer's (seed, step, index) stream


@dataclass
class FinetuneResult:
    model: Model  # the fine-tuned upscaler: the base plus the update, as the phone rebuilds it
    update: bytes  # the weight update as streamed (:func:`encode_update`; STREAMED_FORM)
    steps: int
    seconds: float  # wall time of the training loop
    psnr_before: float  # Y-PSNR on the fine-tuning frames, the model as given
    psnr_after: float  # the same, the fine-tuned model as the phone rebuilds it

    @property
    def bytes(self) -> int:
        """What the update adds to the stream."""
        return len(self.update)


def encode_update(indices: dict[str, torch.Tensor], step: float = UPDATE_STEP) -> bytes:
    """The streamed update: ``indices`` (parameter name -> int offsets in steps, in the model's parameter order) as
    int8 behind the header, xz-compressed. The phone's model knows the names and shapes; only the values travel."""
    flat = torch.cat([v.reshape(-1) for v in indices.values()]) if indices else torch.zeros(0, dtype=torch.int8)
    if flat.numel() and int(flat.abs().max()) > 127:
        raise ValueError("an update offset is outside int8 (more than 127 steps)")
    head = UPDATE_MAGIC + struct.pack("<fI", step, flat.numel())
    return lzma.compress(head + flat.to(torch.int8).numpy().tobytes(), preset=XZ_PRESET)


def apply_update(module: nn.Module, payload: bytes) -> nn.Module:
    """What the phone does with the stream's update: a copy of ``module`` (the base it ships with) with each
    parameter moved by its offsets x step. ValueError for an update that does not fit this model."""
    try:
        raw = lzma.decompress(payload)
    except lzma.LZMAError as exc:
        raise ValueError(f"not a weight update ({exc})") from None
    n_head = len(UPDATE_MAGIC) + 8
    if raw[: len(UPDATE_MAGIC)] != UPDATE_MAGIC or len(raw) < n_head:
        raise ValueError("not a weight update (bad header)")
    step, count = struct.unpack("<fI", raw[len(UPDATE_MAGIC) : n_head])
    params = dict(module.named_parameters())
    if count != sum(p.numel() for p in params.values()) or len(raw) != n_head + count:
        raise ValueError(f"the update has {count} offsets, the model {sum(p.numel() for p in params.values())} "
                         "parameters: it was made for another model")
    flat = torch.frombuffer(bytearray(raw[n_head:]), dtype=torch.int8).to(torch.float32)
    out = copy.deepcopy(module)
    with torch.no_grad():
        at = 0
        for _, p in out.named_parameters():
            p.add_(flat[at : at + p.numel()].view_as(p) * step)
            at += p.numel()
    return out


class _Round(torch.autograd.Function):
    """Rounding with a straight-through gradient: the offsets train on the grid they are sent on."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return torch.round(x).clamp(-127, 127)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return grad


def trainable_upscaler(model: Model) -> tuple[str, nn.Module]:
    """(built-in name, a private copy) of what the phone runs for ``model``: a pair's upscaler, a supernet's active
    subnet (as ``ofa-subnet``), or the upscaler itself. The name and the copy's ``config()`` rebuild it on load."""
    if model.role == "downscaler":
        raise ModelError(f"{model.name} is a downscaler; only an upscaler can be fine-tuned on a video")
    module = model.module
    if isinstance(module, SRPair):
        return module.parts["upscaler"]["model"], copy.deepcopy(module.upscaler)
    if isinstance(module, OFASR):
        return "ofa-subnet", module.get_subnet(module.arch)
    return model.name, copy.deepcopy(module)


class FramePairs(Sequence[BenchmarkImage]):
    """(LR, HR) frame pairs as float benchmark images, made one at a time as :func:`evaluate` iterates: a 720p,
    300-frame clip as float HR would be 3 GB, its uint8 frames are 0.8 GB."""

    def __init__(self, lr_frames: list[torch.Tensor], hr_frames: list[torch.Tensor]) -> None:
        self.lr, self.hr = lr_frames, hr_frames

    def __len__(self) -> int:
        return len(self.lr)

    def __getitem__(self, k: int) -> BenchmarkImage:  # type: ignore[override]
        return BenchmarkImage(f"frame_{k:04d}", self.lr[k].float() / 255.0, self.hr[k].float() / 255.0)


def frame_images(lr_frames: list[torch.Tensor], hr_frames: list[torch.Tensor], scale: int) -> FramePairs:
    """The frame pairs to score, after checking they are aligned uint8 (3, H, W) frames, x``scale`` apart."""
    if not lr_frames or len(lr_frames) != len(hr_frames):
        raise ValueError(f"fine-tuning needs as many LR as HR frames, at least one (got {len(lr_frames)} LR, "
                         f"{len(hr_frames)} HR)")
    for k, (lr, hr) in enumerate(zip(lr_frames, hr_frames, strict=True)):
        if lr.dtype != torch.uint8 or hr.dtype != torch.uint8 or lr.ndim != 3 or hr.ndim != 3:
            raise ValueError(f"frame {k}: frames must be uint8 (3, H, W) tensors")
        if tuple(hr.shape) != (3, lr.shape[1] * scale, lr.shape[2] * scale):
            raise ValueError(f"frame {k}: HR {tuple(hr.shape[1:])} is not x{scale} of LR {tuple(lr.shape[1:])}")
    return FramePairs(lr_frames, hr_frames)


def _patches(lr_frames: list[torch.Tensor], hr_frames: list[torch.Tensor], scale: int, patch: int, batch: int,
             seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of aligned (LR, HR) patches at ``step``: frame, position, rotation and flip drawn from (seed, step)."""
    g = torch.Generator().manual_seed(hash((FINETUNE_STREAM, seed, step)) & 0x7FFFFFFFFFFF)
    lrs, hrs = [], []
    q = patch // scale
    for _ in range(batch):
        i = int(torch.randint(len(lr_frames), (1,), generator=g))
        lr, hr = lr_frames[i], hr_frames[i]
        top = int(torch.randint(lr.shape[1] - q + 1, (1,), generator=g))
        left = int(torch.randint(lr.shape[2] - q + 1, (1,), generator=g))
        rot, flip = int(torch.randint(4, (1,), generator=g)), bool(torch.randint(2, (1,), generator=g))
        pair = (lr[:, top : top + q, left : left + q],
                hr[:, top * scale : (top + q) * scale, left * scale : (left + q) * scale])
        for t, dst in zip(pair, (lrs, hrs), strict=True):
            t = torch.rot90(t.float() / 255.0, rot, (1, 2))
            dst.append(t.flip(-1) if flip else t)
    return torch.stack(lrs), torch.stack(hrs)


def finetune(model: Model, lr_frames: list[torch.Tensor], hr_frames: list[torch.Tensor], seconds: float = 180.0, *,
             seed: int = 0, batch: int = 16, patch: int = 96, lr: float = 2e-4, step: float = UPDATE_STEP,
             progress: bool = False) -> FinetuneResult:
    """Fine-tune ``model``'s upscaler on aligned random patches of these frames for ``seconds`` of wall time.

    ``lr_frames`` are the decoded low-resolution frames, ``hr_frames`` the originals, uint8 (3, H, W). The clock is
    checked after every step, so the loop overruns its budget by at most one step (and always takes at least one,
    so the result is a fine-tuned model). ``model`` is not touched: what trains is an offset per parameter, on the
    grid of ``step`` (straight-through rounding), and the result is a new :class:`Model` whose weights are the base
    plus the rounded offsets: exactly what :func:`apply_update` rebuilds from :attr:`FinetuneResult.update`. L1
    loss and Adam at a constant ``lr``: a schedule over a wall-clock budget would depend on the machine's speed.
    """
    if not seconds > 0 or batch < 1 or patch < 1 or not lr > 0 or not step > 0:
        raise ValueError("seconds, batch, patch, lr and step must be positive")
    scale = int(model.scale)
    images = frame_images(lr_frames, hr_frames, scale)
    name, net = trainable_upscaler(model)
    q = min(patch // scale, min(min(f.shape[1:]) for f in lr_frames))  # small frames: the patch is the frame
    if q < 1:
        raise ValueError(f"patch {patch} is smaller than one LR pixel at x{scale}")
    before = evaluate(Pipeline(net.eval(), scale), images, with_ssim=False).psnr  # type: ignore[arg-type]

    base = {k: p.detach().clone() for k, p in net.named_parameters()}
    offsets = {k: torch.zeros_like(v, requires_grad=True) for k, v in base.items()}  # in steps, before rounding

    def weights() -> dict[str, torch.Tensor]:
        return {k: base[k] + step * _Round.apply(offsets[k]) for k in base}

    opt = torch.optim.Adam(offsets.values(), lr=lr / step)  # lr in weight units, as for plain fine-tuning
    bar = tqdm(total=round(seconds), disable=not progress, unit="s", dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{postfix}]")
    steps, start = 0, time.perf_counter()
    elapsed = 0.0
    net.train()
    while steps == 0 or elapsed < seconds:
        lr_img, hr_img = _patches(lr_frames, hr_frames, scale, q * scale, batch, seed, steps)
        loss = (functional_call(net, weights(), (lr_img,)) - hr_img).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        now = time.perf_counter() - start
        bar.update(min(now, seconds) - min(elapsed, seconds))
        elapsed = now
        bar.set_postfix_str(f"step {steps}, {steps / max(elapsed, 1e-9):.1f} steps/s, loss {loss.item():.4f}",
                            refresh=False)
    bar.close()
    with torch.no_grad():
        indices = {k: torch.round(v).clamp(-127, 127).to(torch.int8) for k, v in offsets.items()}
    update = encode_update(indices, step)
    net = apply_update(net.eval(), update)  # the phone's model, rebuilt from the bytes that are sent
    after = evaluate(Pipeline(net, scale), images, with_ssim=False).psnr  # type: ignore[arg-type]
    tuned = Model(name, info(name).role, model.scale, net, f"{model.source} fine-tuned")
    return FinetuneResult(tuned, update, steps, elapsed, before, after)


def write_finetuned(result: FinetuneResult, out: Path, meta: dict) -> Path:
    """``out/update.xz`` (the update as streamed, :attr:`FinetuneResult.update`), ``out/model.safetensors`` (the
    weights it rebuilds on the base, float32) and ``out/model.json`` (model, scale, config, what the fine-tuning
    measured, ``meta``), built in a hidden folder beside ``out`` and renamed into place: nothing appears under
    ``out`` unless all are whole. ``load_model(out)`` loads it."""
    out = Path(out)
    parent = out.parent
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose another -o, or delete it")
    check_writable_dir(parent, f"folder of -o {out}")
    module = result.model.module
    manifest = {"model": result.model.name, "scale": result.model.scale, "config": module.config(),
                "bytes": result.bytes, "streamed_as": STREAMED_FORM, "update_file": UPDATE_FILE,
                "update_step": UPDATE_STEP, "steps": result.steps,
                "seconds": round(result.seconds, 2), "psnr_before": round(result.psnr_before, 4),
                "psnr_after": round(result.psnr_after, 4), **meta}
    with staging(parent, out.name) as tmp:
        folder = tmp / out.name  # a plain mkdir: the folder gets the umask's mode, not mkdtemp's 0700
        folder.mkdir()
        (folder / UPDATE_FILE).write_bytes(result.update)
        write_weights(module, manifest, folder / "model.safetensors")
        place(folder, out)
    return out


@dataclass
class VideoFinetune:
    result: FinetuneResult
    out: Path
    frames: int
    lr_size: tuple[int, int]  # (width, height) of the LR frames
    stream_bits: int  # bits of the x264 stream of the LR frames at --crf


def finetune_video(src: Path, out: Path, model: Model, crf: int = 32, codec: str = "h264", minutes: float = 3.0,
                   seed: int = 0, progress: bool = False) -> VideoFinetune:
    """``mobile-sr video finetune``: the original video (file or frame folder) -> HR frames cropped to a multiple of
    ``2 * scale`` -> MATLAB bicubic, 8-bit -> ``codec`` at ``crf`` and back (the frames the phone decodes) ->
    :func:`finetune` for ``minutes`` -> ``out`` (:func:`write_finetuned`). Errors (bad video, unknown codec, an
    ``out`` that exists) are raised before any training."""
    from ..data.video import check_codec, probe, read_frames, roundtrip

    check_codec(codec)
    if not math.isfinite(minutes) or minutes <= 0:
        raise ValueError(f"--minutes must be a positive number, got {minutes:g}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose another -o, or delete it")
    check_writable_dir(out.parent if str(out.parent) else Path("."), f"folder of -o {out}")
    scale = int(model.scale)
    if model.scale != scale:
        raise ModelError(f"{model.name} is a x{model.scale:g} model; video fine-tuning takes integer scales")
    trainable_upscaler(model)  # a downscaler is refused before any decoding
    src_info = probe(src)
    hr = [even_crop(f, scale).contiguous() for f in read_frames(src)]  # streamed: one copy of the clip in memory
    if min(hr[0].shape[1:]) < 2 * scale:
        raise ValueError(f"{src}: frames of {src_info.width}x{src_info.height} are too small for x{scale}")
    lr_frames, bits = roundtrip([bicubic_lr(f, scale) for f in hr], codec=codec, crf=crf,
                                fps=Fraction(src_info.fps))
    result = finetune(model, lr_frames, hr, minutes * 60, seed=seed, progress=progress)
    meta = {"crf": crf, "codec": codec, "source": str(src), "base_model": model.source, "frames": len(hr),
            "lr_size": [lr_frames[0].shape[2], lr_frames[0].shape[1]], "lr_stream_bits": bits, "seed": seed,
            "minutes": minutes}
    write_finetuned(result, out, meta)
    return VideoFinetune(result, out, len(hr), (lr_frames[0].shape[2], lr_frames[0].shape[1]), bits)
