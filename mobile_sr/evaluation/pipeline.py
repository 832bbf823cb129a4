"""Pipelines: what happens to an HR image between the server and the phone's screen.

``LR source -> [codec] -> upscaler``, where the LR source is either the published MATLAB-bicubic LR
file of a benchmark (the path every published table uses) or a downscaler run on the HR image and
rounded to 8 bits, as saving it would (a learned downscaler never gets to send floats). The codec
(JPEG at a quality; video codecs later) works on that 8-bit image. The upscaler runs tiled through
:mod:`mobile_sr.inference`, exactly as the apps tile, optionally on fixed-size tiles (an exported
artifact only takes its one input shape).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..data.datasets import BenchmarkImage
from ..data.imresize import quantize, resize_to, side_at
from ..inference import OVERLAP, Upscale, at_fixed_size, fixed_tile, upscale_tiled
from ..models import Model, ModelError, Scale, load_model
from ..models.deploy import deploy

Downscale = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, H, W) -> (1, 3, H/s, W/s), float


class Codec:
    """An image codec between the server and the phone: 8-bit RGB (3, h, w) in [0, 1] in, decoded out."""

    label: str

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Jpeg(Codec):
    """Baseline JPEG through libjpeg (Pillow), 4:2:0 chroma as phones and browsers send it."""

    quality: int

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {self.quality}")

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"jpeg q{self.quality}"

    def encode(self, lr: torch.Tensor) -> bytes:
        """The JPEG file of an LR image (3, h, w) in [0, 1]: what ``mobile-sr downscale --jpeg-quality`` writes."""
        arr = lr.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=self.quality, subsampling=2)
        return buf.getvalue()

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        with Image.open(io.BytesIO(self.encode(lr))) as im:
            out = np.asarray(im.convert("RGB"))
        return torch.from_numpy(out.copy()).permute(2, 0, 1).float().div_(255)


def parse_codec(text: str | None) -> Codec | None:
    """``jpeg:Q`` (or ``jpeg`` for quality 90) -> a codec; None/"" -> no codec. ValueError otherwise."""
    if not text:
        return None
    kind, _, arg = text.strip().lower().partition(":")
    if kind == "jpeg":
        try:
            return Jpeg(int(arg) if arg else 90)
        except ValueError:
            raise ValueError(f"--codec {text!r}: expected jpeg:QUALITY with QUALITY 1..100") from None
    raise ValueError(f"--codec {text!r}: unknown codec (supported: jpeg:QUALITY)")


def bicubic(lr: torch.Tensor, scale: Scale) -> torch.Tensor:
    """MATLAB bicubic upscaling: the baseline every SR table quotes (at a fractional factor, to MATLAB's size
    without floating-point drift: 102 x 2.5 is 255)."""
    size = (side_at(lr.shape[-2], scale), side_at(lr.shape[-1], scale))
    return resize_to(lr.double(), size, scale).float()


@dataclass
class Pipeline:
    """HR -> LR (published file, or ``downscale`` + 8-bit rounding) -> ``codec`` -> ``upscale`` (tiled)."""

    upscale: Upscale
    scale: Scale
    downscale: Downscale | None = None
    codec: Codec | None = None
    tile: int | None = None  # LR tile side; None runs each image in one pass
    overlap: int = OVERLAP
    fixed_size: tuple[int, int] | None = None  # (h, w) the upscaler only takes: tiles are padded to it

    @property
    def makes_lr(self) -> bool:
        return self.downscale is not None

    def describe(self) -> str:
        src = "downscaler -> 8-bit" if self.makes_lr else "published LR"
        return src + (f" -> {self.codec.label}" if self.codec else "") + " -> upscaler"

    def low_res(self, img: BenchmarkImage) -> torch.Tensor:
        """The LR image the phone receives (3, h, w), in [0, 1]."""
        if self.downscale is None:
            lr = img.lr
        else:
            with torch.no_grad():
                lr = quantize(self.downscale(img.hr[None].float())[0]).float()
        return self.codec(lr) if self.codec is not None else lr

    def upscale_lr(self, lr: torch.Tensor) -> torch.Tensor:
        """The reconstruction (3, h*s, w*s) of one LR image, tiled as the apps tile."""
        fn, tile = self.upscale, self.tile
        if self.fixed_size is not None:
            fn, tile = at_fixed_size(fn, *self.fixed_size, int(self.scale)), fixed_tile(*self.fixed_size)
        with torch.no_grad():
            return upscale_tiled(fn, lr, self.scale, tile=tile, overlap=self.overlap)


def bicubic_pipeline(scale: Scale) -> Pipeline:
    """Published LR -> MATLAB bicubic up: the row every SR table starts with."""
    return Pipeline(lambda t: bicubic(t, scale), scale)


def pipeline_for(model: Model, downscaler: str | None = None, codec: Codec | None = None,
                 tile: int | None = None) -> Pipeline:
    """The pipeline of a loaded model: a pair brings its own downscaler; an upscaler reads the published LR,
    or the LR of ``downscaler`` (a built-in downscaler or checkpoint, e.g. ``bicubic``)."""
    model = deploy(model)
    down = model.downscaler
    if downscaler is not None:
        if down is not None:
            raise ModelError(f"{model.name} is a pair and brings its own downscaler; drop --downscaler")
        d = deploy(load_model(downscaler, model.scale))
        if d.role != "downscaler":
            raise ModelError(f"--downscaler {downscaler}: {d.name} is an {d.role}, not a downscaler")
        down = d.module
    return Pipeline(model.upscaler, model.scale, downscale=down, codec=codec, tile=tile)
