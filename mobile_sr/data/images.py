"""Reading and writing images as float tensors, for every PNG/JPEG mode a user will hand us.

Models see RGB in [0,1]. Anything else is converted on the way in and restored on the way out:
grayscale stays grayscale, alpha is upscaled on its own (it is not colour), 16-bit PNGs are read
at full precision and written back as 16-bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..core.files import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """A file that is not a readable image. The message is one line, fit for the CLI."""


@dataclass
class LoadedImage:
    """An image as the model sees it, plus what is needed to write it back the same way."""

    rgb: torch.Tensor  # (3, H, W) float32 in [0, 1] (or uint8/uint16 levels on the way out)
    alpha: torch.Tensor | None  # (1, H, W) float32 in [0, 1], or None
    grayscale: bool
    sixteen_bit: bool


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Decode any supported image fully (truncated files fail here, not later)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return _from_pil(im)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None


def _from_pil(im: Image.Image) -> LoadedImage:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64) / 65535.0
        gray = torch.from_numpy(arr.astype(np.float32)).clamp(0, 1)[None]
        return LoadedImage(gray.expand(3, -1, -1).contiguous(), None, True, True)
    if mode in ("1", "L", "LA"):
        la = np.asarray(im.convert("LA"), dtype=np.float32) / 255.0
        gray = torch.from_numpy(la[..., 0])[None]
        alpha = torch.from_numpy(la[..., 1])[None] if mode == "LA" else None
        return LoadedImage(gray.expand(3, -1, -1).contiguous(), alpha, True, False)
    if mode in ("RGBA", "PA", "RGBa", "LAa"):
        arr = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        t = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        return LoadedImage(t[:3].contiguous(), t[3:].contiguous(), False, False)
    # uint8 HWC -> float CHW in one copy: an 8K image must not hold several float copies at once.
    arr = np.array(im if im.mode == "RGB" else im.convert("RGB"))  # writable, as torch wants
    rgb = torch.from_numpy(arr).permute(2, 0, 1).to(torch.float32).div_(255.0)
    return LoadedImage(rgb, None, False, False)


def _levels(t: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """Float [0,1] -> integer levels; integer tensors are rescaled only if their depth differs."""
    peak = 65535 if dtype == torch.uint16 else 255
    if t.dtype.is_floating_point:
        return t.clamp(0, 1).mul(peak).round().to(dtype).numpy()
    if t.dtype == dtype:
        return t.numpy()
    return (t.to(torch.float32) * (peak / (65535 if t.dtype == torch.uint16 else 255))).round().to(dtype).numpy()


def to_pil(img: LoadedImage) -> Image.Image:
    """Turn a (possibly upscaled) LoadedImage back into a PIL image of the original kind."""
    rgb = img.rgb.detach()
    if img.grayscale:
        y = rgb.to(torch.float32).mean(0)  # the model saw 3 equal channels; average what it made of them
        if not rgb.dtype.is_floating_point:
            y = y.round().to(rgb.dtype)
        if img.sixteen_bit and img.alpha is None:
            return Image.fromarray(_levels(y, torch.uint16))
        gray = Image.fromarray(_levels(y, torch.uint8), "L")
        if img.alpha is None:
            return gray
        return Image.merge("LA", (gray, Image.fromarray(_levels(img.alpha[0], torch.uint8), "L")))
    # Merge per-channel planes rather than transposing CHW -> HWC: one less full-size copy.
    planes = _levels(rgb, torch.uint8)
    out = Image.merge("RGB", [Image.fromarray(np.ascontiguousarray(p), "L") for p in planes])
    if img.alpha is not None:
        out.putalpha(Image.fromarray(_levels(img.alpha[0], torch.uint8), "L"))
    return out


def save_image(img: LoadedImage, path: str | os.PathLike) -> None:
    """Write atomically: a reader never sees a half-written file under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = to_pil(img)
    if path.suffix.lower() in (".jpg", ".jpeg") and pil.mode not in ("RGB", "L"):
        pil = pil.convert("RGB")
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    atomic_write(path, lambda f: pil.save(f, format=fmt))


def read_rgb(path: str | os.PathLike) -> torch.Tensor:
    """Just the RGB tensor (3,H,W) in [0,1]: the form datasets and metrics use."""
    return load_image(path).rgb


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted, hidden files skipped."""
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
