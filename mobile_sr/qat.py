"""Quantization-aware fine-tuning (``mobile-sr train --qat``): the float weights learn to survive int8.

Post-training int8 rounds weights and activations once, after training; FSRCNN, whose every layer carries
the picture through identity-like filters, loses ~1.2 dB Set5 that way even after range equalization and
bias correction (``export/dfq.py``). Here the upscaler is fine-tuned with int8 simulated in the forward pass:

- **the same grid as the converters.** The deployed graph (``deploy``: sub-pixel convolutions, the output
  clamp of ``ExportWrapper``) is captured with ``torch.export`` and prepared by PT2E's ``prepare_qat_pt2e``
  with XNNPACK's quantizer: per-channel symmetric int8 weights, per-tensor affine int8 activations, fake-
  quantized with straight-through gradients, exactly where ExecuTorch and Core ML int8 put them (LiteRT and
  ONNX Runtime quantize the same tensors with the same schemes);
- **from the post-training preparation.** Fine-tuning starts from the range-equalized copy that int8 exports
  convert today (equalization does not change the float function; bias correction does, by ~2 dB of float Set5
  on FSRCNN, so it is left to training, which learns the biases the int8 grid needs). The result is marked
  ``qat`` and int8 exports calibrate it as it is (a second equalization or bias correction would undo what it
  learned).
  Every int8 route uses these weights with its own calibration on the package's calibration images; none
  reads ranges learned here. So the activation ranges are not learned: they are the min/max over those same
  calibration images, fixed before training, and the weights learn to live with them (measured: with
  moving-average ranges instead, simulated int8 reached 36.16 dB Set5 on FSRCNN x2 but the converters'
  recalibrated int8 only 33.7-34.1, below post-training int8's 35.7);
- **in the model's own layout.** A transposed convolution trains in its sub-pixel form (what is exported), and
  after every step its weights are projected back where a transposed convolution can hold them
  (``SubPixelConv.project_``), so the checkpoint is a plain FSRCNN that ``deploy`` rewrites exactly as before.

One process (no DDP: a fine-tune of a few thousand steps); ``--resume`` continues from the last checkpoint, and
validation reports the simulated-int8 Set5 PSNR on fixed-size tiles of the training input size.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm import tqdm

from .core.files import atomic_write_text
from .core.weights import write_weights
from .data.datasets import TrainPatches, load_benchmark
from .evaluation import Pipeline, evaluate
from .export.calib import load_calib
from .export.common import ExportWrapper
from .export.dfq import equalize
from .models import MODELS, SUPERNET, Model, load_model
from .models.deploy import deploy
from .models.subpixel import SubPixelConv
from .train.schedule import warmup_cosine
from .train.trainer import atomic_save, load_run_checkpoint, start_run, warn, write_config, written

CHECKPOINT = "last.pt"


@dataclass
class QatConfig:
    model: str  # the architecture (its shipped weights are the default starting point)
    scale: int
    data: list[str]
    out: str
    init_from: str | None = None  # a built-in name, run folder or checkpoint; default: ``model``'s shipped weights
    steps: int = 2000
    batch: int = 16
    patch: int = 96
    lr: float = 1e-5
    warmup: int = 100
    min_lr_ratio: float = 0.0
    seed: int = 0
    val_every: int = 500
    ckpt_every: int = 250
    val_dataset: str = "Set5"
    val_root: str | None = None

    @property
    def source(self) -> str:
        return self.init_from or self.model


@dataclass
class QatNet:
    """What one QAT run trains: the float model it started from, the prepared fake-quant graph and the projections."""

    source: Model  # the float model as loaded (its undeployed module is what the checkpoint is written as)
    start: nn.Module  # the deployed, range-equalized module the graph was captured from
    graph: torch.fx.GraphModule  # PT2E-prepared: fake-quant weights and activations
    subpixel: dict[str, SubPixelConv]  # graph attribute prefix ("model.deconv") -> the layer to project


def quantizer():  # noqa: ANN201 - XNNPACK's quantizer in its QAT configuration, the grid every int8 export uses
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


def source_model(cfg: QatConfig) -> Model:
    """The float model a QAT run starts from, refused with one line unless it is one static upscaler of ``cfg``."""
    source = load_model(cfg.source, cfg.scale if cfg.source in MODELS else None)
    if source.role != "upscaler" or source.name == SUPERNET:
        what = "the supernet" if source.name == SUPERNET else f"a {source.role}"
        raise ValueError(f"--qat fine-tunes one static upscaler (fsrcnn, elsr, a searched subnet such as ofa-l); "
                         f"{cfg.source} is {what}")
    if source.name != cfg.model:
        raise ValueError(f"--init-from {cfg.source}: it is {source.name}, not --model {cfg.model}")
    if source.scale != cfg.scale:
        raise ValueError(f"--init-from {cfg.source}: it is a x{source.scale:g} model, not x{cfg.scale}")
    if cfg.patch % cfg.scale:
        raise ValueError(f"--patch {cfg.patch} must be divisible by the scale {cfg.scale}")
    return source


def build(cfg: QatConfig) -> QatNet:
    """Load the float model, prepare it as int8 exports do, and capture the fake-quant training graph."""
    from torch.export import Dim
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    source = source_model(cfg)
    lr_side = cfg.patch // cfg.scale
    torch.manual_seed(cfg.seed)
    calib = load_calib().batch(lr_side, lr_side)
    start = equalize(deploy(source).upscaler, calib).eval()
    example = torch.rand(cfg.batch, 3, lr_side, lr_side, generator=torch.Generator().manual_seed(cfg.seed))
    exported = torch.export.export(ExportWrapper(copy.deepcopy(start)), (example,),
                                   dynamic_shapes=({0: Dim("batch", min=1, max=1024)},))
    graph = prepare_qat_pt2e(exported.module(), quantizer())
    with torch.no_grad():  # activation ranges: min/max over the calibration images, as the converters compute them
        graph(calib)
    for mod in graph.modules():  # ... then frozen, so the weights learn the ranges every int8 route will use
        if getattr(mod, "qscheme", None) == torch.per_tensor_affine and hasattr(mod, "disable_observer"):
            mod.disable_observer()  # weights (per-channel) keep tracking their own max, as the converters do
    subpixel = {f"model.{name}": mod for name, mod in start.named_modules()
                if isinstance(mod, SubPixelConv) and mod.taps is not None}
    return QatNet(source, start, graph, subpixel)


def project(net: QatNet) -> None:
    """Keep every sub-pixel layer of the graph the exact image of a transposed convolution (after each step)."""
    for prefix, layer in net.subpixel.items():
        weight = net.graph.get_parameter(f"{prefix}.conv.weight")
        bias = net.graph.get_parameter(f"{prefix}.conv.bias") if layer.conv.bias is not None else None
        layer.project_(weight, bias)


def float_module(net: QatNet) -> nn.Module:
    """The trained float weights in the source model's own (undeployed) layout: what the checkpoint holds."""
    trained = {k.removeprefix("model."): v.detach() for k, v in net.graph.state_dict().items() if k.startswith("model.")}
    deployed = copy.deepcopy(net.start)
    own = deployed.state_dict()
    deployed.load_state_dict({k: v for k, v in trained.items() if k in own})
    module = copy.deepcopy(net.source.module)
    target = module.state_dict()
    module.load_state_dict({k: v for k, v in deployed.state_dict().items() if k in target}, strict=False)
    for prefix in net.subpixel:
        path = prefix.removeprefix("model.")
        deployed.get_submodule(path).to_transposed(module.get_submodule(path))
    return module.eval()


def simulated_int8(net: QatNet, lr_side: int) -> Pipeline:
    """The fake-quant graph as an upscaler on fixed ``lr_side`` tiles (the size it was captured at)."""
    def run(x: torch.Tensor) -> torch.Tensor:
        return net.graph(x)

    return Pipeline(run, net.source.scale, fixed_size=(lr_side, lr_side))


def _float_psnr(net: QatNet, val: list) -> float:
    """Set5 PSNR of the trained weights in float (the checkpoint as a float model would run it)."""
    model = Model(net.source.name, "upscaler", net.source.scale, float_module(net), "")
    return evaluate(Pipeline(deploy(model).upscaler, model.scale), val, with_ssim=False).psnr


def _train_mode(graph: torch.fx.GraphModule, training: bool) -> None:
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    (move_exported_model_to_train if training else move_exported_model_to_eval)(graph)


def train_qat(cfg: QatConfig, resume: bool = False, progress: bool = True) -> dict:
    """Fine-tune ``cfg.source`` quantization-aware; writes ``model.safetensors`` (+ ``.json``, ``qat: true``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--qat fine-tunes in one process; run it without torchrun")
    source_model(cfg)  # a wrong model is refused before the run folder is touched
    _, _, out, ckpt_path = start_run(cfg.out, cfg.batch, resume)
    net = build(cfg)
    data = TrainPatches(cfg.data, cfg.scale, cfg.patch, warn=warn)
    val = load_benchmark(cfg.val_dataset, cfg.scale, cfg.val_root) if cfg.val_every else []
    lr_side = cfg.patch // cfg.scale
    opt = torch.optim.Adam(net.graph.parameters(), lr=cfg.lr)
    step, elapsed, history = 0, 0.0, []
    if resume:
        ckpt = load_run_checkpoint(ckpt_path)
        saved = ckpt["train_config"]
        for key in ("model", "scale", "batch", "patch", "seed", "init_from"):
            if saved.get(key) != asdict(cfg)[key]:
                raise ValueError(f"--resume: {key} differs from the checkpoint ({saved.get(key)!r} vs {asdict(cfg)[key]!r})")
        net.graph.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, elapsed, history = ckpt["step"], ckpt["train_seconds"], ckpt["history"]
    else:
        write_config(out, {**asdict(cfg), "qat": True})
    meta = {"model": net.source.name, "scale": cfg.scale, "config": net.source.module.config(), "qat": True,
            "init_from": cfg.source}
    float_psnr = (evaluate(Pipeline(deploy(net.source).upscaler, cfg.scale), val, with_ssim=False).psnr
                  if val else math.nan)

    def checkpoint() -> None:
        state = {"model": net.graph.state_dict(), "optimizer": opt.state_dict(), "step": step, "train_seconds": elapsed,
                 "history": history, "train_config": asdict(cfg), "meta": meta}
        written([ckpt_path], "; the previous checkpoint is kept", atomic_save, state, ckpt_path)

    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, dynamic_ncols=True, unit="it")
    val_psnr = math.nan
    t_last = time.perf_counter()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
        lr_img, hr_img = data.batch(cfg.seed, step, range(cfg.batch))
        _train_mode(net.graph, True)
        loss = (net.graph(lr_img) - hr_img).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        project(net)
        step += 1
        now = time.perf_counter()
        elapsed += now - t_last
        t_last = now
        if val and (step % cfg.val_every == 0 or step == cfg.steps):
            _train_mode(net.graph, False)
            with torch.no_grad():
                val_psnr = evaluate(simulated_int8(net, lr_side), val, with_ssim=False).psnr
                val_float = _float_psnr(net, val)
            history.append({"step": step, "loss": loss.item(), "val_int8_sim_psnr": val_psnr, "val_float_psnr": val_float,
                            "seconds": elapsed})
            t_last = time.perf_counter()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint()
        bar.set_postfix(loss=f"{loss.item():.4f}", int8_sim=f"{val_psnr:.2f}", refresh=False)
        bar.update(1)
    bar.close()
    module = float_module(net)
    trained_float = _float_psnr(net, val) if val else math.nan
    summary = {"step": step, "train_seconds": elapsed, "out": str(out), "start_float_psnr": float_psnr,
               "float_psnr": trained_float, "int8_sim_psnr": val_psnr}
    final = out / "model.safetensors"
    written([final, final.with_suffix(".json")], "; the last checkpoint is kept", write_weights, module,
            {**meta, "step": step, "train_seconds": elapsed}, final)
    written([out / "summary.json"], "", atomic_write_text, out / "summary.json",
            json.dumps({**summary, "history": history}, indent=2) + "\n")
    return summary
