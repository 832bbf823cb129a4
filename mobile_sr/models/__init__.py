"""Model zoo: one table of built-in models, ``create_model(name, scale)``, and loading of our checkpoints.

A built-in model is a name, a constructor and the scales it has shipped weights for. Weights live
next to the code in ``weights/<name>_x<scale>.safetensors`` with a ``.json`` manifest that records
how they were trained and what they score (see the README's model table).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from .elsr import ELSR
from .fsrcnn import FSRCNN
from .ofa import OFASR, SCALES, WIDTH, OFASubnet, largest

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]  # build(scale=..., **config)
    description: str
    default_config: dict


MODELS: dict[str, ModelSpec] = {
    "fsrcnn": ModelSpec("fsrcnn", FSRCNN, "FSRCNN (Dong et al. 2016), d=56 s=12 m=4", {"d": 56, "s": 12, "m": 4}),
    "fsrcnn-s": ModelSpec("fsrcnn-s", FSRCNN, "FSRCNN-s, the small setting d=32 s=5 m=1", {"d": 32, "s": 5, "m": 1}),
    # Width 16, not the paper's 6: at width 6 ELSR stays ~1.6 dB over bicubic at x2 (see README).
    "elsr": ModelSpec("elsr", ELSR, "ELSR layout (Xu et al. 2022) at width 16, PixelShuffle tail", {"width": 16}),
    # One weights file serves both scales (weights/ofa-sr.safetensors); eval/export use its largest subnet.
    "ofa-sr": ModelSpec("ofa-sr", OFASR, "Once-for-All SR supernet (x2+x4); eval/export: largest subnet",
                        {"width": WIDTH}),
    "ofa-subnet": ModelSpec("ofa-subnet", OFASubnet, "a static subnet cut from ofa-sr (mobile-sr search)", {}),
    # Cut from the shipped supernet by `mobile-sr search` for host TFLite budgets (command in each manifest).
    "ofa-s": ModelSpec("ofa-s", OFASubnet, "ofa-sr subnet, small budget (searched, host TFLite)", {}),
    "ofa-m": ModelSpec("ofa-m", OFASubnet, "ofa-sr subnet, medium budget (searched, host TFLite)", {}),
    "ofa-l": ModelSpec("ofa-l", OFASubnet, "ofa-sr subnet, large budget (searched, host TFLite)", {}),
}
SUPERNET = "ofa-sr"

# The default of upscale/eval/export: the large searched subnet beats FSRCNN's Set5/Set14 PSNR at x2 and x4
# at a third (x2) to a half (x4) of its host LiteRT latency, and its int8 export loses < 0.15 dB where FSRCNN's loses ~1.2 dB
# (README, "Once-for-All SR"). ELSR is the pick for the tightest budgets.
DEFAULT_MODEL = "ofa-l"


class ModelError(ValueError):
    """Unknown model, missing weights or an unreadable checkpoint; the message says what to do."""


def weights_path(name: str, scale: int) -> Path:
    if name == SUPERNET:
        return WEIGHTS_DIR / f"{name}.safetensors"
    return WEIGHTS_DIR / f"{name}_x{scale}.safetensors"


def manifest(name: str, scale: int) -> dict | None:
    """The training manifest of a shipped model (command, steps, figures), or None."""
    p = weights_path(name, scale).with_suffix(".json")
    return json.loads(p.read_text()) if p.exists() else None


def shipped_scales(name: str) -> list[int]:
    if name == SUPERNET:
        return list(SCALES) if weights_path(name, 2).exists() else []
    return sorted(int(p.stem.rsplit("_x", 1)[1]) for p in WEIGHTS_DIR.glob(f"{name}_x*.safetensors"))


def create_model(name: str, scale: int = 2, pretrained: bool = True, **config) -> nn.Module:
    """Build a built-in model; with ``pretrained`` load its shipped weights (error if there are none)."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    spec = MODELS[name]
    path = weights_path(name, scale)
    if pretrained and not path.exists():
        have = ", ".join(f"x{s}" for s in shipped_scales(name)) or "none"
        raise ModelError(
            f"no shipped weights for {name} x{scale} (shipped: {have}); train it with "
            f"`mobile-sr train --model {name} --scale {scale}` and pass the checkpoint"
        )
    # Shipped weights carry the config they were trained with (their manifest), like timm's pretrained cfg.
    shipped_config = (manifest(name, scale) or {}).get("config", {}) if pretrained else {}
    model = spec.build(scale=scale, **{**spec.default_config, **shipped_config, **config})
    if pretrained:
        model.load_state_dict(load_file(path))
    model.model_name = name  # type: ignore[attr-defined]
    return model.eval()


def load_model(spec: str | Path, scale: int | None = None) -> nn.Module:
    """A model from a built-in name, a training run folder, a ``.pt`` checkpoint or a ``.safetensors`` file.

    Checkpoints are read with ``weights_only=True``: a checkpoint is data, never code to unpickle.
    ``scale`` must match what a checkpoint was trained for; for a built-in name it picks the weights.
    """
    spec_str = str(spec)
    if spec_str == SUPERNET:
        return _largest_subnet(create_model(spec_str), scale or 2)
    if spec_str in MODELS:
        return create_model(spec_str, scale or 2)
    path = Path(spec_str)
    if not path.exists():
        raise ModelError(f"{spec_str!r} is neither a built-in model ({', '.join(MODELS)}) nor an existing path")
    if path.is_dir():
        for cand in ("model.safetensors", "last.pt"):
            if (path / cand).exists():
                path = path / cand
                break
        else:
            raise ModelError(f"{spec_str}: folder holds no model.safetensors or last.pt")
    try:
        if path.suffix == ".safetensors":
            meta_path = path.with_suffix(".json")
            if not meta_path.exists():
                raise ModelError(f"{path}: needs its {meta_path.name} (model name, scale, config) beside it")
            meta = json.loads(meta_path.read_text())
            state = load_file(path)
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
                raise ModelError(f"{path}: not a mobile-sr checkpoint (no 'model'/'meta' entries)")
            meta, state = ckpt["meta"], ckpt["model"]
    except ModelError:
        raise
    except Exception as exc:  # corrupt zip, pickle that weights_only refuses, bad JSON, ...
        raise ModelError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    name, ckpt_scale = meta.get("model"), int(meta.get("scale", 0))
    if name not in MODELS:
        raise ModelError(f"{path}: unknown model {name!r} in checkpoint metadata")
    if name == SUPERNET:  # a supernet serves every scale: use its largest subnet at the one asked for
        net = OFASR(**meta.get("config", {}))
        _load_state(net, state, path, name)
        return _largest_subnet(net, scale or 2)
    if scale is not None and scale != ckpt_scale:
        raise ModelError(f"{path} is a x{ckpt_scale} model, but --scale {scale} was asked for")
    model = create_model(name, ckpt_scale, pretrained=False, **meta.get("config", {}))
    _load_state(model, state, path, name)
    return model.eval()


def _load_state(model: nn.Module, state: dict, path: Path, name: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit {name} ({str(exc).splitlines()[0]})") from None


def _largest_subnet(supernet: OFASR, scale: int) -> nn.Module:
    if scale not in SCALES:
        raise ModelError(f"the ofa-sr supernet serves x{' and x'.join(map(str, SCALES))}, not x{scale}")
    net = supernet.get_subnet(largest(scale))
    net.model_name = SUPERNET  # type: ignore[attr-defined]
    return net


def load_supernet(spec: str | Path = SUPERNET) -> OFASR:
    """The OFA supernet itself (for search): the shipped one, a run folder, ``last.pt`` or ``.safetensors``."""
    spec_str = str(spec)
    if spec_str == SUPERNET:
        return create_model(SUPERNET)  # type: ignore[return-value]
    path = Path(spec_str)
    if path.is_dir():
        path = next((path / c for c in ("model.safetensors", "last.pt") if (path / c).exists()), path / "last.pt")
    if not path.exists():
        raise ModelError(f"{spec_str}: no supernet checkpoint there (train one with `mobile-sr train --model ofa-sr`)")
    try:
        if path.suffix == ".safetensors":
            meta, state = json.loads(path.with_suffix(".json").read_text()), load_file(path)
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            meta, state = ckpt["meta"], ckpt["model"]
    except Exception as exc:
        raise ModelError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if meta.get("model") != SUPERNET:
        raise ModelError(f"{path}: a {meta.get('model')!r} checkpoint, not an ofa-sr supernet")
    net = OFASR(**meta.get("config", {}))
    _load_state(net, state, path, SUPERNET)
    net.model_name = SUPERNET  # type: ignore[attr-defined]
    return net.eval()


@dataclass
class Profile:
    params: int
    macs_per_output_pixel: float


def profile(model: nn.Module, scale: int, size: int = 32) -> Profile:
    """Parameter count and multiply-accumulates per output pixel, counted from the real layers."""
    if isinstance(model, OFASR):  # the supernet's figures are those of its largest subnet
        model = model.get_subnet(largest(scale))
    macs = 0

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, nn.ConvTranspose2d):  # every input pixel scatters a k x k x Cout patch
            macs += inp[0].shape[-2] * inp[0].shape[-1] * mod.in_channels * mod.out_channels // mod.groups * k
        else:
            macs += out.shape[-2] * out.shape[-1] * out.shape[1] * mod.in_channels // mod.groups * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    return Profile(params, macs / (size * scale) ** 2)
