"""Reading and writing images as float tensors, for every PNG/JPEG mode a user will hand us.

Models see RGB in [0,1]. Anything else is converted on the way in and restored on the way out:
grayscale stays grayscale, alpha is upscaled on its own (it is not colour), 16-bit PNGs (gray, RGB,
with or without alpha) are read and written at full precision with pypng (Pillow reads 16-bit RGB as
8-bit). The EXIF orientation is applied on read, so pixels come out upright, and the ICC profile and
the rest of the EXIF travel to the output.

Every read checks the declared size first: an image over ``max_pixels`` (default 8K) is refused before
a single pixel is decoded, so a 500 KB PNG that declares 60000x60000 is one error line, not a crash.
"""

from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import png
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.files import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_INPUT_PIXELS = 7680 * 4320  # 8K: what the README promises to fit a phone-sized RAM budget
JPEG_QUALITY = 95  # JPEG and WebP outputs (Pillow's silent default is 75)
_ORIENTATION = 0x0112  # the EXIF tag


class ImageError(ValueError):
    """A file that is not a readable image. The message is one line, fit for the CLI."""


@dataclass
class LoadedImage:
    """An image as the model sees it, plus what is needed to write it back the same way."""

    rgb: torch.Tensor  # (3, H, W) float32 in [0, 1] (or uint8/uint16 levels on the way out)
    alpha: torch.Tensor | None  # (1, H, W) float32 in [0, 1] (or levels on the way out), or None
    grayscale: bool
    sixteen_bit: bool
    icc: bytes | None = None  # the ICC profile, kept only when it describes the output's colour space
    exif: bytes | None = None  # EXIF without its orientation (already applied to the pixels)


def megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} MP"


def image_size(path: str | os.PathLike, max_pixels: int = MAX_INPUT_PIXELS) -> tuple[int, int]:
    """(W, H) from the header alone, refusing images over ``max_pixels`` and animated ones."""
    path = Path(path)
    with _open(path) as im:
        _check(path, im, max_pixels)
        return im.size


def load_image(path: str | os.PathLike, max_pixels: int = MAX_INPUT_PIXELS) -> LoadedImage:
    """Decode any supported image fully (truncated files fail here, not later), upright."""
    path = Path(path)
    with _open(path) as im:
        _check(path, im, max_pixels)
        try:
            if im.format == "PNG" and _png_bit_depth(path) == 16:
                return _from_png16(path, im)
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            return _from_pil(im)
        except ImageError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error, png.Error) as exc:
            raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None


def _open(path: Path) -> Image.Image:
    """Open lazily (header only); Pillow's own bomb warning is replaced by our size check."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: a folder, not an image file") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: declares over {megapixels(2 * Image.MAX_IMAGE_PIXELS)} (a decompression bomb?); "
                         f"the input limit is {megapixels(MAX_INPUT_PIXELS)} (7680x4320)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None


def _check(path: Path, im: Image.Image, max_pixels: int) -> None:
    """Refuse, from the header alone, what is too large to decode or would silently lose frames."""
    w, h = im.size
    if w * h > max_pixels:
        named = " (8K, 7680x4320)" if max_pixels == MAX_INPUT_PIXELS else ""
        raise ImageError(f"{path}: {w}x{h} ({megapixels(w * h)}) is over the input limit of "
                         f"{megapixels(max_pixels)}{named}")
    try:
        frames = getattr(im, "n_frames", 1)  # GIF/WebP/APNG/TIFF: counting may read the file
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None
    if frames > 1:
        raise ImageError(f"{path}: has {frames} frames (animated or multi-page); only still images are supported, "
                         "so extract the frames first")


def _png_bit_depth(path: Path) -> int:
    """The IHDR bit depth (byte 24: 8-byte signature, 4 length, 4 'IHDR', 4 width, 4 height)."""
    with open(path, "rb") as f:
        head = f.read(25)
    return head[24] if len(head) == 25 else 0


def _planes(arr: np.ndarray, peak: float) -> torch.Tensor:
    """(H, W, C) integer levels -> contiguous (C, H, W) float32 in [0, 1], with a single float copy."""
    h, w, c = arr.shape
    out = torch.empty(c, h, w, dtype=torch.float32)
    out.copy_(torch.from_numpy(arr).permute(2, 0, 1))
    return out.div_(peak)


def _icc_for(icc: bytes | None, grayscale: bool) -> bytes | None:
    """Keep a profile only if it describes what is written (a CMYK profile on RGB output would be wrong)."""
    if not icc or len(icc) < 20:
        return None
    return icc if icc[16:20] == (b"GRAY" if grayscale else b"RGB ") else None


def _from_pil(im: Image.Image) -> LoadedImage:
    icc, exif = im.info.get("icc_profile"), im.info.get("exif")
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = torch.from_numpy(np.asarray(im, dtype=np.float32) / np.float32(65535.0)).clamp_(0, 1)[None]
        return LoadedImage(gray.expand(3, -1, -1).contiguous(), None, True, True, _icc_for(icc, True), exif)
    if mode in ("1", "L", "LA", "La", "PA"):
        la = np.array(im.convert("LA"))
        alpha = _planes(la[..., 1:], 255.0) if mode in ("LA", "La", "PA") else None
        gray = _planes(la[..., :1], 255.0)
        return LoadedImage(gray.expand(3, -1, -1).contiguous(), alpha, True, False, _icc_for(icc, True), exif)
    if mode in ("RGBA", "RGBa", "LAa"):
        rgba = np.array(im.convert("RGBA"))
        return LoadedImage(_planes(rgba[..., :3], 255.0), _planes(rgba[..., 3:], 255.0), False, False,
                           _icc_for(icc, False), exif)
    arr = np.array(im if im.mode == "RGB" else im.convert("RGB"))  # writable, as torch wants
    return LoadedImage(_planes(arr, 255.0), None, False, False, _icc_for(icc, False), exif)


def _from_png16(path: Path, im: Image.Image) -> LoadedImage:
    """A 16-bit PNG through pypng (any colour type; tRNS becomes alpha), oriented like exif_transpose."""
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    arr = np.empty((height, width * planes), np.uint16)
    for y, row in enumerate(rows):
        arr[y] = row
    arr = arr.reshape(height, width, planes)
    peak = float(2 ** info["bitdepth"] - 1)  # asDirect may rescale to the sBIT depth
    gray = planes <= 2
    color = _planes(arr[..., :1] if gray else arr[..., :3], peak)
    alpha = _planes(arr[..., planes - 1 :], peak) if planes in (2, 4) else None
    del arr
    exif = None
    orientation = 1
    if "exif" in im.info:  # eXIf goes before IDAT (PNG 3rd edition), so opening the header found it
        tags = Image.Exif()
        tags.load(im.info["exif"])
        orientation = tags.pop(_ORIENTATION, 1)
        exif = tags.tobytes()
    color = orient(color, orientation)
    alpha = orient(alpha, orientation) if alpha is not None else None
    rgb = color.expand(3, -1, -1).contiguous() if gray else color
    return LoadedImage(rgb, alpha, gray, True, _icc_for(im.info.get("icc_profile"), gray), exif)


def orient(t: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a (C, H, W) tensor: the transposes of ``ImageOps.exif_transpose``."""
    hw = (-2, -1)
    if orientation == 2:
        t = t.flip(-1)  # FLIP_LEFT_RIGHT
    elif orientation == 3:
        t = t.flip(hw)  # ROTATE_180
    elif orientation == 4:
        t = t.flip(-2)  # FLIP_TOP_BOTTOM
    elif orientation == 5:
        t = t.transpose(-2, -1)  # TRANSPOSE
    elif orientation == 6:
        t = torch.rot90(t, -1, hw)  # ROTATE_270 (clockwise)
    elif orientation == 7:
        t = t.transpose(-2, -1).flip(hw)  # TRANSVERSE
    elif orientation == 8:
        t = torch.rot90(t, 1, hw)  # ROTATE_90 (counter-clockwise)
    return t.contiguous()


def _levels(t: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """Float [0,1] -> integer levels; integer tensors are rescaled only if their depth differs."""
    peak = 65535 if dtype == torch.uint16 else 255
    if t.dtype.is_floating_point:
        return t.clamp(0, 1).mul(peak).round().to(dtype).numpy()
    if t.dtype == dtype:
        return t.numpy()
    return (t.to(torch.float32) * (peak / (65535 if t.dtype == torch.uint16 else 255))).round().to(dtype).numpy()


def _gray(rgb: torch.Tensor) -> torch.Tensor:
    """The model saw 3 equal channels; average what it made of them (kept in the input's dtype)."""
    y = rgb.to(torch.float32).mean(0)
    return y if rgb.dtype.is_floating_point else y.round().to(rgb.dtype)


def to_pil(img: LoadedImage, sixteen_bit: bool | None = None) -> Image.Image:
    """An 8-bit PIL image of the original kind (``I;16`` for 16-bit gray without alpha, unless told not to)."""
    sixteen_bit = img.sixteen_bit if sixteen_bit is None else sixteen_bit
    rgb = img.rgb.detach()
    if img.grayscale:
        y = _gray(rgb)
        if sixteen_bit and img.alpha is None:
            return Image.fromarray(_levels(y, torch.uint16))
        gray = Image.fromarray(_levels(y, torch.uint8), "L")
        if img.alpha is None:
            return gray
        return Image.merge("LA", (gray, Image.fromarray(_levels(img.alpha[0], torch.uint8), "L")))
    # Merge per-channel planes rather than transposing CHW -> HWC: one less full-size copy.
    planes = [Image.fromarray(np.ascontiguousarray(p), "L") for p in _levels(rgb, torch.uint8)]
    if img.alpha is not None:
        return Image.merge("RGBA", [*planes, Image.fromarray(_levels(img.alpha[0], torch.uint8), "L")])
    return Image.merge("RGB", planes)


def output_format(path: str | os.PathLike) -> str:
    """The Pillow format for an output name; anything but the supported extensions is a bad request."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise ImageError(f"{path}: unsupported output format {suffix or '(no extension)'}; "
                         f"use one of {', '.join(IMAGE_EXTENSIONS)}")
    return Image.registered_extensions()[suffix]


def save_image(img: LoadedImage, path: str | os.PathLike, quality: int = JPEG_QUALITY) -> None:
    """Write atomically (a reader never sees a half-written file), with the umask's mode.

    16-bit images stay 16-bit in PNG; JPEG, WebP and BMP are 8-bit formats. JPEG and WebP are written at
    ``quality`` (JPEG with 4:4:4 chroma: an upscaler should not halve the colour resolution again).
    """
    path = Path(path)
    fmt = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.sixteen_bit and fmt == "PNG":
        atomic_write(path, lambda f: _write_png16(img, f))
        return
    pil = to_pil(img, sixteen_bit=img.sixteen_bit and fmt == "TIFF")
    opts: dict = {}
    if fmt == "JPEG":
        pil = pil if pil.mode in ("RGB", "L") else pil.convert("L" if img.grayscale else "RGB")
        opts = {"quality": quality, "subsampling": 0}
    elif fmt == "WEBP":
        opts = {"quality": quality}
    if fmt != "BMP":
        opts.update({k: v for k, v in (("icc_profile", img.icc), ("exif", img.exif)) if v})
    atomic_write(path, lambda f: pil.save(f, format=fmt, **opts))


class _Png16Writer(png.Writer):
    """pypng's writer plus iCCP/eXIf chunks, which must go between the header and the pixels."""

    def __init__(self, chunks: list[tuple[bytes, bytes]], **kw) -> None:
        super().__init__(**kw)
        self.extra_chunks = chunks

    def write_preamble(self, outfile: IO[bytes]) -> None:
        super().write_preamble(outfile)
        for tag, data in self.extra_chunks:
            png.write_chunk(outfile, tag, data)


def _write_png16(img: LoadedImage, f: IO[bytes]) -> None:
    """Stream a 16-bit PNG row by row: no full-size HWC copy of a 16K output is ever made."""
    rgb = img.rgb.detach()
    planes = [_levels(_gray(rgb), torch.uint16)] if img.grayscale else list(_levels(rgb, torch.uint16))
    if img.alpha is not None:
        planes.append(_levels(img.alpha[0], torch.uint16))
    h, w = planes[0].shape
    chunks = []
    if img.icc:
        chunks.append((b"iCCP", b"ICC profile\0\0" + zlib.compress(img.icc)))
    if img.exif:
        chunks.append((b"eXIf", img.exif.removeprefix(b"Exif\0\0")))
    writer = _Png16Writer(chunks, width=w, height=h, greyscale=img.grayscale, alpha=img.alpha is not None,
                          bitdepth=16)
    writer.write_packed(f, (np.stack([p[y] for p in planes], -1).astype(">u2").tobytes() for y in range(h)))


def read_rgb(path: str | os.PathLike) -> torch.Tensor:
    """Just the RGB tensor (3,H,W) in [0,1]: the form datasets and metrics use."""
    return load_image(path).rgb


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted, hidden files and folders skipped."""
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
