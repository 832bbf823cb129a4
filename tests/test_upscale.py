"""Upscaling files: tiling equals one pass, every image kind round-trips, bad files fail cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mobile_sr.cli import main
from mobile_sr.data.images import read_rgb
from mobile_sr.inference import upscale_tiled
from mobile_sr.models import create_model
from mobile_sr.train.trainer import write_weights

from .conftest import REPO

BABY = REPO / "mobile_sr" / "assets" / "benchmark" / "Set5" / "x2" / "LR" / "img_001.png"


@pytest.fixture(scope="module")
def elsr_ckpt(tmp_path_factory) -> Path:
    """A random-weight ELSR checkpoint: upscaling mechanics do not depend on training."""
    torch.manual_seed(0)
    model = create_model("elsr", 2, pretrained=False)
    path = tmp_path_factory.mktemp("ckpt") / "elsr.safetensors"
    write_weights(model, {"model": "elsr", "scale": 2, "config": model.config()}, path)
    return path


@pytest.mark.parametrize("name", ["fsrcnn", "elsr"])
def test_tiled_equals_untiled(name):
    torch.manual_seed(0)
    model = create_model(name, 2, pretrained=False)
    lr = read_rgb(BABY)[:, :100, :90]
    full = upscale_tiled(model, lr, 2, tile=None)
    tiled = upscale_tiled(model, lr, 2, tile=32, overlap=8)
    assert (full - tiled).abs().max().item() < 1 / 255
    no_overlap = upscale_tiled(model, lr, 2, tile=32, overlap=0)
    assert (full - no_overlap).abs().max().item() > 1 / 255  # seams appear without overlap: the test can fail


def _make_images(folder: Path) -> None:
    rgb = np.asarray(Image.open(BABY).convert("RGB"))[:40, :50]
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb).convert("L").save(folder / "gray.png")
    rgba = Image.fromarray(rgb).convert("RGBA")
    alpha = np.zeros((40, 50), np.uint8)
    alpha[:, 25:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(folder / "rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray(np.asarray(Image.fromarray(rgb).convert("L"), np.uint16) * 257).save(folder / "gray16.png")
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=90)


def test_upscale_folder_handles_every_kind(tmp_path, elsr_ckpt):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    _make_images(src)
    res = CliRunner().invoke(main, ["upscale", str(src), "-o", str(dst), "--model", str(elsr_ckpt), "--tile", "16"])
    assert res.exit_code == 0, res.output
    expect = {"rgb.png": "RGB", "gray.png": "L", "rgba.png": "RGBA", "palette.png": "RGB", "gray16.png": "I;16",
              "photo.jpg": "RGB"}
    for name, mode in expect.items():
        with Image.open(dst / name) as im:
            assert im.size == (100, 80) and im.mode == mode, (name, im.mode)
            if name == "rgba.png":  # alpha is upscaled on its own and keeps its edge
                a = np.asarray(im)[..., 3]
                assert a[:, :46].max() <= 10 and a[:, 54:].min() >= 245
            if name == "gray16.png":  # full 16-bit depth survives, not 8-bit values scaled up
                assert np.asarray(im).max() > 255


@pytest.mark.parametrize("content,what", [(b"hello", "not an image"), (None, "corrupt or truncated")])
def test_bad_image_is_one_line_and_exit_2(tmp_path, elsr_ckpt, content, what):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content if content is not None else BABY.read_bytes()[:400])
    res = CliRunner().invoke(main, ["upscale", str(bad), "-o", str(tmp_path / "o.png"), "--model", str(elsr_ckpt)])
    assert res.exit_code == 2
    assert what in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_missing_input_and_bad_model(tmp_path, elsr_ckpt):
    r = CliRunner().invoke(main, ["upscale", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = CliRunner().invoke(main, ["upscale", str(BABY), "-o", str(tmp_path / "o.png"), "--model", "nonsense"])
    assert r.exit_code == 2 and "neither a built-in model" in r.output


def test_8k_image_stays_under_2gb(tmp_path, elsr_ckpt):
    """Peak RSS of a whole process upscaling a 7680x4320 image x2 (output 15360x8640)."""
    xx = (np.arange(7680, dtype=np.uint16) % 256).astype(np.uint8)[None, :].repeat(4320, 0)
    yy = (np.arange(4320, dtype=np.uint16) % 256).astype(np.uint8)[:, None].repeat(7680, 1)
    src = tmp_path / "8k.png"
    Image.fromarray(np.stack([xx, yy, xx ^ yy], -1)).save(src, compress_level=1)
    del xx, yy
    code = (
        "import re, sys, torch; torch.set_num_threads(2)\n"
        "from pathlib import Path\n"
        "from mobile_sr.models import load_model\n"
        "from mobile_sr.upscale import upscale_file\n"
        f"m = load_model({str(elsr_ckpt)!r})\n"
        f"upscale_file(m, 2, Path({str(src)!r}), Path({str(tmp_path / 'out.jpg')!r}), tile=512)\n"
        # VmHWM is this process's own peak; ru_maxrss would include the parent's from before exec.
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    peak_gb = int(out.stdout.split()[-1]) / 1024**2
    assert peak_gb < 2.0, f"peak RSS {peak_gb:.2f} GB"
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (15360, 8640)
