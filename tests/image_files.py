"""Real image files for the tests, written byte by byte or by pypng/Pillow: PNG headers that declare any size
(decompression bombs), 16-bit PNGs, and EXIF blocks. Helpers, not tests: both image test modules use them."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import png
from PIL import Image


def blank_png(path: Path, w: int, h: int, full: bool = True) -> Path:
    """A real, valid all-black RGB PNG of any declared size (a 13000x13000 one is ~500 KB), or with
    ``full=False`` one whose pixel data stops early: what a decompression bomb's header looks like."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    if full:
        comp = zlib.compressobj(9)
        row = bytes(1 + 3 * w)
        body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    else:
        body = zlib.compress(bytes(1000))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def write_png16(path: Path, arr: np.ndarray) -> Path:
    """(H, W, C) uint16 -> a 16-bit PNG written by pypng (C: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)."""
    h, w, c = arr.shape
    png.Writer(w, h, greyscale=c <= 2, alpha=c in (2, 4), bitdepth=16).write(path.open("wb"), arr.reshape(h, w * c))
    return path


def read_png16(path: Path) -> tuple[np.ndarray, dict]:
    w, h, rows, info = png.Reader(filename=str(path)).asDirect()
    return np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, info["planes"]), info


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make: the rest of the EXIF must travel on
    return exif
