"""The ``mobile-sr`` command line. It only parses, calls the package and prints.

Every expected failure (bad input, missing extra, unknown model) is one line on stderr and exit
code 2; a traceback means a bug.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from .models import DEFAULT_MODEL

EXIT_USAGE = 2


def fail(msg: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


class Commands(click.Group):
    """click's own refusals (a value out of range, an unknown option, a missing one) as the same one ``error:``
    line as every other refusal, with exit 2, instead of click's three-line usage block."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help, as click shows it
            click.echo(exc.format_message(), err=True)
            sys.exit(EXIT_USAGE)
        except click.UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            fail(exc.format_message() + hint)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class Factor(click.ParamType):
    """``--scale``: an integer, or for a scale-arbitrary model (rescale-aidn) a fraction such as 2.5; an integral
    value comes back as an int, so x2 and x2.0 name the same weights."""

    name = "factor"

    def __init__(self, minimum: float = 1) -> None:
        self.minimum = minimum

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | float:
        if isinstance(value, (int, float)):
            number = float(value)
        else:
            try:
                number = float(str(value))
            except ValueError:
                self.fail(f"{value!r} is not a number", param, ctx)
        if not number >= self.minimum or number == float("inf"):
            self.fail(f"{value} is not a factor >= {self.minimum:g}", param, ctx)
        return int(number) if number.is_integer() else number


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mobile-sr")
def main() -> None:
    """Train, evaluate and run small super-resolution models for phones."""


# Which `train` options belong to which trainer: giving one to the other trainer is an error, never ignored.
PLAIN_ONLY = ("scale", "steps", "tail_lr_scale", "loss", "init", "ema", "qat")  # --arch: both (ofa-sr: rep only)
OFA_ONLY = ("phase_steps", "shrink_lr", "subnets")
PAIR_ONLY = ("lr_weight", "unconstrained", "jpeg")
UPSCALER_ONLY = ("lr_codec",)  # refused for pairs and ofa-sr: they make (pairs) or sample (ofa-sr) their own LR


@main.command()
@click.option("--model", "model_name", default="fsrcnn", show_default=True,
              help="Built-in architecture to train; ofa-sr trains the Once-for-All supernet (x2 and x4 at once).")
@click.option("--scale", type=click.IntRange(min=1), default=2, show_default=True, help="Not for ofa-sr (x2 and x4).")
@click.option("--data", multiple=True, required=True, help="Folder of HR training images (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (checkpoints, weights, logs).")
@click.option("--steps", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Not for ofa-sr (see --phase-steps).")
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Global batch (split across torchrun ranks).")
@click.option("--patch", type=click.IntRange(min=1), default=64, show_default=True, help="HR patch side in pixels.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Peak learning rate (ofa-sr: of the full phase).")
@click.option("--tail-lr-scale", type=float, default=0.1, show_default=True, help="LR multiplier of the upsampling layer.")
@click.option("--warmup", type=click.IntRange(min=0), default=None,
              help="Warm-up steps  [default: 500; ofa-sr: 200 per phase, at most a tenth of it]")
@click.option("--loss", type=click.Choice(["l1", "charbonnier"]), default="l1", show_default=True)
@click.option("--init", "init", type=click.Choice(["paper", "bicubic"]), default="paper", show_default=True,
              help="bicubic: start FSRCNN as bicubic upscaling (converges much faster).")
@click.option("--init-from", default=None, help="Model name or checkpoint to fine-tune from (weights that fit).")
@click.option("--arch", multiple=True, metavar="KEY=VALUE",
              help="Override an architecture setting, e.g. --arch width=16 (ELSR), --arch d=32 (FSRCNN), "
                   "--arch tail=direct (an OFA cut at x4: one PixelShuffle stage).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-every", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Steps between validations (0: never).")
@click.option("--ckpt-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads per process.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last checkpoint left off.")
@click.option("--phase-steps", default="6000,1500,1500,3000", show_default=True, metavar="FULL,KERNEL,DEPTH,EXPAND",
              help="ofa-sr only: steps of each progressive-shrinking phase.")
@click.option("--shrink-lr", type=click.FloatRange(min=0, min_open=True), default=5e-4, show_default=True,
              help="ofa-sr only: peak LR of the kernel/depth/expand phases.")
@click.option("--subnets", type=click.IntRange(min=1), default=2, show_default=True,
              help="ofa-sr only: sampled subnets per step.")
@click.option("--lambda", "lr_weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Pairs only: weight of the L2 between the learned LR and the MATLAB-bicubic LR.")
@click.option("--jpeg", default=None, metavar="LO-HI[@P]",
              help="Pairs only: JPEG-aware training, a differentiable JPEG of quality LO..HI for a share P of the images.")
@click.option("--unconstrained", is_flag=True,
              help="Pairs only, an ablation: float LR, no 8-bit rounding, no LR term (not an honest LR).")
@click.option("--lr-codec", default=None, metavar="CODEC:LO-HI[/STEP][@P]",
              help="Upscalers only: train on LR decoded from a real video codec (e.g. h264:24-40) at a CRF drawn "
                   "from LO..HI by STEP (default 2), for a share P of the samples (default 1).")
@click.option("--ema", type=click.FloatRange(min=0, max=1, max_open=True), default=0.0, show_default=True,
              help="Decay of an exponential moving average of the weights (e.g. 0.999); validation and the written "
                   "weights are the average's. 0: none. Not for ofa-sr.")
@click.option("--qat", is_flag=True,
              help="Quantization-aware fine-tuning of --init-from's weights on the int8 grid of the exports (XNNPACK "
                   "PT2E); the written weights sit on that grid, and int8 exports convert them as they are. For a pair, "
                   "its upscaler (the downscaler trains on in float). One process.")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def train(ctx: click.Context, model_name: str, scale: int, data: tuple[str, ...], out: str, steps: int, batch: int,
          patch: int, lr: float, tail_lr_scale: float, warmup: int | None, loss: str, init: str, init_from: str | None,
          arch: tuple[str, ...], seed: int, val_every: int, ckpt_every: int, threads: int | None, resume: bool,
          phase_steps: str, shrink_lr: float, subnets: int, lr_weight: float, jpeg: str | None, unconstrained: bool,
          lr_codec: str | None, ema: float, qat: bool, no_progress: bool) -> None:
    """Train a model on folders of HR images (runs under torchrun for DDP).

    A pair (e.g. rescale) trains its downscaler and upscaler jointly: HR -> downscaler -> 8-bit LR -> upscaler."""
    import torch

    from .models import MODELS, SUPERNET, ModelError
    from .train.trainer import RunWriteError, TrainConfig
    from .train.trainer import train as run_train

    pair = model_name in MODELS and MODELS[model_name].role == "pair"
    # A supernet pair (rescale-ofa) trains with the ofa-sr trainer at its one --scale.
    supernet_pair = pair and MODELS[model_name].default_config["upscaler"]["model"] == SUPERNET
    ofa = model_name == SUPERNET or supernet_pair
    if supernet_pair:
        trainer_refuses = tuple(n for n in PLAIN_ONLY if n != "scale") + ("unconstrained",)
    else:
        trainer_refuses = PLAIN_ONLY if ofa else OFA_ONLY
    refused = trainer_refuses + (() if pair else PAIR_ONLY) + (UPSCALER_ONLY if ofa or pair else ())
    given = [name for name in refused if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT]
    if given:
        flags = ", ".join("--" + name.replace("_", "-").replace("lr-weight", "lambda") for name in given)
        why = ("--lr-codec is for a plain upscaler: a pair makes its own LR, ofa-sr trains its subnets on clean LR"
               if all(g in UPSCALER_ONLY for g in given) else
               "it trains in --phase-steps (a trained supernet, --init-from ofa-sr: 0,0,0,STEPS), and its LR is "
               "always an 8-bit image" if supernet_pair else
               "ofa-sr trains x2 and x4 in --phase-steps" if ofa else
               "those options are for --model ofa-sr" if not any(g in PAIR_ONLY for g in given) else
               "those options are for pairs (downscaler + upscaler), e.g. --model rescale")
        trainer = "the ofa-sr trainer" if model_name == SUPERNET else model_name
        fail(f"{flags}: not an option of {trainer} ({why})")
    if threads:
        torch.set_num_threads(threads)
    if ofa:
        pair_args = {"pair": model_name, "scale": scale, "lr_weight": lr_weight, "jpeg": jpeg} if supernet_pair else {}
        for item in arch:  # the one setting of the supernet trainer: re-parameterised blocks
            key, _, value = item.partition("=")
            if key.strip() != "rep" or value.strip() not in ("0", "1"):
                fail(f"--arch {item!r}: the ofa-sr trainer takes --arch rep=0|1 only (re-parameterised blocks)")
            pair_args["rep"] = int(value)
        _train_ofa(list(data), out, phase_steps, lr, shrink_lr, warmup, batch, patch, subnets, seed, val_every,
                   ckpt_every, init_from, resume, no_progress, **pair_args)
        return
    overrides = {}
    for item in arch:
        key, sep, value = item.partition("=")
        value = value.strip()
        if not sep or not value or not (value.isdigit() or value.isidentifier()):
            fail(f"--arch {item!r}: expected KEY=INT or KEY=WORD, e.g. --arch width=16 or --arch tail=direct")
        overrides[key.strip()] = int(value) if value.isdigit() else value
    if pair and overrides:  # a pair's settings are its parts': --arch downscaler.width=48
        nested = {part: {**spec, "config": dict(spec.get("config", {}))}
                  for part, spec in MODELS[model_name].default_config.items()}
        for key, value in overrides.items():
            part, dot, setting = key.partition(".")
            if not dot or part not in nested:
                fail(f"--arch {key}={value}: a pair's settings are PART.KEY=INT with PART downscaler or upscaler, "
                     "e.g. --arch downscaler.width=48")
            nested[part]["config"][setting] = value
        overrides = nested
    cfg = TrainConfig(model=model_name, scale=scale, data=list(data), out=out, steps=steps, batch=batch, patch=patch,
                      lr=lr, tail_lr_scale=tail_lr_scale, warmup=500 if warmup is None else warmup, loss=loss,
                      seed=seed, init=init, init_from=init_from, val_every=val_every, ckpt_every=ckpt_every,
                      config=overrides, lr_weight=lr_weight, unconstrained=unconstrained, jpeg=jpeg, lr_codec=lr_codec,
                      ema=ema, qat=qat)
    try:
        summary = run_train(cfg, resume=resume, progress=not no_progress)
    except RunWriteError as exc:  # disk full, permissions: the run failed, its last checkpoint is kept
        fail(str(exc), 1)
    except (ModelError, ValueError, OSError) as exc:  # OSError: --out refused up front, unreadable --data
        fail(str(exc))
    best = summary["best_val_psnr"]  # -inf when never validated (--val-every 0)
    click.echo(f"done: step {summary['step']}, best Set5 x{scale} PSNR "
               f"{f'{best:.2f} dB' if best > -float('inf') else 'not measured'}, "
               f"{summary['train_seconds'] / 60:.1f} min -> {Path(out) / 'model.safetensors'}")


def _train_ofa(data: list[str], out: str, phase_steps: str, lr: float, shrink_lr: float, warmup: int | None,
               batch: int, patch: int, subnets: int, seed: int, val_every: int, ckpt_every: int,
               init_from: str | None, resume: bool, no_progress: bool, **pair_args: object) -> None:
    """The supernet trainer: ofa-sr (x2 and x4 at once), or a supernet pair at its one scale (``pair_args``)."""
    from .models import ModelError
    from .train.ofa import PHASES, OFATrainConfig, train_ofa
    from .train.trainer import RunWriteError

    parts = phase_steps.split(",")
    if len(parts) != len(PHASES) or not all(p.strip().isdigit() for p in parts):
        fail(f"--phase-steps {phase_steps!r}: expected {len(PHASES)} integers ({','.join(PHASES)}), e.g. 6000,1500,1500,3000")
    scale = int(pair_args.get("scale", 2))  # type: ignore[call-overload]
    if not pair_args and patch % 4:
        fail(f"--patch {patch}: ofa-sr trains x2 and x4, so the HR patch must be divisible by 4")
    if patch % scale:
        fail(f"--patch {patch}: the HR patch must be divisible by the scale ({scale})")
    extra = {} if warmup is None else {"warmup": warmup}
    try:
        cfg = OFATrainConfig(data=data, out=out, steps=dict(zip(PHASES, map(int, parts), strict=True)),
                             lr={p: (lr if p == "full" else shrink_lr) for p in PHASES}, batch=batch,
                             lr_patch=patch // scale, subnets=subnets, seed=seed, val_every=val_every,
                             ckpt_every=ckpt_every, init_from=init_from, **extra, **pair_args)  # type: ignore[arg-type]
        summary = train_ofa(cfg, resume=resume, progress=not no_progress)
    except RunWriteError as exc:  # disk full, permissions: the run failed, its last checkpoint is kept
        fail(str(exc), 1)
    except (ModelError, ValueError, OSError) as exc:  # OSError: --out refused up front, unreadable --data
        fail(str(exc))
    last = summary["history"][-1] if summary["history"] else {}
    figs = ", ".join(f"{k} {v:.2f}" for k, v in last.items() if k.startswith(("largest", "smallest")))
    click.echo(f"done: step {summary['step']}, held-out PSNR {figs or 'not measured'}, "
               f"{summary['train_seconds'] / 60:.1f} min -> {Path(out) / 'model.safetensors'}")


@main.command("models")
def models_cmd() -> None:
    """List built-in models: role, scales with shipped weights, size, cost and Set5/Set14 PSNR (a pair: its
    upscaler's size and cost, the learned pipeline's PSNR, and how far its LR is from the bicubic one)."""
    from .models import MODELS, create_model
    from .models.deploy import deploy_module, profile

    click.echo(f"{'model':<10} {'role':<10} {'scale':>5} {'params':>8} {'MACs/px':>8} {'Set5':>13} {'Set14':>13}  "
               "description")
    for name, spec in MODELS.items():
        shipped = spec.shipped_scales()
        if spec.role == "downscaler" or (spec.role == "pair" and not shipped):  # no cost or figures of their own
            click.echo(f"{name:<10} {spec.role:<10} {'-':>5} {'-':>8} {'-':>8} {'-':>13} {'-':>13}  {spec.description}")
            continue
        for scale in shipped or [2]:  # shipped models are profiled in their shipped config (OFA subnets differ)
            # A pair's cost is its upscaler's, what the phone runs; its figures are the learned pipeline's.
            prof = profile(deploy_module(create_model(name, scale, pretrained=bool(shipped))), scale) \
                if spec.role == "upscaler" else profile(deploy_module(create_model(name, scale).upscaler), scale)
            figs = (spec.manifest(scale) or {}).get("eval", {})
            figs = figs.get(f"x{scale}", figs)  # the supernet records its largest subnet per scale
            s5 = f"{figs['Set5']['psnr']:.2f}/{figs['Set5']['ssim']:.4f}" if "Set5" in figs else "untrained"
            s14 = f"{figs['Set14']['psnr']:.2f}/{figs['Set14']['ssim']:.4f}" if "Set14" in figs else "-"
            lr = f"; LR {figs['Set14']['lr_psnr']:.1f} dB from bicubic" if "lr_psnr" in figs.get("Set14", {}) else ""
            click.echo(f"{name:<10} {spec.role:<10} {'x' + str(scale):>5} {prof.params:>8,} "
                       f"{prof.macs_per_output_pixel:>8,.0f} {s5:>13} {s14:>13}  {spec.description}{lr}")


def _load(model: str, scale: float | None):
    """The deployed model a command runs (``deploy`` is the one step between training and every consumer)."""
    from .models import ModelError, load_model
    from .models.deploy import deploy

    try:
        return deploy(load_model(model, scale))
    except ModelError as exc:
        fail(str(exc))


def _torch_only(model, runtime: str) -> None:  # noqa: ANN001 (a models.Model; imported lazily)
    """The runtime check of ``runtime_upscaler``, up front: one error line before any work."""
    from .export.runtime import check_runtime

    try:
        check_runtime(model, runtime)
    except ValueError as exc:
        fail(str(exc))


def _write_json(doc: dict, path: str) -> None:
    """``--json`` output: atomic, and an OS error (read-only folder, full disk) is one line."""
    import json

    from .core.files import atomic_write_text

    try:
        atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        fail(f"{path}: cannot write ({exc.strerror or exc})")


def _check_out_file(path: str | None, option: str) -> None:
    """Before any work: the folder of an output file must exist and be writable."""
    from .core.files import check_writable_dir

    if path:
        try:
            check_writable_dir(Path(path).resolve().parent)
        except OSError as exc:
            fail(f"{option} {path}: {exc}")


@main.command("eval")
@click.option("--model", "model_spec", default=DEFAULT_MODEL, show_default=True,
              help="Built-in model name, run folder, .pt checkpoint or .safetensors file; 'bicubic' for the baseline.")
@click.option("--dataset", default="Set5", show_default=True)
@click.option("--scale", type=Factor(), default=None,
              help="Default: the checkpoint's scale, or 2 for a built-in name. A fraction (2.5) for rescale-aidn.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Folder holding <dataset>/x<scale>/{HR,LR}; default: the Set5 copy inside the package.")
@click.option("--downscaler", default=None,
              help="Make the LR from HR with this downscaler (e.g. bicubic) instead of reading the published LR.")
@click.option("--pipeline", "source", type=click.Choice(["learned", "bicubic"]), default=None,
              help="Where the LR comes from. learned: the pair's own downscaler, rounded to 8 bits; bicubic: the "
                   "published MATLAB-bicubic LR files. Default: learned for a pair, bicubic otherwise.")
@click.option("--codec", default=None, metavar="jpeg:Q", help="Compress the LR on its way to the upscaler.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None, help="Same as --codec jpeg:Q.")
@click.option("--tile", type=click.IntRange(min=1), default=None, help="Run tiled with this LR tile size.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the scores here.")
@click.option("--runtime", type=click.Choice(["auto", "torch", "onnx", "tflite", "executorch"]), default="auto",
              show_default=True, help="Where the upscaler runs (fp32, the same figures to 0.01 dB; a downscaler stays "
                                      "in PyTorch); auto: the fastest installed of onnx, tflite, executorch, torch.")
def eval_cmd(model_spec: str, dataset: str, scale: float | None, data_root: str | None, downscaler: str | None,
             source: str | None, codec: str | None, jpeg_quality: int | None, tile: int | None,
             json_out: str | None, runtime: str) -> None:
    """PSNR/SSIM per image and mean (Y channel, crop = scale, as published tables) of a pipeline:
    LR (published file, a pair's downscaler or --downscaler, rounded to 8 bits) -> [--codec] -> the model."""
    from dataclasses import replace

    from .evaluation import bicubic_pipeline, evaluate_dataset, parse_codec, pipeline_for
    from .evaluation.protocol import crop_for
    from .export.runtime import DEFAULT_TILE, RuntimeMissing, resolve, runtime_upscaler
    from .models import ModelError

    _check_out_file(json_out, "--json")
    if codec and jpeg_quality is not None:
        fail("--codec and --jpeg-quality both name the codec; give one")
    try:
        comp = parse_codec(codec or (f"jpeg:{jpeg_quality}" if jpeg_quality is not None else None))
    except ValueError as exc:
        fail(str(exc))
    if source and downscaler:
        fail("--pipeline and --downscaler both say where the LR comes from; give one")
    runner = None
    if model_spec == "bicubic":
        pipe, label = bicubic_pipeline(scale or 2), "bicubic"
        if downscaler is not None:
            fail("--downscaler needs a model to upscale with; 'bicubic' is the published-LR baseline")
        if runtime not in ("auto", "torch"):
            fail(f"--runtime {runtime}: 'bicubic' is MATLAB's formula, not a network to export; it runs in PyTorch "
                 "(drop --runtime)")
        pipe = replace(pipe, codec=comp, tile=tile)
    else:
        try:
            runtime = resolve(runtime)
        except RuntimeMissing as exc:
            fail(str(exc))
        model, label = _load(model_spec, scale), model_spec
        _torch_only(model, runtime)
        if source == "learned" and model.role != "pair":
            fail(f"--pipeline learned: {model.name} is an {model.role} with no downscaler of its own; "
                 "use a pair (e.g. rescale), or --downscaler NAME")
        try:
            pipe = pipeline_for(model, downscaler, comp, tile)
        except ModelError as exc:
            fail(str(exc))
        if source == "bicubic" and model.role == "pair":
            pipe = replace(pipe, downscale=None)
            click.echo(f"note: {model.name}'s upscaler was trained on its own downscaler's LR; this scores it on "
                       "the published bicubic LR instead", err=True)
        # The runner tiles each image itself (an artifact takes one input size; PyTorch keeps --tile as given).
        runner = runtime_upscaler(model, runtime, tile=tile or (None if runtime == "torch" else DEFAULT_TILE),
                                  on_export=lambda msg: click.echo(f"note: {msg}", err=True))
        pipe = replace(pipe, upscale=runner, tile=None)
    try:
        res = evaluate_dataset(pipe, dataset, data_root, model=label)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if runner is not None:
        click.echo(f"runtime: {runner.describe()}", err=True)
    scale = res.scale
    lr_col = res.lr_psnr is not None
    click.echo(f"{label} on {dataset} x{scale:g} (Y, crop {crop_for(scale)})" + (f": {res.pipeline}" if lr_col else ""))
    click.echo(f"{'image':<16} {'PSNR':>7} {'SSIM':>7}" + (f" {'LR PSNR':>8}" if lr_col else ""))
    for img in res.images:
        click.echo(f"{img.name:<16} {img.psnr:>7.2f} {img.ssim:>7.4f}" + (f" {img.lr_psnr:>8.2f}" if lr_col else ""))
    click.echo(f"{'mean':<16} {res.psnr:>7.2f} {res.ssim:>7.4f}" + (f" {res.lr_psnr:>8.2f}" if lr_col else ""))
    if lr_col:
        made = "the published" if float(scale).is_integer() else "the (cropped HR's)"
        click.echo(f"LR PSNR: the pipeline's 8-bit LR against {made} MATLAB-bicubic LR (Y, no crop)")
    if json_out:
        _write_json(res.to_dict(), json_out)


@main.command()
@click.argument("src", type=click.Path(exists=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(), help="Output image, or folder when SRC is one.")
@click.option("--model", "model_spec", default=DEFAULT_MODEL, show_default=True,
              help="Built-in model name, run folder or checkpoint.")
@click.option("--scale", type=Factor(), default=None,
              help="Default: the checkpoint's scale, or 2 for a built-in name. A fraction (2.5) for rescale-aidn.")
@click.option("--tile", type=int, default=256, show_default=True, help="LR tile side (0: whole image at once).")
@click.option("--overlap", type=int, default=8, show_default=True,
              help="LR pixels of context around each tile (0 to --tile).")
@click.option("--quality", type=int, default=95, show_default=True, help="JPEG/WebP output quality (1-100).")
@click.option("--runtime", type=click.Choice(["auto", "torch", "onnx", "tflite", "executorch"]), default="auto",
              show_default=True, help="Where the upscaler runs (fp32, the same output to 1/255); auto: the fastest "
                                      "installed of onnx, tflite, executorch, torch.")
def upscale(src: str, dst: str, model_spec: str, scale: float | None, tile: int, overlap: int, quality: int,
            runtime: str) -> None:
    """Upscale an image, or every image in a folder (the model loads once).

    Inputs up to 8K, outputs up to 16K; an output is never allowed to be one of the inputs.
    """
    from .export.runtime import RuntimeMissing, resolve, runtime_upscaler
    from .upscale import UpscaleError, plan_jobs, upscale_file

    if tile < 0:
        fail(f"--tile {tile}: must be >= 0 (0: the whole image at once)")
    if overlap < 0 or (tile and overlap > tile):
        fail(f"--overlap {overlap}: must be between 0 and --tile ({tile})" if tile else
             f"--overlap {overlap}: must be >= 0")
    if not 1 <= quality <= 100:
        fail(f"--quality {quality}: must be between 1 and 100")
    try:
        jobs = plan_jobs(Path(src), Path(dst))
        runtime = resolve(runtime)
    except (UpscaleError, RuntimeMissing) as exc:
        fail(str(exc))
    model = _load(model_spec, scale)
    _torch_only(model, runtime)
    if model.role == "pair":
        click.echo(f"note: {model.name}'s upscaler was trained on its own downscaler's LR (mobile-sr downscale "
                   f"--model {model_spec}); other LR images, bicubic ones included, are restored less well", err=True)
    runner = runtime_upscaler(model, runtime, tile=tile or None, overlap=overlap)

    def one(inp: Path, out: Path) -> str:
        spent = runner.export_seconds
        res = upscale_file(model.upscaler, model.scale, inp, out, tile=tile or None, overlap=overlap,
                           quality=quality, tiled=runner.tiled)
        exported = runner.export_seconds - spent  # the first image of a size exports the artifact (then cached)
        how = runner.brief() + (f"; {exported:.1f} s of it exporting, once" if exported else "")
        return (f"{inp} {res.in_size[0]}x{res.in_size[1]} -> {out} {res.out_size[0]}x{res.out_size[1]} "
                f"({res.seconds:.2f} s, {how})")

    _each_file(jobs, one)


def _each_file(jobs: list[tuple[Path, Path]], one: Callable[[Path, Path], str]) -> None:
    """Run ``one`` on every (input, output) and print its line. A bad input (ImageError) is one error line and the
    rest of the folder still runs (exit 2 at the end); a failed write (disk full, no permission) exits 1."""
    from .data.images import ImageError

    bad = failed = 0
    for inp, out in jobs:
        try:
            click.echo(one(inp, out))
        except ImageError as exc:
            click.echo(f"error: {exc}", err=True)
            bad += 1
        except OSError as exc:  # a failed run, not a bad input
            click.echo(f"error: {out}: cannot write ({exc.strerror or exc})", err=True)
            failed += 1
    if failed:
        sys.exit(1)
    if bad:
        sys.exit(EXIT_USAGE)


@main.command()
@click.argument("src", type=click.Path(exists=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(),
              help="Output .png (or .jpg with --jpeg-quality), or a folder when SRC is one.")
@click.option("--model", "model_spec", default="rescale", show_default=True,
              help="A pair (its downscaler runs), a downscaler (bicubic), a run folder or a checkpoint.")
@click.option("--scale", type=Factor(), default=None,
              help="Default: the checkpoint's scale, or 2 for a built-in name. A fraction (2.5) for rescale-aidn or "
                   "bicubic.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
              help="Write the LR as a JPEG of this quality (4:2:0, as phones send) instead of an 8-bit PNG.")
@click.option("--tile", type=click.IntRange(min=0), default=256, show_default=True,
              help="LR tile side (0: whole image at once).")
def downscale(src: str, dst: str, model_spec: str, scale: float | None, jpeg_quality: int | None, tile: int) -> None:
    """Make the LR image a phone restores: HR -> downscaler -> 8-bit PNG (or JPEG), a file or a folder.

    An HR side that is not a multiple of the scale is cropped at the bottom/right, as benchmarks crop."""
    from .data.imresize import cells
    from .downscale import DownscaleError, downscale_file, plan

    try:
        jobs = plan(Path(src), Path(dst), jpeg_quality)
    except DownscaleError as exc:
        fail(str(exc))
    model = _load(model_spec, scale)
    if model.downscaler is None:
        fail(f"{model_spec}: {model.name} is an {model.role}; downscale needs a pair (e.g. rescale) or a "
             "downscaler (e.g. bicubic)")
    def one(inp: Path, out: Path) -> str:
        res = downscale_file(model.downscaler, model.scale, inp, out, tile=tile or None,
                             jpeg_quality=jpeg_quality)
        (iw, ih), (uw, uh) = res.in_size, res.used_size
        p, q = cells(model.scale)
        unit = f"{p} (x{model.scale:g} = {p}/{q})" if q > 1 else f"x{model.scale:g}"
        crop = f" (cropped to {uw}x{uh}, a multiple of {unit})" if res.cropped else ""
        return f"{inp} {iw}x{ih}{crop} -> {out} {res.out_size[0]}x{res.out_size[1]} ({res.seconds:.2f} s)"

    _each_file(jobs, one)


@main.group("video")
def video_group() -> None:
    """Video: downscale and encode on the server, decode and super-resolve on the phone, measure the bits saved."""


WHOLE_FRAME_PIXELS = 640 * 480  # video upscale runs frames up to this size whole, larger ones tiled
DEFAULT_CRF = {"h264": 23, "hevc": 28, "av1": 35}  # each encoder's own default


def _bitrate(text: str | None) -> float | None:
    """``--bitrate``: kbit/s, as ``800``, ``800k`` or ``1.5M``."""
    if text is None:
        return None
    t = text.strip().lower()
    mult = 1000.0 if t.endswith("m") else 1.0
    try:
        kbps = float(t.rstrip("km")) * mult
    except ValueError:
        kbps = -1.0
    if kbps <= 0:
        fail(f"--bitrate {text!r}: expected kbit/s, e.g. 800, 800k or 1.5M")
    return kbps


def _frame_bar(total: int | None, enabled: bool, desc: str):  # noqa: ANN202 - a tqdm bar
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=None if enabled else True, leave=False)


def _video_run(run: Callable[[], object]) -> object:
    """Run a video command's work: a bad input or request is one line and exit 2, a failed write exit 1."""
    from .data.images import ImageError
    from .data.video import VideoError
    from .models import ModelError
    from .upscale import UpscaleError

    try:
        return run()
    except (VideoError, UpscaleError, ImageError, ModelError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write the output ({exc.strerror or exc})", 1)


@video_group.command("encode")
@click.argument("src", type=click.Path(exists=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False), help="The LR video (.mp4, .mkv, .mov).")
@click.option("--scale", type=click.IntRange(min=2), default=2, show_default=True)
@click.option("--downscaler", default="bicubic", show_default=True,
              help="bicubic (MATLAB), a pair whose learned downscaler to use (e.g. rescale), or a downscaler checkpoint.")
@click.option("--codec", default="h264", show_default=True, help="h264, hevc or av1.")
@click.option("--crf", type=click.IntRange(0, 63), default=None,
              help="Constant rate factor  [default: the encoder's own: h264 23, hevc 28, av1 35]")
@click.option("--bitrate", default=None, metavar="KBPS", help="Average bitrate instead of --crf: 800, 800k or 1.5M.")
@click.option("--preset", default="medium", show_default=True, help="x264/x265 preset (SVT-AV1 runs preset 8).")
@click.option("--no-progress", is_flag=True)
def video_encode(src: str, dst: str, scale: int, downscaler: str, codec: str, crf: int | None, bitrate: str | None,
                 preset: str, no_progress: bool) -> None:
    """Downscale every frame of a video (or a folder of frames) and encode it: what the server sends.

    Timestamps (a variable frame rate too) and audio pass through; the HR is cropped to a multiple of 2 x scale,
    as yuv420p needs even LR sides."""
    from .data.video import VIDEO_SUFFIXES, check_codec
    from .downscale import encode_video

    _video_run(lambda: check_codec(codec))
    codec = codec.lower()
    if crf is not None and bitrate is not None:
        fail("--crf and --bitrate both set the rate; give one")
    kbps = _bitrate(bitrate)
    src_p, dst_p = Path(src), Path(dst)
    if dst_p.suffix.lower() not in VIDEO_SUFFIXES:
        fail(f"{dst}: the LR video is a file: name it {', '.join(VIDEO_SUFFIXES[:-1])} or {VIDEO_SUFFIXES[-1]}")
    _check_out_file(dst, "-o")
    if dst_p.exists() and src_p.exists() and dst_p.resolve() == src_p.resolve():
        fail(f"{dst}: is the input; writing it would destroy the original, so choose another -o")
    model = _load(downscaler, scale)
    if model.downscaler is None:
        fail(f"--downscaler {downscaler}: {model.name} is an {model.role}; give bicubic, a pair (e.g. rescale) "
             "or a downscaler")
    crf = crf if crf is not None or kbps is not None else DEFAULT_CRF[codec]
    with _frame_bar(None, not no_progress, "encode") as bar:
        res = _video_run(lambda: encode_video(model.downscaler, scale, src_p, dst_p, codec=codec, crf=crf, kbps=kbps,
                                              preset=preset, on_frame=lambda: bar.update()))
    (iw, ih), (uw, uh), (ow, oh) = res.in_size, res.used_size, res.out_size
    crop = f" (cropped to {uw}x{uh}, a multiple of {2 * scale})" if res.cropped else ""
    rate = f"crf {crf}" if kbps is None else f"target {kbps:g} kbps"
    audio = f", audio copied ({res.audio_packets} packets)" if res.audio_packets else ""
    click.echo(f"{src} {iw}x{ih}{crop} -> {dst} {ow}x{oh}, {res.frames} frames, {res.kbps:.0f} kbps video "
               f"({codec} {rate}, {model.name} x{scale}){audio}, {res.seconds:.1f} s ({res.frames / res.seconds:.1f} frames/s)")


@video_group.command("upscale")
@click.argument("src", type=click.Path(exists=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(),
              help="A video (.mp4, .mkv, .mov) or a folder of PNG frames (a name without a suffix).")
@click.option("--model", "model_spec", default=DEFAULT_MODEL, show_default=True,
              help="Built-in model name, run folder or checkpoint.")
@click.option("--scale", type=click.IntRange(min=1), default=None,
              help="Default: the checkpoint's scale, or 2 for a built-in name.")
@click.option("--runtime", type=click.Choice(["auto", "torch", "onnx", "tflite", "executorch"]), default="auto",
              show_default=True, help="Where the upscaler runs (fp32), so the frame rate is the deployed model's; auto: the "
                                      "fastest installed of onnx, tflite, executorch, torch.")
@click.option("--tile", type=click.IntRange(min=0), default=None,
              help="LR tile side (0: whole frames, one artifact for the video's frame size)  [default: whole frames up "
                   "to 640x480 (360p/480p streams), 256-pixel tiles above, which bounds the runtime's memory]")
@click.option("--codec", default="h264", show_default=True, help="Codec of an output video: h264, hevc or av1.")
@click.option("--crf", type=click.IntRange(0, 63), default=18, show_default=True,
              help="Quality of an output video (18: visually lossless, so the file shows the model, not the encoder).")
@click.option("--no-progress", is_flag=True)
def video_upscale(src: str, dst: str, model_spec: str, scale: int | None, runtime: str, tile: int | None, codec: str, crf: int,
                  no_progress: bool) -> None:
    """Decode a video (or a folder of frames), super-resolve every frame, and write a video or PNG frames.

    One frame is in memory at a time. Timestamps and audio pass through into a video output. An odd output side
    (x3 of an odd frame) loses its last row or column in a video (yuv420p), never in PNG frames."""
    from .data.video import check_codec, probe
    from .export.runtime import RuntimeMissing, resolve, runtime_upscaler
    from .upscale import upscale_video, video_output_kind

    _video_run(lambda: check_codec(codec))
    codec = codec.lower()
    src_p, dst_p = Path(src), Path(dst)
    kind = _video_run(lambda: video_output_kind(dst_p))
    _check_out_file(dst, "-o")
    try:
        runtime = resolve(runtime)
    except RuntimeMissing as exc:
        fail(str(exc))
    info = _video_run(lambda: probe(src_p))
    model = _load(model_spec, scale)
    _torch_only(model, runtime)
    if model.role == "downscaler":
        fail(f"--model {model_spec}: {model.name} is a downscaler; video upscale needs an upscaler or a pair")
    if model.role == "pair":
        click.echo(f"note: {model.name}'s upscaler was trained on its own downscaler's LR (mobile-sr video encode "
                   f"--downscaler {model_spec}); other LR, bicubic included, is restored less well", err=True)
    if tile is None:  # a 720p frame whole holds ~0.4 GB of activations in the runtime; a 256 tile 20x less
        tile = 0 if info.width * info.height <= WHOLE_FRAME_PIXELS else 256
    runner = runtime_upscaler(model, runtime, tile=tile or None,
                              on_export=lambda msg: click.echo(f"note: {msg}", err=True))
    with _frame_bar(info.frames, not no_progress, "upscale") as bar:
        res = _video_run(lambda: upscale_video(runner.tiled, int(model.scale), src_p, dst_p, crf=crf, codec=codec,
                                               on_frame=lambda: bar.update()))
    (iw, ih), (ow, oh) = res.in_size, res.out_size
    what = (f"{codec} crf {crf}, {res.kbps:.0f} kbps" + (f", audio copied ({res.audio_packets} packets)"
                                                        if res.audio_packets else "")
            if kind == "video" else "PNG frames")
    crop = " (cropped to even sides: yuv420p)" if res.cropped else ""
    fps = res.frames / max(res.seconds - runner.export_seconds, 1e-9)
    click.echo(f"{src} {iw}x{ih} -> {dst} {ow}x{oh}{crop}, {res.frames} frames ({what}), {res.seconds:.1f} s, "
               f"{fps:.2f} frames/s decoding, upscaling with {runner.describe()} and writing"
               + (f"; {runner.export_seconds:.1f} s of it exporting, once" if runner.export_seconds else ""))


@video_group.command("finetune")
@click.argument("src", type=click.Path(exists=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(file_okay=False),
              help="Folder for model.safetensors + model.json (loadable by --model DIR); must not exist or be empty.")
@click.option("--model", "model_spec", required=True,
              help="The upscaler to start from: built-in name, run folder or checkpoint.")
@click.option("--scale", type=click.IntRange(min=2), default=None,
              help="Default: the checkpoint's scale, or 2 for a built-in name.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="Wall-clock budget of the fine-tuning loop.")
@click.option("--crf", type=click.IntRange(0, 63), default=32, show_default=True,
              help="Rate of the LR stream whose decoded frames the model learns to restore.")
@click.option("--codec", default="h264", show_default=True, help="h264, hevc or av1.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads.")
@click.option("--no-progress", is_flag=True)
def video_finetune(src: str, dst: str, model_spec: str, scale: int | None, minutes: float, crf: int, codec: str,
                   seed: int, threads: int | None, no_progress: bool) -> None:
    """NAS-style fine-tuning: an upscaler overfitted to one video, to be streamed with it.

    SRC (a video or a folder of frames) is cropped to a multiple of 2 x scale, bicubic-downscaled, sent through
    CODEC at --crf and decoded; the upscaler is fine-tuned on those frames against the originals for --minutes.
    What is streamed is update.xz, the weight update on the base model the phone already has (int8 offsets in
    steps of 2^-6, xz); its size is `bytes` in model.json, and model.safetensors holds the weights it rebuilds."""
    import torch

    from .data.images import ImageError
    from .data.video import check_codec
    from .models import load_model
    from .train.finetune import finetune_video

    _video_run(lambda: check_codec(codec))
    src_p, dst_p = Path(src), Path(dst)
    if dst_p.exists() and (not dst_p.is_dir() or any(dst_p.iterdir())):
        fail(f"-o {dst}: exists and is not an empty folder; choose another -o, or delete it")
    _check_out_file(dst, "-o")
    if threads:
        torch.set_num_threads(threads)
    try:
        model = load_model(model_spec, scale)
        res = finetune_video(src_p, dst_p, model, crf=crf, codec=codec.lower(), minutes=minutes, seed=seed,
                             progress=not no_progress)
    except (ValueError, ImageError) as exc:  # VideoError and ModelError are ValueErrors: bad input or model
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {dst} ({exc.strerror or exc})", 1)
    r = res.result
    click.echo(f"{src}: {res.frames} frames, LR {res.lr_size[0]}x{res.lr_size[1]} {codec} crf {crf}; "
               f"{r.steps} steps in {r.seconds:.0f} s; Y-PSNR {r.psnr_before:.2f} -> {r.psnr_after:.2f} dB "
               f"({r.psnr_after - r.psnr_before:+.2f}); model {r.bytes} bytes streamed -> {dst}")


@video_group.command("compare")
@click.argument("ref", type=click.Path(exists=False))
@click.option("--codec", default="h264", show_default=True, help="h264, hevc or av1.")
@click.option("--scale", type=click.IntRange(min=2), default=2, show_default=True)
@click.option("--methods", default=None, metavar="NAME,...",
              help="Of full, bicubic-bicubic, bicubic-sr, learned-sr, finetuned-sr, codec-sr  [default: all that can run; "
                   "finetuned-sr with --finetune-minutes]")
@click.option("--upscaler", default="elsr", show_default=True, help="The generic upscaler of bicubic-sr and finetuned-sr.")
@click.option("--pair", default="rescale", show_default=True, help="The pair of learned-sr (its downscaler and upscaler).")
@click.option("--finetune-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="finetuned-sr: CPU budget of each rate point's fine-tuning (its weight update's bytes count in the "
                   "rate, and it is sent only where it pays for them).")
@click.option("--crf", "crf_text", default=None, metavar="LIST",
              help="full's rate points: 32,35,38 or 32-47:3  [default: 32-47:3, about 32-24 dB on Vid4]")
@click.option("--down-crf", "down_crf_text", default=None, metavar="LIST",
              help="The downscaled methods' rate points  [default: each --crf less 10 (overlapping rates), then on "
                   "in --crf's step to just below its last CRF (down to full's lowest PSNR)]")
@click.option("--no-hull", is_flag=True,
              help="Skip the convex hull's wider sweep (CRF 20-29 more for full and the best method).")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Use the first N frames (default: all).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Frame rate of the rate in kbps (default: the video's; 25 for a frame folder).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch and x264 threads (default: all cores).")
@click.option("--ssim-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="SSIM-Y of every k-th frame only (it costs ~2 s a 704x576 frame; Y-PSNR is always every frame).")
@click.option("--json", "json_out", required=True, type=click.Path(dir_okay=False), help="The RD points, BD-rates and hull.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), default=None,
              help="RD curves as a .png (needs matplotlib).")
def video_compare(ref: str, codec: str, scale: int, methods: str | None, upscaler: str, pair: str,
                  finetune_minutes: float | None, crf_text: str | None, down_crf_text: str | None, no_hull: bool,
                  frames: int | None, fps: float | None, threads: int | None, ssim_every: int, json_out: str,
                  plot_out: str | None) -> None:
    """Rate-distortion of sending REF (a video or a folder of frames) at full resolution against downscaling it and
    restoring it with bicubic or SR: Y-PSNR and SSIM-Y per rate point, BD-rate against full, and the convex hull."""
    from fractions import Fraction

    import torch

    from .core.files import atomic_write
    from .core.schema import validate
    from .data.video import check_codec, load_frames, probe
    from .evaluation import video as rd

    def checked(run: Callable[[], object]) -> object:
        try:
            return _video_run(run)
        except rd.CompareError as exc:
            fail(str(exc))

    codec = codec.lower()
    checked(lambda: check_codec(codec))
    for out, option in ((json_out, "--json"), (plot_out, "--plot")):
        _check_out_file(out, option)
    if Path(json_out).suffix.lower() != ".json":
        fail(f"--json {json_out}: must be a .json file")
    if plot_out and Path(plot_out).suffix.lower() != ".png":
        fail(f"--plot {plot_out}: must be a .png file")
    if plot_out and not rd.plot_available():
        fail("--plot needs matplotlib; install it with: pip install 'mobile-sr[bench]'")
    full_crfs = checked(lambda: rd.parse_crfs(crf_text)) if crf_text else rd.FULL_CRFS
    down_crfs = checked(lambda: rd.parse_crfs(down_crf_text, "--down-crf")) if down_crf_text else None
    names = ([n.strip() for n in methods.split(",") if n.strip()] if methods else
             list(rd.default_methods(scale, finetune=finetune_minutes is not None)))
    if finetune_minutes is not None and "finetuned-sr" not in names:
        fail("--finetune-minutes is for finetuned-sr; add it to --methods")
    if threads:
        torch.set_num_threads(threads)
    adapt = None
    if finetune_minutes is not None:
        def adapt(model, lr_frames, hr_frames):  # noqa: ANN001, ANN202 - evaluation may not import train/
            from .train.finetune import finetune

            res = finetune(model, lr_frames, hr_frames, seconds=finetune_minutes * 60)
            return res.model, res.bytes
    built = checked(lambda: rd.build_methods(names, scale, upscaler=upscaler, pair=pair, adapt=adapt))
    src = Path(ref)
    info = checked(lambda: probe(src))
    ref_frames = checked(lambda: load_frames(src, frames))
    rate = Fraction(fps).limit_denominator(1001) if fps else info.fps
    setup = rd.Setup(scale=scale, codec=codec, fps=rate, threads=threads or 0, ssim_every=ssim_every)
    with _frame_bar(None, True, "rate points") as bar:
        bar.unit = "point"
        comp = checked(lambda: rd.compare(ref_frames, built, setup, full_crfs, down_crfs,
                                          None if no_hull else rd.HULL_CRFS, reference=str(src),
                                          on_point=lambda name, p: bar.update()))
    doc = comp.as_json()
    problems = validate(doc, rd.SCHEMA)
    if problems:  # a bug, not bad input: never write a document that breaks its own schema
        raise RuntimeError(f"video compare wrote an invalid document: {problems[0]}")
    png = rd.plot_png(doc) if plot_out else None
    import json

    try:
        atomic_write(json_out, (json.dumps(doc, indent=2) + "\n").encode())
        if plot_out and png is not None:
            atomic_write(plot_out, png)
    except OSError as exc:
        fail(f"cannot write the output ({exc.strerror or exc})", 1)
    click.echo(rd.table(doc))
    click.echo(f"wrote {json_out}" + (f" and {plot_out}" if plot_out else ""))


@main.command("bench")
@click.argument("artifacts", nargs=-1, required=True)
@click.option("--device", type=click.Choice(["host", "adb"]), default="host", show_default=True,
              help="host: this machine's runtimes; adb: an Android device.")
@click.option("--serial", default=None, help="adb device serial (default: $ANDROID_SERIAL, else the only device).")
@click.option("--adb", "adb_path", default=None, help="adb executable (default: $ADB, else adb on PATH).")
@click.option("--runner", type=click.Choice(["binary", "app"]), default=None,
              help="adb: run --binary on the phone, or the demo app (default: binary when --binary is given).")
@click.option("--binary", "binaries", multiple=True, type=click.Path(dir_okay=False),
              help="adb: TFLite benchmark_model and/or ExecuTorch executor_runner for the phone (repeatable).")
@click.option("--apk", type=click.Path(dir_okay=False), default=None, help="adb app runner: install this APK first.")
@click.option("--backend", type=click.Choice(["xnnpack", "gpu", "nnapi", "qnn", "vulkan"]), default="xnnpack",
              show_default=True, help="adb app runner: the backend the app runs the model on.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=50, show_default=True)
@click.option("--input-size", default="256x256", show_default=True,
              help="Input size for checkpoints (exported artifacts have their own).")
@click.option("--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="adb: seconds any one device step (push, run, app) may take.")
@click.option("--no-psnr", is_flag=True, help="Skip the Set5 PSNR of each artifact.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the results here.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), default=None, help="Write one row per artifact here.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of PSNR against latency here.")
@click.option("--no-progress", is_flag=True)
@click.option("--verbose", is_flag=True, help="Also show what the runtimes print.")
def bench_cmd(artifacts: tuple[str, ...], device: str, serial: str | None, adb_path: str | None, runner: str | None,
              binaries: tuple[str, ...], apk: str | None, backend: str, threads: int, warmup: int, runs: int,
              input_size: str, timeout: float, no_psnr: bool, json_out: str | None, csv_out: str | None,
              plot_out: str | None, no_progress: bool, verbose: bool) -> None:
    """Latency, memory and Set5 PSNR of exported artifacts (or checkpoints), on the host or a phone."""
    from .bench.adb import AdbError
    from .bench.artifact import BenchError, open_artifact, parse_size
    from .bench.report import plot_available, table, write_csv, write_json, write_plot
    from .bench.run import bench, connect
    from .core.quiet import set_verbose

    set_verbose(verbose)
    for out, option in ((json_out, "--json"), (csv_out, "--csv"), (plot_out, "--plot")):
        _check_out_file(out, option)
    if plot_out and Path(plot_out).suffix.lower() != ".png":
        fail(f"--plot {plot_out}: must be a .png file")
    if plot_out and not plot_available():
        fail("--plot needs matplotlib; install it with: pip install 'mobile-sr[bench]'")
    if device == "host" and (serial or runner or binaries or apk):
        fail("--serial, --runner, --binary and --apk apply to --device adb only")
    runner = runner or ("binary" if binaries else "app")
    if device == "adb" and runner == "binary" and not binaries:
        fail("--runner binary needs --binary PATH (TFLite benchmark_model or ExecuTorch executor_runner)")
    for path in (*binaries, *([apk] if apk else [])):
        if not Path(path).is_file():
            fail(f"{path}: no such file")
    try:
        size = parse_size(input_size)
        arts = [open_artifact(a, size) for a in artifacts]
    except BenchError as exc:
        fail(str(exc))
    try:
        plan = connect(adb_path, serial, timeout, runner, [Path(b) for b in binaries], Path(apk) if apk else None,
                       backend) if device == "adb" else None
        doc = bench(arts, plan=plan, threads=threads, warmup=warmup, runs=runs, psnr=not no_psnr,
                    progress=not no_progress)
    except AdbError as exc:
        fail(str(exc), exc.code)
    click.echo(table(doc))
    for out, write in ((json_out, lambda p: write_json(doc, p)), (csv_out, lambda p: write_csv(doc["results"], p)),
                       (plot_out, lambda p: write_plot(doc, p))):
        if out:
            try:
                write(Path(out))
            except OSError as exc:
                fail(f"{out}: cannot write ({exc.strerror or exc})")
    if any(r["status"] == "failed" for r in doc["results"]):
        sys.exit(1)


@main.command("search")
@click.option("--scale", type=click.Choice(["2", "4"]), required=True, help="The subnet's scale (PixelShuffle stages).")
@click.option("--latency-ms", type=click.FloatRange(min=0, min_open=True), required=True,
              help="Latency budget for one input of --input-size on --runtime/--device.")
@click.option("--runtime", type=click.Choice(["tflite", "executorch", "onnx"]), default="tflite", show_default=True)
@click.option("--device", type=click.Choice(["host", "adb"]), default="host", show_default=True,
              help="Where latency is measured: this machine, or an Android device (needs --binary).")
@click.option("--serial", default=None, help="adb device serial (default: $ANDROID_SERIAL, else the only device).")
@click.option("--adb", "adb_path", default=None, help="adb executable (default: $ADB, else adb on PATH).")
@click.option("--binary", "binaries", multiple=True, type=click.Path(dir_okay=False),
              help="adb: TFLite benchmark_model or ExecuTorch executor_runner for the phone.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--input-size", default="256x256", show_default=True, help="LR input size the budget is for.")
@click.option("--supernet", default="ofa-sr", show_default=True,
              help="The shipped supernet, or a `train --model ofa-sr` run folder / checkpoint, or a supernet pair's "
                   "(`train --model rescale-ofa`): its upscaler is cut, its downscaler kept, the result is a pair.")
@click.option("--data", multiple=True, help="Training folders of a trained supernet (default: from its run config).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Where latency tables and subnet scores are cached (default: $MOBILE_SR_CACHE or ~/.cache/mobile-sr).")
@click.option("-o", "--out", type=click.Path(), default=None,
              help="Output folder (default: searched/ofa_x<scale>_<budget>ms_<runtime>).")
@click.option("--no-progress", is_flag=True)
def search_cmd(scale: str, latency_ms: float, runtime: str, device: str, serial: str | None, adb_path: str | None,
               binaries: tuple[str, ...], threads: int, input_size: str, supernet: str, data: tuple[str, ...],
               seed: int, cache_dir: str | None, out: str | None, no_progress: bool) -> None:
    """Cut the most accurate subnet that fits a latency budget out of the OFA supernet (or a supernet pair's)."""
    import math

    from .bench.adb import AdbError
    from .bench.artifact import BenchError, parse_size
    from .bench.run import connect
    from .models import ModelError
    from .search.evolution import BudgetError
    from .search.run import SearchError, search

    if not math.isfinite(latency_ms):  # FloatRange lets nan and inf through
        fail(f"--latency-ms {latency_ms}: the budget must be a finite number of milliseconds > 0")
    if device == "host" and (serial or binaries):
        fail("--serial and --binary apply to --device adb only")
    if device == "adb" and not binaries:
        fail("--device adb measures layers with the phone's benchmark binary: pass --binary PATH")
    if device == "adb" and runtime == "onnx":
        fail("--device adb runs tflite or executorch, not onnx")
    try:
        size = parse_size(input_size)
    except BenchError as exc:
        fail(str(exc))
    out = out or f"searched/ofa_x{scale}_{latency_ms:g}ms_{runtime}"
    try:
        plan = connect(adb_path, None if device == "host" else serial, 600.0, "binary", [Path(b) for b in binaries],
                       None, "xnnpack") if device == "adb" else None
        rep = search(supernet_spec=supernet, scale=int(scale), budget_ms=latency_ms, runtime=runtime, plan=plan,
                     threads=threads, size=size, out=Path(out), seed=seed, data=list(data) or None,
                     cache_dir=Path(cache_dir) if cache_dir else None, progress=not no_progress,
                     log=lambda m: click.echo(m, err=True))
    except (SearchError, BudgetError, ModelError, FileNotFoundError) as exc:
        fail(str(exc))
    except AdbError as exc:
        fail(str(exc), exc.code)
    chk, pred = rep["latency_model_check"], rep["predictor"]
    click.echo(f"latency model: Spearman {chk['spearman']:.3f}, mean error {chk['mean_abs_error_ms']:.2f} ms "
               f"({100 * chk['mean_rel_error']:.1f}%) on {chk['n']} whole subnets")
    click.echo(f"accuracy predictor: {pred['mae_db']:.3f} dB mean error on {pred['test']} held-out subnets "
               f"(trained on {pred['train']})")
    p, m = rep["predicted"], rep["measured"]
    pair = rep["model"] == "pair"
    sub = rep["config"]["upscaler"]["config"] if pair else rep["config"]
    click.echo(f"{'pair upscaler' if pair else 'subnet'} x{scale}: depth {rep['arch']['depth']}, kernels "
               f"{sub['kernels']}, hidden {sub['hidden']}")
    click.echo(f"  latency  predicted {p['latency_ms']:.2f} ms, measured {m['latency_ms']:.2f} ms "
               f"(budget {latency_ms:g} ms, {runtime}, {size[0]}x{size[1]}, {threads} thread(s))")
    held = f", measured {m['heldout_psnr']:.2f} dB" if m["heldout_psnr"] is not None else ""
    lr_fidelity = f" (its LR {m['set5_lr_psnr']:.2f} dB from the MATLAB LR)" if pair else ""
    click.echo(f"  held-out PSNR predicted {p['heldout_psnr']:.2f} dB{held}; Set5 {m['set5_psnr']:.2f} dB{lr_fidelity}")
    click.echo(f"-> {out}/model.safetensors (+ model.json, search.json)")


@main.command("export")
@click.option("--target", "targets", multiple=True, required=True, metavar="FORMAT",
              help="tflite, executorch, coreml, onnx, or all (repeatable or comma-separated).")
@click.option("--int8", is_flag=True, help="int8 weights and activations, calibrated on real images.")
@click.option("--fp16", is_flag=True, help="fp16 weights (Core ML exports fp16 anyway).")
@click.option("--int8-io", is_flag=True, help="int8 with int8 input and output tensors too (TFLite; implies --int8).")
@click.option("--model", "model_spec", default=DEFAULT_MODEL, show_default=True,
              help="Built-in model name, run folder or checkpoint (.pt/.safetensors).")
@click.option("--scale", type=click.IntRange(min=1), default=None,
              help="Default: the checkpoint's scale, or 2 for a built-in name.")
@click.option("--input-size", default=None,
              help="Fixed input HxW: phones run SR on fixed tiles (XNNPACK/QNN need static shapes).  "
                   "[default: 256x256; --part downscaler: 256*scale square, its HR input]")
@click.option("--part", type=click.Choice(["upscaler", "downscaler"]), default="upscaler", show_default=True,
              help="What to export: the phone's upscaler, or a pair's downscaler (for servers, or phones uploading).")
@click.option("--calib", "calib_dir", type=click.Path(), default=None,
              help="Folder of calibration images for --int8 (default: the crops shipped in the package).")
@click.option("-o", "--out", "out_dir", default="exports", show_default=True, type=click.Path(file_okay=False))
@click.option("--no-verify", is_flag=True, help="Do not run the artifacts in their runtimes.")
@click.option("--verbose", is_flag=True, help="Also show what the converters and runtimes print.")
def export_cmd(targets: tuple[str, ...], int8: bool, fp16: bool, int8_io: bool, model_spec: str, scale: int | None,
               input_size: str | None, part: str, calib_dir: str | None, out_dir: str, no_verify: bool,
               verbose: bool) -> None:
    """Export a model for phones (TFLite, ExecuTorch, Core ML, ONNX), each checked in its real runtime."""
    from .core.quiet import native_quiet, set_verbose
    from .export import ExportError, export, parse_size, parse_targets
    from .export.report import table

    model = _load(model_spec, scale)
    if input_size is None:
        side = 256 * int(model.scale) if part == "downscaler" else 256
        input_size = f"{side}x{side}"
    try:
        names, size = parse_targets(targets), parse_size(input_size)
    except ExportError as exc:
        fail(str(exc))
    try:
        set_verbose(verbose)
        with native_quiet():  # converters' and runtimes' own notices: shown only with --verbose
            results = export(model, names, int8=int8 or int8_io, fp16=fp16, int8_io=int8_io,
                             size=size, calib_dir=calib_dir, out_dir=out_dir, check=not no_verify, part=part)
    except ExportError as exc:
        fail(str(exc))
    except OSError as exc:  # a full disk mid-export: what was placed is whole, the rest was never renamed in
        fail(f"cannot write into {out_dir} ({exc.strerror or exc}); nothing half-written is left there", code=1)
    click.echo(table(results))
    click.echo(f"next: mobile-sr bench {' '.join(str(r.path) for r in results)}")
    failed = [r.path.name for r in results if r.verification.status == "failed"]
    if failed:
        fail(f"verification failed for {', '.join(failed)} (kept, marked unverified in the sidecar)", code=1)


@main.command("bundle")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--app", type=click.Choice(["android", "ios"]), required=True, help="Which demo app to put them into.")
@click.option("--app-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The app's folder (default: android_demo/ or ios_demo/ of this repository).")
@click.option("--default", "default", default=None, metavar="NAME", help="Model the app selects at start.")
@click.option("--force", is_flag=True, help="Bundle artifacts whose verification failed or was skipped (--no-verify).")
def bundle_cmd(artifacts: tuple[Path, ...], app: str, app_dir: Path | None, default: str | None, force: bool) -> None:
    """Copy exported models and their sidecars into a demo app and update its models.json."""
    from .bundle import BundleError, bundle

    try:
        folder, index = bundle(list(artifacts), app, app_dir=app_dir, default=default, force=force)
    except BundleError as exc:
        fail(str(exc))
    except OSError as exc:  # a full disk or a read-only app folder while copying: the app keeps its old state
        fail(f"cannot write into the {app} app: {exc}", 1)
    for entry in index["models"]:
        mark = "*" if entry["name"] == index["default"] else " "
        click.echo(f"{mark} {entry['name']}  ({entry['backend']}, {entry['precision']}, x{entry['scale']})")
    click.echo(f"{len(artifacts)} bundled into {folder} (* = default)")


if __name__ == "__main__":
    main()
