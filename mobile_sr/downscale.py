"""Downscaling image files on the server: HR file -> a pair's (or any downscaler's) LR, written as an honest
8-bit PNG, or as the JPEG a phone would receive.

The LR written here is exactly what ``eval --pipeline learned`` scores: the same downscaler, the same
rounding to 8 bits, and for ``--jpeg-quality`` the same encoder settings as the evaluation's JPEG codec
(libjpeg through Pillow, 4:2:0 chroma), so "downscale to disk, then upscale" equals the in-memory pipeline.
An HR side that is not a multiple of the scale is cropped at the bottom/right, as the benchmark protocol
crops its HR images; the result says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .core.files import atomic_write
from .data.images import ImageError, LoadedImage, image_size, load_image, save_image
from .data.imresize import cells, resize_to, side_at
from .evaluation import Jpeg
from .inference import downscale_tiled
from .upscale import UpscaleError, plan_jobs

DownscaleError = UpscaleError  # the same kind of refused request: one line, nothing written


@dataclass
class DownscaleResult:
    in_size: tuple[int, int]  # (W, H) of the HR file
    used_size: tuple[int, int]  # (W, H) after cropping to a multiple of the scale
    out_size: tuple[int, int]
    seconds: float

    @property
    def cropped(self) -> bool:
        return self.in_size != self.used_size


def plan(src: Path, dst: Path, jpeg_quality: int | None) -> list[tuple[Path, Path]]:
    """(HR, LR) file pairs; LR files in a folder are named ``<stem>.png`` (``.jpg`` with ``jpeg_quality``)."""
    jobs = plan_jobs(src, dst, suffix=".jpg" if jpeg_quality is not None else ".png")
    want = (".jpg", ".jpeg") if jpeg_quality is not None else (".png",)
    for _, out in jobs:
        if out.suffix.lower() not in want:
            kind = f"JPEG (--jpeg-quality {jpeg_quality})" if jpeg_quality is not None else "8-bit PNG"
            raise DownscaleError(f"{out}: the LR is written as {kind}, so name it {' or '.join(want)}"
                                 + ("" if jpeg_quality is not None else "; pass --jpeg-quality Q for a JPEG"))
    return jobs


def downscale_image(model: nn.Module, scale: float, img: LoadedImage, tile: int | None = 256) -> LoadedImage:
    """The 8-bit LR of an HR image whose sides are multiples of ``scale`` (of p, at a fractional factor p/q);
    alpha is MATLAB-bicubic downscaled."""
    rgb = downscale_tiled(model, img.rgb, scale, tile=tile, out_dtype=torch.uint8)
    alpha = None
    if img.alpha is not None:
        size = (side_at(img.alpha.shape[-2], 1 / scale), side_at(img.alpha.shape[-1], 1 / scale))
        alpha = resize_to(img.alpha.double(), size, 1 / scale).float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return LoadedImage(rgb, alpha, grayscale=False, sixteen_bit=False, icc=img.icc, exif=img.exif)


def downscale_file(model: nn.Module, scale: float, src: Path, dst: Path, tile: int | None = 256,
                   jpeg_quality: int | None = None) -> DownscaleResult:
    """Decode, crop to a multiple of the scale (of p, at a fractional factor p/q, so the LR size is exact),
    downscale, write (PNG, or JPEG at ``jpeg_quality``). Raises ImageError for a bad input (unreadable, or smaller
    than the scale)."""
    t0 = time.perf_counter()
    image_size(src)  # refuses an oversized or animated file from its header, before decoding
    img = load_image(src)
    h, w = img.rgb.shape[-2:]  # after the EXIF orientation
    p, q = cells(scale)
    hc, wc = h - h % p, w - w % p
    if hc == 0 or wc == 0:
        raise ImageError(f"{src}: {w}x{h} is smaller than the scale x{scale:g}"
                         + (f"'s {p}-pixel cell" if q > 1 else "") + "; nothing to downscale")
    if (hc, wc) != (h, w):
        img = LoadedImage(img.rgb[:, :hc, :wc], None if img.alpha is None else img.alpha[:, :hc, :wc],
                          img.grayscale, img.sixteen_bit, img.icc, img.exif)
    with torch.inference_mode():
        lr = downscale_image(model, scale, img, tile)
    if jpeg_quality is None:
        save_image(lr, dst)
    else:  # the evaluation's codec, byte for byte (alpha cannot travel in a JPEG)
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dst, Jpeg(jpeg_quality).encode(lr.rgb.float().div(255)))
    return DownscaleResult((w, h), (wc, hc), (wc * q // p, hc * q // p), time.perf_counter() - t0)


@dataclass
class VideoEncodeResult:
    frames: int
    in_size: tuple[int, int]  # (W, H) of the HR frames
    used_size: tuple[int, int]  # after cropping to a multiple of 2 x scale (the LR must have even sides)
    out_size: tuple[int, int]
    kbps: float  # of the video stream
    seconds: float
    audio_packets: int

    @property
    def cropped(self) -> bool:
        return self.in_size != self.used_size


def encode_video(model: nn.Module, scale: int, src: Path, dst: Path, codec: str = "h264", crf: int | None = None,
                 kbps: float | None = None, preset: str = "medium", tile: int | None = 256,
                 on_frame: Callable[[], None] | None = None) -> VideoEncodeResult:
    """The server's side of video SR: downscale every frame of ``src`` with ``model`` (MATLAB bicubic or a pair's
    learned downscaler, rounded to 8 bits as any LR is) and encode the LR video, keeping timestamps and audio.

    yuv420p needs even sides, so the HR is cropped at the bottom/right to a multiple of ``2 * scale`` (the
    result says so), as the image protocol crops to a multiple of the scale.
    """
    from .data.video import even_crop, probe, transcode

    t0 = time.perf_counter()
    info = probe(src)
    unit = 2 * scale
    wc, hc = info.width - info.width % unit, info.height - info.height % unit
    if wc == 0 or hc == 0:
        raise DownscaleError(f"{src}: {info.width}x{info.height} frames are smaller than {unit}x{unit}; at x{scale} "
                             "the LR would have no even side to encode")

    def down(rgb: torch.Tensor) -> torch.Tensor:
        hr = even_crop(rgb, scale).float().div_(255)
        with torch.inference_mode():
            return downscale_tiled(model, hr, scale, tile=tile, out_dtype=torch.uint8)

    res = transcode(src, dst, down, codec=codec, crf=crf, kbps=kbps, preset=preset, on_frame=on_frame)
    return VideoEncodeResult(res.frames, res.in_size, (wc, hc), res.out_size, res.kbps, time.perf_counter() - t0,
                             res.audio_packets)
