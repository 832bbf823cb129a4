"""Model zoo: what every built-in declares (:class:`ModelInfo`), ``create_model(name, scale)``, and loading
(:func:`load_model`) of built-ins, run folders and checkpoints into a declared :class:`Model`.

A built-in is a name, a role (``upscaler``, ``downscaler`` or ``pair``), a constructor with its default
config, and the scales it has shipped weights for. Weights live next to the code in
``weights/<name>_x<scale>.safetensors`` with a ``.json`` manifest that records how they were trained and
what they score (see the README's model table). Between a loaded model and anything that runs it stands
one step, :func:`.deploy.deploy`, which hands back the plain static module that is exported and measured.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file
from torch import nn

from ..core.text import first_line
from ..data.imresize import cells
from .aidn import SCALE_RANGE, AIDNDown, AIDNUp
from .bicubic import BicubicDown
from .car import CAR
from .elsr import ELSR
from .fsrcnn import FSRCNN
from .ofa import OFASR, SCALES, WIDTH, OFASubnet, largest
from .pair import SRPair
from .tad import TAD

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

Role = Literal["upscaler", "downscaler", "pair"]
ROLES: tuple[Role, ...] = ("upscaler", "downscaler", "pair")
Scale = int | float  # integer SR today; a downscaler may take any factor >= 1


@dataclass(frozen=True)
class ModelInfo:
    """What a built-in declares. ``weights``: ``"per-scale"`` (one file per shipped scale), ``"shared"``
    (one file serves every scale: the OFA supernet) or ``"none"`` (nothing to learn: bicubic)."""

    name: str
    role: Role
    build: Callable[..., nn.Module]  # build(scale=..., **config)
    description: str
    default_config: dict = field(default_factory=dict)
    weights: Literal["per-scale", "shared", "none"] = "per-scale"
    scales: tuple[Scale, ...] = SCALES  # shared weights: the scales they are reported at
    scale_range: tuple[float, float] | None = None  # a scale-arbitrary model: every factor in this range

    def weights_path(self, scale: Scale) -> Path:
        return WEIGHTS_DIR / (f"{self.name}.safetensors" if self.weights == "shared" else
                              f"{self.name}_x{scale:g}.safetensors")

    def manifest(self, scale: Scale) -> dict | None:
        """The training manifest of the shipped weights (command, steps, figures), or None."""
        p = self.weights_path(scale).with_suffix(".json")
        return json.loads(p.read_text()) if self.weights != "none" and p.exists() else None

    def shipped_scales(self) -> list[Scale]:
        """The scales whose weights ship in the package (none for a model without weights)."""
        if self.weights == "shared":
            return list(self.scales) if self.weights_path(self.scales[0]).exists() else []
        if self.weights == "none":
            return []
        return sorted(_number(p.stem.rsplit("_x", 1)[1]) for p in WEIGHTS_DIR.glob(f"{self.name}_x*.safetensors"))


def _number(text: str) -> Scale:
    value = float(text)
    return int(value) if value.is_integer() else value


def _pair(**kwargs) -> SRPair:
    return SRPair(build=create_model, **kwargs)


MODELS: dict[str, ModelInfo] = {
    "fsrcnn": ModelInfo("fsrcnn", "upscaler", FSRCNN, "FSRCNN (Dong et al. 2016), d=56 s=12 m=4",
                        {"d": 56, "s": 12, "m": 4}),
    "fsrcnn-s": ModelInfo("fsrcnn-s", "upscaler", FSRCNN, "FSRCNN-s, the small setting d=32 s=5 m=1",
                          {"d": 32, "s": 5, "m": 1}),
    # Width 16, not the paper's 6: at width 6 ELSR stays ~1.6 dB over bicubic at x2 (see README).
    "elsr": ModelInfo("elsr", "upscaler", ELSR, "ELSR layout (Xu et al. 2022) at width 16, PixelShuffle tail",
                      {"width": 16}),
    # The same network trained on x264-decoded LR (`train --lr-codec h264:18-36@0.9`, one-frame CRFs, about clip
    # CRF 21-40; see data/codec_lr.py): for decoded video frames.
    "elsr-h264": ModelInfo("elsr-h264", "upscaler", ELSR,
                           "ELSR-16 trained on x264-decoded LR (clip CRF ~21-40): compression-aware, for video",
                           {"width": 16}),
    # One weights file serves both scales (weights/ofa-sr.safetensors); deploy cuts its largest subnet.
    "ofa-sr": ModelInfo("ofa-sr", "upscaler", OFASR, "Once-for-All SR supernet (x2+x4); eval/export: largest subnet",
                        {"width": WIDTH}, weights="shared"),
    "ofa-subnet": ModelInfo("ofa-subnet", "upscaler", OFASubnet, "a static subnet cut from ofa-sr (mobile-sr search)"),
    # Cut from the shipped supernet by `mobile-sr search` for host TFLite budgets (command in each manifest).
    "ofa-s": ModelInfo("ofa-s", "upscaler", OFASubnet, "ofa-sr subnet, small budget (searched, host TFLite)"),
    "ofa-m": ModelInfo("ofa-m", "upscaler", OFASubnet, "ofa-sr subnet, medium budget (searched, host TFLite)"),
    "ofa-l": ModelInfo("ofa-l", "upscaler", OFASubnet, "ofa-sr subnet, large budget (searched, host TFLite)"),
    # ofa-m's graph trained on x264-decoded LR like elsr-h264 (train --model ofa-m-h264 --init-from ofa-m: a variant
    # with no settings of its own takes its source's, see train.trainer.build_model): for video, where it is not
    # real-time on a phone CPU.
    "ofa-m-h264": ModelInfo("ofa-m-h264", "upscaler", OFASubnet,
                            "ofa-m trained on x264-decoded LR (clip CRF ~21-40): compression-aware, for video"),
    "bicubic": ModelInfo("bicubic", "downscaler", BicubicDown, "MATLAB-bicubic downscaling (any factor >= 1)",
                         weights="none"),
    # Learned downscalers ship only inside the pair they were trained with (their weights are the pair's).
    "tad": ModelInfo("tad", "downscaler", TAD, "task-aware downscaler: bicubic + a learned residual (Kim et al. 2018)",
                     {"width": 32, "blocks": 2}),
    # Scale-arbitrary parts (any factor in [1.5, 4], models/aidn.py); they ship inside rescale-aidn.
    "aidn": ModelInfo("aidn", "downscaler", AIDNDown, "scale-arbitrary downscaler, factor-conditioned (AIDN's spirit)",
                      {"width": 32, "blocks": 3, "hr_width": 16}, scale_range=SCALE_RANGE),
    "aidn-up": ModelInfo("aidn-up", "upscaler", AIDNUp, "scale-arbitrary restoration, factor-conditioned (AIDN's "
                         "spirit)", {"width": 24, "blocks": 3}, scale_range=SCALE_RANGE),
    "car": ModelInfo("car", "downscaler", CAR, "content-adaptive resampler: per-pixel kernels (CAR, Sun & Chen 2020)",
                     {"width": 32, "depth": 4}),
    # A downscaler + an upscaler in one module and one manifest; `config` names both parts.
    "pair": ModelInfo("pair", "pair", _pair, "a downscaler and an upscaler trained and shipped together",
                      weights="none"),
    # The shipped pairs: the server runs the downscaler, the phone the upscaler (`mobile-sr downscale/upscale`).
    "rescale": ModelInfo("rescale", "pair", _pair, "TAD downscaler + ELSR-16 upscaler, trained jointly (8-bit LR)",
                         {"downscaler": {"model": "tad", "config": {"width": 32, "blocks": 2}},
                          "upscaler": {"model": "elsr", "config": {"width": 16}}}),
    "rescale-car": ModelInfo("rescale-car", "pair", _pair, "CAR resampler + ELSR-16 upscaler, trained jointly (8-bit LR)",
                             {"downscaler": {"model": "car", "config": {"width": 32, "depth": 4}},
                              "upscaler": {"model": "elsr", "config": {"width": 16}}}),
    "rescale-fsrcnn": ModelInfo("rescale-fsrcnn", "pair", _pair,
                                "TAD downscaler + FSRCNN (56-12-4) upscaler, trained jointly (8-bit LR)",
                                {"downscaler": {"model": "tad", "config": {"width": 32, "blocks": 2}},
                                 "upscaler": {"model": "fsrcnn", "config": {}}}),
    # The OFA seed's setting: one downscaler trained with the whole supernet (train/ofa.py), so that
    # `mobile-sr search` cuts the pair's upscaler for a latency budget; eval/export run its largest subnet.
    "rescale-ofa": ModelInfo("rescale-ofa", "pair", _pair,
                             "TAD downscaler + the ofa-sr supernet, trained jointly (8-bit LR); search cuts subnets",
                             {"downscaler": {"model": "tad", "config": {"width": 32, "blocks": 2}},
                              "upscaler": {"model": "ofa-sr", "config": {"width": WIDTH}}}),
    # One pair for every factor in [1.5, 4] (AIDN's setting): one weights file, reported at these factors.
    "rescale-aidn": ModelInfo("rescale-aidn", "pair", _pair,
                              "scale-arbitrary pair (any factor in [1.5, 4]): factor-conditioned downscaler + "
                              "restoration, trained jointly (8-bit LR)",
                              {"downscaler": {"model": "aidn", "config": {"width": 32, "blocks": 3, "hr_width": 16}},
                               "upscaler": {"model": "aidn-up", "config": {"width": 24, "blocks": 3}}},
                              weights="shared", scales=(1.5, 2, 2.5, 3, 3.5, 4), scale_range=SCALE_RANGE),
}
SUPERNET = "ofa-sr"

# The default of upscale/eval/export: the medium searched subnet, fine-tuned after its cut, is above published
# FSRCNN's Set5/Set14 PSNR at x2 and x4, and at x2 it runs in 0.71x FSRCNN's host latency, each in its fastest
# runtime (README, "Fair comparison"). ofa-l is 0.03 dB better at x2 for 1.8x ofa-m's latency; ELSR is the pick
# for the tightest budgets.
DEFAULT_MODEL = "ofa-m"


class ModelError(ValueError):
    """Unknown model, missing weights or an unreadable checkpoint; the message says what to do."""


@dataclass
class Model:
    """A loaded model and what it declares: the one object every stage after ``models`` passes around.

    ``module`` is the trained module (an OFA supernet, a pair, a network); :func:`.deploy.deploy` turns it
    into the static module that is run, exported and measured. ``source`` is what the user named. ``qat``: its
    weights were trained quantization-aware (``train --qat``, ``models/quant.py``), so int8 exports convert them as
    they are, without the range equalization and bias correction that prepare other models (``export/dfq.py``).
    """

    name: str
    role: Role
    scale: Scale
    module: nn.Module
    source: str
    deployed: bool = False
    qat: bool = False

    @classmethod
    def of(cls, name: str, module: nn.Module, source: str = "") -> Model:
        """Declare a module built in code (a test, a benchmark) as the built-in ``name`` at its own scale."""
        return cls(name, info(name).role, module.scale, module.eval(), source or name)

    @property
    def config(self) -> dict:
        return self.module.config()

    @property
    def upscaler(self) -> nn.Module:
        """What the phone runs: the module itself, or a pair's upscaler."""
        if self.role == "downscaler":
            raise ModelError(f"{self.name} is a downscaler; it cannot upscale")
        return self.module.upscaler if isinstance(self.module, SRPair) else self.module

    @property
    def downscaler(self) -> nn.Module | None:
        """What the server runs before sending the LR image: a pair's downscaler, else None."""
        if isinstance(self.module, SRPair):
            return self.module.downscaler
        return self.module if self.role == "downscaler" else None


def info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def weights_path(name: str, scale: Scale) -> Path:
    return info(name).weights_path(scale)


def manifest(name: str, scale: Scale) -> dict | None:
    return info(name).manifest(scale)


def shipped_scales(name: str) -> list[Scale]:
    return info(name).shipped_scales()


def scale_arbitrary(name: str) -> bool:
    """A built-in (or a checkpoint of one) that takes any factor of a range (rescale-aidn), not only its own."""
    return name in MODELS and MODELS[name].scale_range is not None


def check_scale(name: str, scale: Scale) -> None:
    """A scale-arbitrary model takes any factor of its range that is a fraction p/q (q <= 16); ModelError otherwise.
    Other models are checked where their weights are looked up."""
    rng = info(name).scale_range
    if rng is None:
        return
    if not rng[0] <= scale <= rng[1]:
        raise ModelError(f"{name} serves any factor in [{rng[0]:g}, {rng[1]:g}], not x{scale:g}")
    try:
        cells(scale)
    except ValueError as exc:
        raise ModelError(f"{name}: {exc}") from None


def create_model(name: str, scale: Scale = 2, pretrained: bool = True, **config) -> nn.Module:
    """Build a built-in module; with ``pretrained`` load its shipped weights (error if there are none)."""
    spec = info(name)
    check_scale(name, scale)
    pretrained = pretrained and spec.weights != "none"
    path = spec.weights_path(scale)
    if pretrained and not path.exists():
        have = ", ".join(f"x{s:g}" for s in spec.shipped_scales()) or "none"
        # The default model (ofa-m) serves x2 and x4 only: point a user asking for x3 at what does ship x3.
        others = [n for n, o in MODELS.items() if n != name and o.role == spec.role and scale in o.shipped_scales()]
        instead = f"; x{scale:g} ships for: {', '.join(others)} (--model {others[0]})" if others else ""
        raise ModelError(
            f"no shipped weights for {name} x{scale:g} (shipped: {have}){instead}; {'or ' if others else ''}train it with "
            f"`mobile-sr train --model {name} --scale {scale:g}` and pass the checkpoint"
        )
    # Shipped weights carry the config they were trained with (their manifest), like timm's pretrained cfg. A model
    # with no default config of its own (the searched cuts ofa-s/m/l) is its manifest's architecture, trained or not.
    shipped_config = (spec.manifest(scale) or {}).get("config", {}) if pretrained or not spec.default_config else {}
    model = spec.build(scale=scale, **{**spec.default_config, **shipped_config, **config})
    if pretrained:
        model.load_state_dict(load_file(path))
    return model.eval()


def _check_supernet_scale(scale: Scale) -> None:
    if scale not in SCALES:
        raise ModelError(f"the ofa-sr supernet serves x{' and x'.join(map(str, SCALES))}, not x{scale:g}")


def _declared(name: str, module: nn.Module, scale: Scale, source: str, meta: dict | None = None) -> Model:
    supernet = module.upscaler if isinstance(module, SRPair) else module
    if isinstance(supernet, OFASR):  # a supernet serves every scale: its largest subnet at the one asked for
        _check_supernet_scale(scale)
        supernet.set_active(largest(int(scale)))
    qat = bool((meta or {}).get("qat"))
    return Model(name, info(name).role, scale, module.eval(), source, qat=qat)


def load_model(spec: str | Path, scale: Scale | None = None) -> Model:
    """A model from a built-in name, a training run folder, a ``.pt`` checkpoint or a ``.safetensors`` file.

    Checkpoints are read with ``weights_only=True``: a checkpoint is data, never code to unpickle.
    ``scale`` must match what a checkpoint was trained for; for a built-in name it picks the weights.
    """
    spec_str = str(spec)
    if spec_str in MODELS:
        scale = scale or 2
        if spec_str == SUPERNET:
            _check_supernet_scale(scale)
        return _declared(spec_str, create_model(spec_str, scale), scale, spec_str, manifest(spec_str, scale))
    path = Path(spec_str)
    if not path.exists():
        raise ModelError(f"{spec_str!r} is neither a built-in model ({', '.join(MODELS)}) nor an existing path")
    meta, state, path = read_checkpoint(path)
    name = meta.get("model")
    if not isinstance(name, str) or name not in MODELS:
        raise ModelError(f"{path}: unknown model {name!r} in checkpoint metadata")
    # One supernet serves every scale (the one asked for); anything else has the scale it was trained for.
    ckpt_scale = (scale or 2) if name == SUPERNET else _meta_scale(meta, path)
    if name == SUPERNET:
        _check_supernet_scale(ckpt_scale)
    elif scale is not None and scale_arbitrary(name):  # one file serves every factor of its range
        check_scale(name, scale)
        ckpt_scale = scale
    elif scale is not None and scale != ckpt_scale:
        raise ModelError(f"{path} is a x{ckpt_scale:g} model, but --scale {scale:g} was asked for")
    module = _build(name, ckpt_scale, meta.get("config", {}), path)
    _load_state(module, state, path, name)
    return _declared(name, module, ckpt_scale, spec_str, meta)


def _meta_scale(meta: dict, path: Path) -> Scale:
    """The scale a checkpoint declares: a finite number >= 1 (``"two"``, ``null``, ``true``, 0 are refused)."""
    raw = meta.get("scale")
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = _number(str(raw))
    except (ValueError, OverflowError):
        raise ModelError(f"{path}: scale {raw!r} in its metadata is not a number") from None
    if not math.isfinite(value) or value < 1:
        raise ModelError(f"{path}: scale {raw!r} in its metadata is not a scale (a number >= 1)")
    return value


def _build(name: str, scale: Scale, config: dict, path: Path) -> nn.Module:
    """The module a checkpoint's metadata describes; a config that does not build it is one ModelError.

    Any exception counts: the config is the file's, and constructors fail on bad values in their own ways
    (TypeError, ValueError, torch's RuntimeError for a negative width)."""
    try:
        return create_model(name, scale, pretrained=False, **config)
    except Exception as exc:
        raise ModelError(f"{path}: its config does not build {name} ({first_line(exc)})") from None


def load_torch_file(path: Path) -> object:
    """``torch.load`` of a checkpoint as data only (``weights_only=True``), every failure one ModelError line.

    A file that would need unpickling of code is refused as such; torch's own message suggests loading it with
    ``weights_only=False``, which runs whatever the file contains, so it is never passed on."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are not the user's business
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's text advises weights_only=False: never shown
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:
            raise ModelError(f"{path}: cannot read checkpoint: refused, it is a pickle that imports {found.group(1)}, "
                             "which could run code; mobile-sr loads checkpoints as data only (tensors, numbers, "
                             "text)") from None
        raise ModelError(f"{path}: cannot read checkpoint (corrupt, or not a PyTorch file)") from None
    except Exception as exc:  # corrupt zip, truncated file, not a torch file at all
        raise ModelError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {first_line(exc)})") from None


def read_checkpoint(path: Path) -> tuple[dict, dict, Path]:
    """(metadata, state dict, file) of a run folder, ``.pt`` checkpoint or ``.safetensors`` + ``.json``."""
    if path.is_dir():
        for cand in ("model.safetensors", "last.pt"):
            if (path / cand).exists():
                path = path / cand
                break
        else:
            raise ModelError(f"{path}: folder holds no model.safetensors or last.pt")
    try:
        if path.suffix == ".safetensors":
            meta_path = path.with_suffix(".json")
            if not meta_path.exists():
                raise ModelError(f"{path}: needs its {meta_path.name} (model name, scale, config) beside it")
            meta = json.loads(meta_path.read_text())
            state = load_file(path)
        else:
            ckpt = load_torch_file(path)
            if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
                raise ModelError(f"{path}: not a mobile-sr checkpoint (no 'model'/'meta' entries)")
            meta, state = ckpt["meta"], ckpt["model"]
    except ModelError:
        raise
    except Exception as exc:  # corrupt zip, pickle that weights_only refuses, bad JSON, ...
        raise ModelError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config", {}), dict):
        raise ModelError(f"{path}: its metadata is not a mobile-sr model description (an object with model, "
                         "scale and config)")
    return meta, state, path


def _load_state(model: nn.Module, state: dict, path: Path, name: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit {name} ({first_line(exc)})") from None


def is_supernet_pair(name: str) -> bool:
    """A built-in pair whose upscaler is the OFA supernet (``rescale-ofa``): trained and searched like ofa-sr."""
    spec = MODELS.get(name)
    return spec is not None and spec.role == "pair" and spec.default_config["upscaler"]["model"] == SUPERNET


def load_supernet(spec: str | Path = SUPERNET, *, pairs: bool = False, scale: Scale | None = None) -> OFASR | SRPair:
    """The OFA supernet itself (for search): the shipped one, a run folder, ``last.pt`` or ``.safetensors``.

    With ``pairs``, a supernet pair (``rescale-ofa`` at ``scale``, or a ``train --model rescale-ofa`` checkpoint)
    is accepted too and comes back whole: search cuts its upscaler and keeps its downscaler."""
    spec_str = str(spec)
    if spec_str == SUPERNET:
        return create_model(SUPERNET)  # type: ignore[return-value]
    if pairs and is_supernet_pair(spec_str):
        scale = scale or (shipped_scales(spec_str) or [2])[0]
        return _declared(spec_str, create_model(spec_str, scale), scale, spec_str).module  # type: ignore[return-value]
    path = Path(spec_str)
    if not path.exists() or (path.is_dir() and not any((path / c).exists() for c in ("model.safetensors", "last.pt"))):
        raise ModelError(f"{spec_str}: no supernet checkpoint there (train one with `mobile-sr train --model ofa-sr`"
                         + (", or a supernet pair with --model rescale-ofa)" if pairs else ")"))
    meta, state, path = read_checkpoint(path)
    name = meta.get("model")
    if pairs and isinstance(name, str) and is_supernet_pair(name):
        pair = _build(name, _meta_scale(meta, path), meta.get("config", {}), path)
        _load_state(pair, state, path, name)
        return _declared(name, pair, pair.scale, spec_str).module  # type: ignore[return-value]
    if name != SUPERNET:
        raise ModelError(f"{path}: a {name!r} checkpoint, not an ofa-sr supernet{' or a supernet pair' if pairs else ''}")
    net = _build(SUPERNET, SCALES[0], meta.get("config", {}), path)
    _load_state(net, state, path, SUPERNET)
    return net.eval()  # type: ignore[return-value]
