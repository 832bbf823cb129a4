"""Reading and writing image files: 16-bit colour, EXIF orientation, ICC, JPEG quality, size limits, frames."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from mobile_sr.data.calib import CalibError, load_calib
from mobile_sr.data.images import (
    MAX_INPUT_PIXELS,
    ImageError,
    LoadedImage,
    load_image,
    orient,
    save_image,
)

from .image_files import blank_png, exif_with_orientation, read_png16, write_png16


def _levels16(t: torch.Tensor) -> np.ndarray:
    return t.mul(65535).round().to(torch.int64).numpy().astype(np.uint16)


@pytest.mark.parametrize("planes", [3, 4, 2])
def test_16bit_png_keeps_every_bit(tmp_path, planes):
    """Values that are not multiples of 257 survive the read and the write: 8-bit scaled up would not."""
    rng = np.random.default_rng(planes)
    arr = rng.integers(0, 65536, (6, 9, planes), dtype=np.uint16)
    img = load_image(write_png16(tmp_path / "in.png", arr))
    assert img.sixteen_bit and img.grayscale == (planes == 2)
    colour = img.rgb[:1] if img.grayscale else img.rgb
    assert np.array_equal(_levels16(colour).transpose(1, 2, 0), arr[..., : 1 if planes == 2 else 3])
    if planes in (2, 4):
        assert np.array_equal(_levels16(img.alpha)[0], arr[..., -1])
    save_image(img, tmp_path / "out.png")
    back, info = read_png16(tmp_path / "out.png")
    assert info["bitdepth"] == 16 and np.array_equal(back, arr)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_exif_transpose(orientation):
    """The 16-bit path's own transposes give exactly what Pillow's exif_transpose gives."""
    x = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    im = Image.fromarray(x)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    ref = np.asarray(ImageOps.exif_transpose(im))
    got = orient(torch.from_numpy(x).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    assert got.shape == ref.shape and np.array_equal(got, ref)


def test_orientation_applied_on_read_8_and_16_bit(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    Image.fromarray(x).save(tmp_path / "o.png", exif=exif_with_orientation(6))
    img = load_image(tmp_path / "o.png")
    upright = np.rot90(x, -1)  # orientation 6: the camera was turned; rotate clockwise to view
    assert np.array_equal(_levels16(img.rgb).transpose(1, 2, 0) // 257, upright)
    tags = Image.Exif()
    tags.load(img.exif)
    assert 0x0112 not in tags and tags[0x010F] == "TestCam"

    x16 = x.astype(np.uint16) * 257 + 1
    write_png16(tmp_path / "o16.png", x16)
    raw = (tmp_path / "o16.png").read_bytes()
    data = exif_with_orientation(6).tobytes()[6:]
    exif_chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
    (tmp_path / "o16.png").write_bytes(raw[:33] + exif_chunk + raw[33:])  # right after IHDR
    img16 = load_image(tmp_path / "o16.png")
    assert img16.sixteen_bit and img16.rgb.shape == (3, 6, 4)
    assert np.array_equal(_levels16(img16.rgb).transpose(1, 2, 0), np.rot90(x16, -1))
    save_image(img16, tmp_path / "out16.png")
    with Image.open(tmp_path / "out16.png") as out:
        assert out.getexif().get(0x0112) is None and out.getexif()[0x010F] == "TestCam"


def test_icc_profile_kept_and_mismatched_one_dropped(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    x = np.full((4, 4, 3), 128, np.uint8)
    Image.fromarray(x).save(tmp_path / "srgb.jpg", icc_profile=srgb)
    Image.fromarray(x).save(tmp_path / "lab.png", icc_profile=lab)
    for src, dst in (("srgb.jpg", "a.png"), ("srgb.jpg", "a.jpg"), ("srgb.jpg", "a.webp")):
        save_image(load_image(tmp_path / src), tmp_path / dst)
        with Image.open(tmp_path / dst) as im:
            assert im.info.get("icc_profile") == srgb, dst
    img = load_image(tmp_path / "lab.png")  # a Lab profile does not describe RGB pixels
    assert img.icc is None
    x16 = np.full((3, 3, 3), 1000, np.uint16)
    img16 = load_image(write_png16(tmp_path / "x16.png", x16))
    img16.icc = srgb
    save_image(img16, tmp_path / "x16_out.png")
    with Image.open(tmp_path / "x16_out.png") as im:
        assert im.info.get("icc_profile") == srgb


def test_jpeg_written_at_the_stated_quality(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    img = LoadedImage(torch.from_numpy(x).permute(2, 0, 1).float() / 255, None, False, False)
    for q in (95, 60):
        save_image(img, tmp_path / f"q{q}.jpg", quality=q)
        Image.fromarray(x).save(tmp_path / f"ref{q}.jpg", quality=q, subsampling=0)
        assert (tmp_path / f"q{q}.jpg").read_bytes() == (tmp_path / f"ref{q}.jpg").read_bytes()
    save_image(img, tmp_path / "default.jpg")
    assert (tmp_path / "default.jpg").read_bytes() == (tmp_path / "q95.jpg").read_bytes()


def test_bomb_header_is_one_line_error(tmp_path):
    for w, h, what in ((60000, 60000, "decompression bomb"), (9000, 4000, "9000x4000 (36.0 MP)")):
        with pytest.raises(ImageError) as err:
            load_image(blank_png(tmp_path / f"{w}.png", w, h, full=False))
        msg = str(err.value)
        assert what in msg and "33.2 MP" in msg and "\n" not in msg, msg


@pytest.mark.slow
def test_exactly_8k_is_accepted(tmp_path):
    ok = blank_png(tmp_path / "ok.png", 7680, 4320)
    assert load_image(ok).rgb.shape == (3, 4320, 7680) and 7680 * 4320 == MAX_INPUT_PIXELS


def test_calib_bomb_is_a_calibration_error(tmp_path):
    blank_png(tmp_path / "a_bomb.png", 60000, 60000, full=False)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "b_ok.png")
    with pytest.raises(CalibError) as err:
        load_calib(tmp_path)
    assert "a_bomb.png" in str(err.value) and "decompression bomb" in str(err.value)
    assert "\n" not in str(err.value)


def test_animated_gif_refused(tmp_path):
    frames = [Image.new("RGB", (8, 8), (i * 80, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="has 3 frames"):
        load_image(tmp_path / "anim.gif")
    frames[0].save(tmp_path / "still.gif")
    assert load_image(tmp_path / "still.gif").rgb.shape == (3, 8, 8)
