"""Upscaling files: tiling equals one pass, every image kind round-trips, bad files fail cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageOps

from mobile_sr.cli import main
from mobile_sr.data.images import read_rgb
from mobile_sr.inference import upscale_tiled
from mobile_sr.models import create_model
from mobile_sr.train.trainer import write_weights

from .conftest import REPO
from .image_files import blank_png, exif_with_orientation, read_png16, write_png16

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
    write_png16(folder / "rgb16.png", rgb.astype(np.uint16) * 257 + 77)  # +77: not 8-bit values scaled up


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
    out16, info = read_png16(dst / "rgb16.png")
    assert info["bitdepth"] == 16 and out16.shape == (80, 100, 3)
    assert (out16 % 257 != 0).mean() > 0.5  # 8-bit levels would all be multiples of 257


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


@pytest.mark.slow
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
        f"m = load_model({str(elsr_ckpt)!r}).module\n"
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


def _run(*args: str):
    return CliRunner().invoke(main, ["upscale", *args])


def _one_error_line(res, code: int, what: str) -> None:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert res.output.startswith("error: ") and what in res.output, res.output


def test_output_onto_an_input_is_refused(tmp_path, elsr_ckpt):
    """Same path, the input's folder as -o, the input folder itself (any spelling, or a symlink to it)."""
    src = tmp_path / "in"
    src.mkdir()
    Image.open(BABY).crop((0, 0, 20, 20)).save(src / "x.png")
    before = (src / "x.png").read_bytes()
    (tmp_path / "link").symlink_to(src)
    cases = [
        (src / "x.png", src / "x.png", "is the input file"),
        (src / "x.png", src, "is the input file"),
        (src / "x.png", tmp_path / "link" / "x.png", "is the input file"),
        (src, src, "is the input folder"),
        (src, src / ".", "is the input folder"),
        (src, tmp_path / "link", "is the input folder"),
    ]
    for inp, out, what in cases:
        _one_error_line(_run(str(inp), "-o", str(out), "--model", str(elsr_ckpt)), 2, what)
    assert (src / "x.png").read_bytes() == before and sorted(p.name for p in src.iterdir()) == ["x.png"]
    ok = _run(str(src / "x.png"), "-o", str(src / "x_x2.png"), "--model", str(elsr_ckpt))
    assert ok.exit_code == 0 and (src / "x_x2.png").exists()  # writing beside the input is fine


def test_bad_options_are_one_line(tmp_path, elsr_ckpt):
    out = str(tmp_path / "o.png")
    for opts, what in ((["--tile", "-3"], "--tile -3"), (["--overlap", "-1"], "--overlap -1"),
                       (["--tile", "16", "--overlap", "17"], "between 0 and --tile"),
                       (["--quality", "0"], "--quality 0"), (["--quality", "101"], "--quality 101")):
        _one_error_line(_run(str(BABY), "-o", out, "--model", str(elsr_ckpt), *opts), 2, what)
    _one_error_line(_run(str(BABY), "-o", str(tmp_path / "o.gif"), "--model", str(elsr_ckpt)), 2,
                    "unsupported output format .gif")
    _one_error_line(_run(str(BABY), "-o", str(tmp_path / "noext"), "--model", str(elsr_ckpt)), 2, "(no extension)")
    assert not list(tmp_path.iterdir())


def test_bomb_in_a_folder_is_one_line_and_the_rest_runs(tmp_path, elsr_ckpt):
    src = tmp_path / "in"
    src.mkdir()
    blank_png(src / "a_bomb.png", 60000, 60000, full=False)
    blank_png(src / "b_wide.png", 9000, 4000, full=False)
    frames = [Image.new("RGB", (8, 8), (i * 80, 0, 0)) for i in range(3)]
    frames[0].save(src / "c_anim.webp", save_all=True, append_images=frames[1:])
    Image.open(BABY).crop((0, 0, 20, 12)).save(src / "d_ok.png")
    res = CliRunner().invoke(main, ["upscale", str(src), "-o", str(tmp_path / "out"), "--model", str(elsr_ckpt)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines[:3]] == ["error"] * 3 and len(lines) == 4, res.output
    assert "a_bomb.png: declares over" in lines[0] and "9000x4000 (36.0 MP) is over the input limit" in lines[1]
    assert "has 3 frames" in lines[2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["d_ok.png"]


def test_output_limit_is_stated_up_front(tmp_path):
    """x4 of a 3000x3000 input (9 MP, under the input limit) would be 144 MP: refused before decoding."""
    torch.manual_seed(0)
    model = create_model("elsr", 4, pretrained=False)
    ckpt = tmp_path / "elsr4.safetensors"
    write_weights(model, {"model": "elsr", "scale": 4, "config": model.config()}, ckpt)
    blank_png(tmp_path / "big.png", 3000, 3000, full=False)  # truncated: only the header is ever read
    _one_error_line(_run(str(tmp_path / "big.png"), "-o", str(tmp_path / "o.png"), "--model", str(ckpt)), 2,
                    "3000x3000 at x4 would be 12000x12000 (144.0 MP), over the output limit of 132.7 MP")


@pytest.mark.slow
def test_13000px_png_refused_without_decoding(tmp_path, elsr_ckpt):
    """The 500 KB PNG of issue 12 that used to grow past 3.4 GB: refused from its header, RSS stays small."""
    big = blank_png(tmp_path / "big.png", 13000, 13000)
    assert big.stat().st_size < 600_000
    code = (
        "import re, sys\n"
        "from mobile_sr.cli import main\n"
        f"try: main(['upscale', {str(big)!r}, '-o', {str(tmp_path / 'o.png')!r}, '--model', {str(elsr_ckpt)!r}])\n"
        "except SystemExit as e: code = e.code\n"
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1), code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    peak_kb, exit_code = out.stdout.split()
    assert exit_code == "2" and "13000x13000 (169.0 MP) is over the input limit" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert int(peak_kb) < 1024**2, f"peak RSS {int(peak_kb) / 1024:.0f} MB"  # decoding would take > 2.5 GB
    assert not (tmp_path / "o.png").exists()


def test_exif_orientation_applied_and_tag_dropped(tmp_path, elsr_ckpt):
    """A phone JPEG stored sideways (orientation 6) comes out exactly as the upright image would."""
    x = np.asarray(Image.open(BABY).convert("RGB"))[:24, :40]
    Image.fromarray(x).save(tmp_path / "phone.jpg", quality=95, exif=exif_with_orientation(6))
    with Image.open(tmp_path / "phone.jpg") as im:
        ImageOps.exif_transpose(im).save(tmp_path / "upright.png")
    for name in ("phone.jpg", "upright.png"):
        res = _run(str(tmp_path / name), "-o", str(tmp_path / f"{name}.out.png"), "--model", str(elsr_ckpt))
        assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "phone.jpg.out.png") as a, Image.open(tmp_path / "upright.png.out.png") as b:
        assert a.size == (48, 80) and np.array_equal(np.asarray(a), np.asarray(b))
        assert a.getexif().get(0x0112) is None and a.getexif()[0x010F] == "TestCam"


def test_outputs_get_the_umask_mode(tmp_path, elsr_ckpt):
    old = os.umask(0o027)
    try:
        res = _run(str(BABY), "-o", str(tmp_path / "o.png"), "--model", str(elsr_ckpt))
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o640  # mkstemp alone would give 0o600


def test_unwritable_output_is_a_failed_run(tmp_path, elsr_ckpt):
    (tmp_path / "file").write_text("not a folder")
    _one_error_line(_run(str(BABY), "-o", str(tmp_path / "file" / "o.png"), "--model", str(elsr_ckpt)), 1,
                    "cannot write")
