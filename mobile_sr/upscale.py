"""Upscaling whole image files: decode, split off alpha, run tiled, put back together, save.

Tiling keeps peak memory at one tile's activations plus the input and output images, so an 8K input
works on a phone-sized RAM budget; the overlap makes the result match an untiled pass. What cannot fit
that budget is refused up front, from the file's header: inputs over 8K (``MAX_INPUT_PIXELS``) and
outputs over 16K (``MAX_OUTPUT_PIXELS``, 8K at x2 or 4K at x4).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .data.images import (
    IMAGE_EXTENSIONS,
    JPEG_QUALITY,
    MAX_INPUT_PIXELS,
    ImageError,
    LoadedImage,
    image_size,
    list_images,
    load_image,
    megapixels,
    output_format,
    save_image,
)
from .data.imresize import side_at
from .evaluation import bicubic
from .inference import upscale_tiled

MAX_OUTPUT_PIXELS = 15360 * 8640  # 16K: an 8K input at x2; peak RSS measured in the README
Tiled = Callable[[torch.Tensor, torch.dtype], torch.Tensor]  # LR (C, H, W) -> (C, H*s, W*s) of that dtype


class UpscaleError(ValueError):
    """A request that cannot run as asked (one line, for the CLI): nothing has been written."""


@dataclass
class UpscaleResult:
    in_size: tuple[int, int]  # (W, H)
    out_size: tuple[int, int]
    seconds: float


def plan_jobs(src: Path, dst: Path, suffix: str | None = None) -> list[tuple[Path, Path]]:
    """(input, output) pairs for a file or a folder, refusing anything that would overwrite an input.
    Outputs in a folder keep their input's name, with ``suffix`` instead of its extension when given.

    Outputs are renamed into place, so only an output that *is* an input (same path, a symlink to it, or
    the same file under another spelling) could destroy one; those are refused before any work.
    """
    if not src.exists():
        raise UpscaleError(f"{src}: no such file or folder")
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise UpscaleError(f"{dst}: must be a folder when the input is a folder")
        if dst.is_dir() and os.path.samefile(src, dst):
            raise UpscaleError(f"{dst}: is the input folder; upscaling in place would overwrite the originals, "
                               "so choose another output folder")
        jobs = [(p, dst / (p.with_suffix(suffix).name if suffix else p.name)) for p in list_images(src)]
        if not jobs:
            raise UpscaleError(f"{src}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    else:
        name = src.with_suffix(suffix).name if suffix else src.name
        jobs = [(src, dst / name if dst.is_dir() else dst)]
    for inp, out in jobs:
        if out.exists() and os.path.samefile(inp, out):
            raise UpscaleError(f"{out}: is the input file; writing it would destroy the original, so choose another -o")
        try:
            output_format(out)
        except ImageError as exc:
            raise UpscaleError(str(exc)) from None
    return jobs


def max_input_pixels(scale: float) -> int:
    """The largest input (in pixels) whose output at ``scale`` fits ``MAX_OUTPUT_PIXELS``."""
    return min(MAX_INPUT_PIXELS, int(MAX_OUTPUT_PIXELS // scale**2))


def upscale_image(model: nn.Module, scale: float, img: LoadedImage, tile: int | None = 256, overlap: int = 8,
                  tiled: Tiled | None = None) -> LoadedImage:
    """Upscale colour with the model; alpha (not colour, often hard-edged) with MATLAB bicubic.

    Both run tiled into integer outputs, so a 16K alpha costs 1-2 bytes a pixel, not a float64 image.
    ``tiled`` upscales the colour instead of ``upscale_tiled(model, ...)``: a runtime that only takes one input
    size tiles the image itself (``mobile_sr.export.runtime.Runner.tiled``).
    """
    dtype = torch.uint16 if img.sixteen_bit else torch.uint8  # keeps an 8K->16K output at ~0.4 GB
    rgb = (tiled(img.rgb, dtype) if tiled is not None else
           upscale_tiled(model, img.rgb, scale, tile=tile, overlap=overlap, out_dtype=dtype))
    alpha = None
    if img.alpha is not None:
        alpha = upscale_tiled(lambda x: bicubic(x, scale), img.alpha, scale, tile=tile, overlap=overlap, out_dtype=dtype)
    return LoadedImage(rgb, alpha, img.grayscale, img.sixteen_bit, img.icc, img.exif)


def upscale_file(model: nn.Module, scale: float, src: Path, dst: Path, tile: int | None = 256,
                 overlap: int = 8, quality: int = JPEG_QUALITY, tiled: Tiled | None = None) -> UpscaleResult:
    """Check the size from the header, decode, upscale, write. Raises ImageError for a bad input."""
    t0 = time.perf_counter()
    w, h = image_size(src)
    if w * h > max_input_pixels(scale):
        raise ImageError(f"{src}: {w}x{h} at x{scale:g} would be {side_at(w, scale)}x{side_at(h, scale)} "
                         f"({megapixels(int(w * h * scale**2))}), over the output limit of "
                         f"{megapixels(MAX_OUTPUT_PIXELS)} (16K, 15360x8640)")
    img = load_image(src)
    h, w = img.rgb.shape[-2:]  # after the EXIF orientation
    with torch.inference_mode():
        out = upscale_image(model, scale, img, tile, overlap, tiled)
    del img
    save_image(out, dst, quality=quality)
    return UpscaleResult((w, h), (side_at(w, scale), side_at(h, scale)), time.perf_counter() - t0)


VIDEO_CRF = 18  # the upscaled video's x264 CRF: visually lossless, so the file shows the model, not the encoder


@dataclass
class VideoUpscaleResult:
    frames: int
    in_size: tuple[int, int]  # (W, H) of the decoded frames
    out_size: tuple[int, int]  # (W, H) written: a video's odd side loses its last row/column (``cropped``)
    seconds: float
    kbps: float | None  # of the written video stream; None for a folder of PNG frames
    audio_packets: int = 0
    cropped: bool = False


def video_output_kind(dst: Path) -> str:
    """``video`` for an .mp4/.mkv/.mov name, ``frames`` for a folder (a name without a suffix, or an existing folder)."""
    from .data.video import VIDEO_SUFFIXES

    if dst.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    if dst.is_dir() or not dst.suffix:
        return "frames"
    raise UpscaleError(f"{dst}: write a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of PNG frames (a name without "
                       "a suffix)")


def upscale_video(tiled: Tiled, scale: int, src: Path, dst: Path, crf: int = VIDEO_CRF, codec: str = "h264",
                  preset: str = "medium", on_frame: Callable[[], None] | None = None) -> VideoUpscaleResult:
    """Decode ``src`` (video file or frame folder), upscale every frame with ``tiled`` (LR (3, H, W) float ->
    (3, sH, sW) uint8) and write a video at ``crf`` (timestamps and audio kept) or a folder of PNG frames.

    One frame is in memory at a time, so a 300-frame 720p clip costs a frame and the model, not the clip. A
    video needs even sides (yuv420p): an odd output side (x3 of an odd input) loses its last row or column,
    and the result says so; PNG frames keep every pixel. Nothing appears under ``dst`` until it is complete.
    """
    from .core.files import place, staging
    from .data.video import iter_video, probe, transcode

    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    kind = video_output_kind(dst)
    if dst.exists() and os.path.samefile(src, dst):
        raise UpscaleError(f"{dst}: is the input; writing it would destroy the original, so choose another -o")
    info = probe(src)
    w, h = info.width * scale, info.height * scale
    if w * h > MAX_OUTPUT_PIXELS:
        raise UpscaleError(f"{src}: {info.width}x{info.height} frames at x{scale} would be {w}x{h}, over the output "
                           f"limit of {megapixels(MAX_OUTPUT_PIXELS)}")

    def sr(rgb: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = tiled(rgb.float().div_(255), torch.uint8)
        return out[:, : out.shape[1] // 2 * 2, : out.shape[2] // 2 * 2] if kind == "video" else out

    if kind == "video":
        res = transcode(src, dst, sr, codec=codec, crf=crf, preset=preset, on_frame=on_frame)
        return VideoUpscaleResult(res.frames, res.in_size, res.out_size, time.perf_counter() - t0, res.kbps,
                                  res.audio_packets, res.out_size != (w, h))
    dst.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with staging(dst.parent, dst.name) as tmp:
        folder = tmp / dst.name
        folder.mkdir()
        for frame in iter_video(src):
            out = sr(frame.rgb)
            save_image(LoadedImage(out, None, False, False, None, None), folder / f"frame_{n + 1:05d}.png")
            n += 1
            if on_frame is not None:
                on_frame()
        place(folder, dst)
    return VideoUpscaleResult(n, (info.width, info.height), (w, h), time.perf_counter() - t0, None)
