"""Training patches made on the fly, and the paired benchmark sets.

Training: HR images are decoded once into memory. Each sample is a random HR crop (with a
margin), a random flip/rotation, and an LR made by the MATLAB bicubic of :mod:`.imresize`, so
the network trains on exactly the degradation it is tested on. The margin is cropped off after
the downscale, so patch borders see real neighbours rather than MATLAB's symmetric padding.

Samples are a pure function of ``(seed, step, index)``: resuming at step k replays the very
same batches, and under DDP every rank builds only its own slice of the global batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .images import ImageError, list_images, read_rgb
from .imresize import cells, imresize, quantize, resize_to

MARGIN_LR = 4  # LR pixels cut off each side after downscaling: covers the x4 bicubic support (2 LR px)


def split_paths(folders: list[str | Path], holdout_every: int = 0) -> tuple[list[Path], list[Path]]:
    """(train, held out) image paths: with ``holdout_every=n`` every n-th image, in name order, is held out.

    The held-out images are the validation split the OFA accuracy predictor is trained on: they are
    never trained on and, unlike Set5/Set14, never used to report results.
    """
    paths: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"training data folder not found: {folder}")
        paths += list_images(folder)
    if not paths:
        raise ValueError(f"no images found in {', '.join(map(str, folders))}")
    if holdout_every < 0 or holdout_every == 1:
        raise ValueError(f"holdout_every must be 0 (none) or >= 2, got {holdout_every}")
    if not holdout_every:
        return paths, []
    return ([p for i, p in enumerate(paths) if i % holdout_every],
            [p for i, p in enumerate(paths) if i % holdout_every == 0])


Warn = Callable[[str], None]


def read_training_image(path: Path, warn: Warn | None) -> torch.Tensor | None:
    """RGB (3, H, W) in [0, 1] of a training image, or None for an unreadable one (corrupt, truncated, not an
    image, over the size limit), after ``warn`` names it: one bad file in a folder of hundreds is skipped,
    not the end of a training run. The files read are the same on a resume, so batches stay reproducible."""
    try:
        return read_rgb(path)
    except ImageError as exc:
        if warn is not None:
            warn(f"skipping training image {exc}")
        return None


def holdout_images(folders: list[str | Path], holdout_every: int, scale: int, size: int = 192,
                   warn: Warn | None = None) -> list[BenchmarkImage]:
    """The held-out split as benchmark pairs: a centre ``size`` HR crop and its MATLAB-bicubic LR (8-bit).
    Unreadable images are skipped (see :func:`read_training_image`)."""
    if size % scale:
        raise ValueError(f"crop size {size} must be divisible by the scale {scale}")
    out = []
    for p in split_paths(folders, holdout_every)[1]:
        hr = read_training_image(p, warn)
        if hr is None:
            continue
        h, w = hr.shape[-2:]
        if min(h, w) < size:
            continue
        top, left = (h - size) // 2, (w - size) // 2
        hr = hr[:, top : top + size, left : left + size].contiguous()
        lr = quantize(imresize(hr.double(), 1 / scale)).float()
        out.append(BenchmarkImage(p.stem, lr, hr))
    if not out:
        raise ValueError(f"no held-out image is at least {size}x{size} px")
    return out


def patch_images(paths: list[Path], crop: int, warn: Warn | None) -> list[torch.Tensor]:
    """The training images with both sides at least ``crop``, as 8-bit levels (a quarter of the memory); unreadable
    ones are skipped after ``warn`` names them. ValueError when none is left."""
    images, unreadable = [], 0
    for p in paths:
        rgb = read_training_image(p, warn)
        if rgb is None:
            unreadable += 1
        elif min(rgb.shape[-2:]) >= crop:
            images.append((rgb * 255).round().to(torch.uint8).contiguous())
    if not images:
        note = f" ({unreadable} unreadable, skipped)" if unreadable else ""
        raise ValueError(f"no training image is at least {crop}x{crop} px{note}; use a smaller --patch")
    return images


def augment(hr: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A rotation by a multiple of 90 degrees and a horizontal flip, drawn from ``g``."""
    rot, flip = int(torch.randint(4, (1,), generator=g)), bool(torch.randint(2, (1,), generator=g))
    hr = torch.rot90(hr, rot, (1, 2))
    return hr.flip(-1) if flip else hr


class TrainPatches:
    """Random (LR, HR) patch pairs from one or more folders of HR images."""

    def __init__(self, folders: list[str | Path], scale: int, patch: int, min_size: int | None = None,
                 holdout_every: int = 0, warn: Warn | None = None) -> None:
        """``holdout_every=n`` leaves out every n-th image (see :func:`split_paths`) for validation; unreadable
        images are skipped after ``warn`` names them (see :func:`read_training_image`)."""
        if patch % scale:
            raise ValueError(f"HR patch size {patch} must be divisible by the scale {scale}")
        self.scale, self.patch = scale, patch
        self.crop = patch + 2 * MARGIN_LR * scale
        paths = split_paths(folders, holdout_every)[0]
        self.paths = paths
        self.images = patch_images(paths, self.crop, warn)

    def sample(self, seed: int, step: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` of the global batch at ``step``: (LR 3xpxp/s, HR 3xpxp), float in [0,1]."""
        g = torch.Generator().manual_seed(hash((seed, step, index)) & 0x7FFFFFFFFFFF)
        img = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        h, w = img.shape[-2:]
        # Crop on the scale grid so the LR pixel centres line up with the HR ones, as in imresize.
        top = int(torch.randint((h - self.crop) // self.scale + 1, (1,), generator=g)) * self.scale
        left = int(torch.randint((w - self.crop) // self.scale + 1, (1,), generator=g)) * self.scale
        hr = augment(img[:, top : top + self.crop, left : left + self.crop].to(torch.float32) / 255.0, g)
        lr = quantize(imresize(hr.double(), 1 / self.scale)).float()
        m, ms = MARGIN_LR, MARGIN_LR * self.scale
        return lr[:, m:-m, m:-m].contiguous(), hr[:, ms:-ms, ms:-ms].contiguous()

    def batch(self, seed: int, step: int, indices: range) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.sample(seed, step, i) for i in indices]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


FACTOR_STREAM = 0x53434C45  # "SCLE": the factor draw of a step, apart from the patch draws (seed, step, index)
HR_MARGIN = 8  # HR pixels (at least) cut off each side after downscaling, rounded up to whole cells


class ScaledPatches:
    """(LR, HR) patch pairs at a factor drawn per step from ``factors``, one factor per batch: the data of a
    scale-arbitrary pair. A factor p/q (:func:`.imresize.cells`) takes the largest HR patch that is a multiple of
    p (at most ``patch``), so the MATLAB-bicubic LR has an exact size and its pixel centres line up with the HR's;
    as in :class:`TrainPatches`, a margin of whole cells is cut off after the downscale. Samples are a pure
    function of (seed, step, index)."""

    def __init__(self, folders: list[str | Path], factors: tuple[float, ...], patch: int,
                 warn: Warn | None = None) -> None:
        self.factors, self.patch = tuple(factors), patch
        self.cells = {f: cells(f) for f in self.factors}
        if any(patch < p for p, _ in self.cells.values()):
            raise ValueError(f"HR patch {patch} is smaller than a factor's cell ({max(self.cells.values())})")
        self.crop = max(self.patch_of(f) + 2 * self.margin_of(f) for f in self.factors)
        self.images = patch_images(split_paths(folders)[0], self.crop, warn)

    def patch_of(self, factor: float) -> int:
        p, _ = self.cells[factor]
        return self.patch - self.patch % p

    def margin_of(self, factor: float) -> int:
        p, _ = self.cells[factor]
        return math.ceil(HR_MARGIN / p) * p

    def factor(self, seed: int, step: int) -> float:
        g = torch.Generator().manual_seed(hash((seed, step, FACTOR_STREAM)) & 0x7FFFFFFFFFFF)
        return self.factors[int(torch.randint(len(self.factors), (1,), generator=g))]

    def sample(self, seed: int, step: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        factor = self.factor(seed, step)
        (p, q), size, margin = self.cells[factor], self.patch_of(factor), self.margin_of(factor)
        crop = size + 2 * margin
        g = torch.Generator().manual_seed(hash((seed, step, index)) & 0x7FFFFFFFFFFF)
        img = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        h, w = img.shape[-2:]
        top = int(torch.randint((h - crop) // p + 1, (1,), generator=g)) * p
        left = int(torch.randint((w - crop) // p + 1, (1,), generator=g)) * p
        hr = augment(img[:, top : top + crop, left : left + crop].to(torch.float32) / 255.0, g)
        side = crop * q // p
        lr = quantize(resize_to(hr.double(), (side, side), q / p)).float()
        m = margin * q // p
        return lr[:, m:-m, m:-m].contiguous(), hr[:, margin:-margin, margin:-margin].contiguous()

    def batch(self, seed: int, step: int, indices: range) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.sample(seed, step, i) for i in indices]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


@dataclass
class BenchmarkImage:
    name: str
    lr: torch.Tensor  # (3, h, w) in [0,1]
    hr: torch.Tensor  # (3, h*s, w*s) in [0,1]


def load_benchmark_at(name: str, scale: float, root: str | Path | None = None) -> list[BenchmarkImage]:
    """The benchmark pairs at any factor: the published files at an integer one (:func:`load_benchmark`). At a
    fractional factor p/q no published LR exists, so the x2 HR is cropped (bottom/right) to a multiple of p, as the
    protocol crops, and its LR is MATLAB bicubic (:func:`.imresize.imresize` equals MATLAB's files at x2-x4, a test
    checks) rounded to 8 bits."""
    if float(scale).is_integer():
        return load_benchmark(name, int(scale), root)
    p, q = cells(scale)
    out = []
    for img in load_benchmark(name, 2, root):
        h, w = img.hr.shape[-2:]
        hr = img.hr[:, : h - h % p, : w - w % p].contiguous()
        lr = quantize(resize_to(hr.double(), (hr.shape[-2] * q // p, hr.shape[-1] * q // p), q / p)).float()
        out.append(BenchmarkImage(img.name, lr, hr))
    return out


BUILTIN_BENCHMARK_ROOT = Path(__file__).resolve().parent.parent / "assets" / "benchmark"


def shared_benchmark_root() -> Path:
    """``../shared/datasets/benchmark`` beside the checkout (the developers' and CI's copy)."""
    return Path(__file__).resolve().parents[3] / "shared" / "datasets" / "benchmark"


def load_benchmark(name: str, scale: int, root: str | Path | None = None) -> list[BenchmarkImage]:
    """Read ``<root>/<name>/x<scale>/{HR,LR}``: the published MATLAB LR, never a re-made one.

    With no ``root``, the built-in copy inside the package is used (Set5 ships there).
    """
    base = Path(root) if root is not None else BUILTIN_BENCHMARK_ROOT
    folder = base / name / f"x{scale}"
    if not folder.is_dir():
        hint = "" if root is not None else " (only Set5 ships with the package; pass --data-root for others)"
        raise FileNotFoundError(f"benchmark folder not found: {folder}{hint}")
    hr_paths = list_images(folder / "HR")
    if not hr_paths:
        raise FileNotFoundError(f"no HR images in {folder / 'HR'}")
    out = []
    for hp in hr_paths:
        lp = folder / "LR" / hp.name
        if not lp.exists():
            raise FileNotFoundError(f"LR image missing for {hp.name}: {lp}")
        lr, hr = read_rgb(lp), read_rgb(hp)
        if tuple(hr.shape[-2:]) != (lr.shape[-2] * scale, lr.shape[-1] * scale):
            raise ImageError(f"{hp.name}: HR {tuple(hr.shape[-2:])} is not {scale}x LR {tuple(lr.shape[-2:])}")
        out.append(BenchmarkImage(hp.stem, lr, hr))
    return out
