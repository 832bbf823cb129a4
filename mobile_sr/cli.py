"""The ``mobile-sr`` command line. It only parses, calls the package and prints.

Every expected failure (bad input, missing extra, unknown model) is one line on stderr and exit
code 2; a traceback means a bug.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

EXIT_USAGE = 2


def fail(msg: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mobile-sr")
def main() -> None:
    """Train, evaluate and run small super-resolution models for phones."""


@main.command()
@click.option("--model", "model_name", default="fsrcnn", show_default=True, help="Built-in architecture to train.")
@click.option("--scale", type=int, default=2, show_default=True)
@click.option("--data", multiple=True, required=True, help="Folder of HR training images (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (checkpoints, weights, logs).")
@click.option("--steps", type=int, default=100_000, show_default=True)
@click.option("--batch", type=int, default=32, show_default=True, help="Global batch (split across torchrun ranks).")
@click.option("--patch", type=int, default=64, show_default=True, help="HR patch side in pixels.")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--tail-lr-scale", type=float, default=0.1, show_default=True, help="LR multiplier of the upsampling layer.")
@click.option("--warmup", type=int, default=500, show_default=True)
@click.option("--loss", type=click.Choice(["l1", "charbonnier"]), default="l1", show_default=True)
@click.option("--init", "init", type=click.Choice(["paper", "bicubic"]), default="paper", show_default=True,
              help="bicubic: start FSRCNN as bicubic upscaling (converges much faster).")
@click.option("--init-from", default=None, help="Model name or checkpoint to fine-tune from (weights that fit).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-every", type=int, default=1000, show_default=True, help="Steps between Set5 validations (0: never).")
@click.option("--ckpt-every", type=int, default=500, show_default=True)
@click.option("--threads", type=int, default=None, help="torch intra-op threads per process.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last checkpoint left off.")
@click.option("--no-progress", is_flag=True)
def train(model_name: str, scale: int, data: tuple[str, ...], out: str, steps: int, batch: int, patch: int,
          lr: float, tail_lr_scale: float, warmup: int, loss: str, init: str, init_from: str | None, seed: int,
          val_every: int, ckpt_every: int, threads: int | None, resume: bool, no_progress: bool) -> None:
    """Train a model on folders of HR images (runs under torchrun for DDP)."""
    import torch

    from .models import ModelError
    from .train.trainer import TrainConfig
    from .train.trainer import train as run_train

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(model=model_name, scale=scale, data=list(data), out=out, steps=steps, batch=batch, patch=patch,
                      lr=lr, tail_lr_scale=tail_lr_scale, warmup=warmup, loss=loss, seed=seed, init=init,
                      init_from=init_from, val_every=val_every, ckpt_every=ckpt_every)
    try:
        summary = run_train(cfg, resume=resume, progress=not no_progress)
    except (ModelError, ValueError, FileNotFoundError, FileExistsError) as exc:
        fail(str(exc))
    click.echo(f"done: step {summary['step']}, best Set5 x{scale} PSNR {summary['best_val_psnr']:.2f} dB, "
               f"{summary['train_seconds'] / 60:.1f} min -> {Path(out) / 'model.safetensors'}")


if __name__ == "__main__":
    main()
