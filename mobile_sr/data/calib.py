"""Calibration images for int8 exports and for QAT's starting point: the shipped crops, or a folder of the user's own.

Every int8 exporter (TFLite, ExecuTorch, Core ML, ONNX) calibrates on the same ``(N, 3, H, W)`` float32
batch in [0, 1] RGB, made here, so the formats are comparable. The images are natural-image crops at
LR resolution, like the tiles a phone feeds the model; they are never benchmark (test) images.

The shipped set (``assets/calib``) was cut by :func:`cut_crops`; its README says from what. It lives in ``data``
because training uses it too: ``train --qat`` range-equalizes its starting point on these crops, exactly as an
int8 export would prepare the model (``models/quant.py``).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .images import ImageError, list_images, read_rgb
from .imresize import imresize, quantize

CALIB_DIR = Path(__file__).resolve().parent.parent / "assets" / "calib"
MAX_SIDE = 2048  # the largest export input side (export.MAX_SIDE): no calibration batch is cut larger
CROP = 96  # the side of the shipped crops


class CalibError(ValueError):
    """A calibration folder that cannot be used (missing, empty, unreadable)."""


@dataclass(frozen=True)
class CalibSet:
    """The calibration images, where they came from, and one hash over names and bytes."""

    folder: Path
    names: list[str]
    sha256: str
    images: list[torch.Tensor]  # (3, h, w) uint8 levels, centre crops of at most MAX_SIDE (see load_calib)

    @property
    def builtin(self) -> bool:
        return self.folder == CALIB_DIR

    def batch(self, h: int, w: int) -> torch.Tensor:
        """All images fitted to ``h`` x ``w`` (see :func:`fit`): (N, 3, h, w) float32 in [0, 1]."""
        return torch.stack([fit(img, h, w) for img in self.images])

    def native(self, h: int, w: int) -> list[torch.Tensor]:
        """Each image fitted to at most ``h`` x ``w`` and never mirrored (8 px a side at least): (3, h', w') float32.

        These hold the pixels of ``batch(h, w)`` once each, where the batch repeats a smaller image by mirroring:
        what a calibration that runs at any size (PT2E, ``export/pt2e.py``; ONNX Runtime's on a dynamic-size copy of the
        graph, ``export/onnx.py``) observes, at a fraction of the cost."""
        return [fit(img, max(min(h, img.shape[1]), min(h, 8)), max(min(w, img.shape[2]), min(w, 8)))
                for img in self.images]


def load_calib(folder: str | Path | None = None) -> CalibSet:
    """Read every image in ``folder`` (default: the shipped crops). Empty or unreadable folders are an error."""
    path = Path(folder) if folder is not None else CALIB_DIR
    if not path.is_dir():
        raise CalibError(f"calibration folder not found: {path}; pass --calib DIR with a few PNG/JPEG images")
    try:
        files = list_images(path)
    except OSError as exc:
        raise CalibError(f"cannot read calibration folder {path} ({exc.strerror}); check its permissions") from None
    if not files:
        raise CalibError(f"calibration folder {path} holds no images; put 16-32 PNG/JPEG photos in it")
    digest = hashlib.sha256()
    images = []
    for f in files:
        try:
            data = f.read_bytes()
            images.append(_keep(read_rgb(f)))
        except (OSError, ImageError) as exc:
            raise CalibError(f"unreadable calibration image {f} ({exc}); remove or replace it") from None
        digest.update(f.name.encode() + b"\0" + hashlib.sha256(data).digest())
    return CalibSet(path, [f.name for f in files], digest.hexdigest(), images)


def _keep(img: torch.Tensor) -> torch.Tensor:
    """What a calibration image is kept as: its centre ``MAX_SIDE`` square at most (no export input is larger), as
    8-bit levels. A folder of 32 phone photos then holds ~0.4 GB, not the 4.6 GB of whole float images."""
    _, h, w = img.shape
    top, left = max(h - MAX_SIDE, 0) // 2, max(w - MAX_SIDE, 0) // 2
    crop = img[:, top : top + MAX_SIDE, left : left + MAX_SIDE]
    return crop.clamp(0, 1).mul(255).round().to(torch.uint8).contiguous()


def fit(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Centre-crop ``img`` (3, H, W; float in [0, 1] or uint8 levels) to ``h`` x ``w`` as float32 in [0, 1],
    mirroring it first where it is smaller.

    Mirroring (not zero or edge padding) keeps the statistics of a natural image, which is all that
    calibration ranges depend on.
    """
    if img.dtype == torch.uint8:
        img = img.float().div_(255)
    _, ih, iw = img.shape
    arr = img.numpy()
    pad_h, pad_w = max(h - ih, 0), max(w - iw, 0)
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)), "symmetric")
    top, left = (arr.shape[1] - h) // 2, (arr.shape[2] - w) // 2
    return torch.from_numpy(np.ascontiguousarray(arr[:, top : top + h, left : left + w]))


def cut_crops(sources: list[Path], out: Path, per_source: int = 12, size: int = CROP, scale: int = 2,
              seed: int = 0) -> list[Path]:
    """Cut the shipped calibration set: ``per_source`` LR crops of ``size`` px from each source folder.

    Each crop is a ``size * scale`` HR window downscaled by MATLAB bicubic (the LR the models are
    trained on) and rounded to 8 bits, at a seeded random place. The shipped set spans the whole
    [0, 1] range (a test checks it), so an int8 input is calibrated to the scale 1/255.
    """
    rng = random.Random(seed)
    hr_size = size * scale
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sources:
        candidates = [p for p in list_images(src) if min(_size(p)) >= hr_size]
        for path in sorted(rng.sample(candidates, per_source)):
            hr = read_rgb(path)
            top, left = rng.randrange(hr.shape[1] - hr_size + 1), rng.randrange(hr.shape[2] - hr_size + 1)
            lr = quantize(imresize(hr[:, top : top + hr_size, left : left + hr_size].double(), 1 / scale)).float()
            dest = out / f"{src.name.lower()}_{path.stem}_{top}_{left}.png"
            arr = (lr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(arr, "RGB").save(dest, optimize=True)
            written.append(dest)
    return written


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


if __name__ == "__main__":  # python -m mobile_sr.data.calib ../shared/datasets/train/T91 ../shared/...BSD200
    import sys

    for p in cut_crops([Path(a) for a in sys.argv[1:]], CALIB_DIR):
        print(p.name, p.stat().st_size)
