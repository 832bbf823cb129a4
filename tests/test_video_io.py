"""Video I/O (``mobile_sr.data.video``) on real codecs: frames in and out, bit counts, timestamps, audio, and every
bad input refused with one line before anything is written."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from mobile_sr.data import video as V
from mobile_sr.metrics import psnr

from .conftest import SHARED, audio_payload, write_clip

pytestmark = pytest.mark.extras("video")

VID4 = SHARED / "video" / "vid4"
CLIPS = SHARED / "video" / "clips"
need_video = pytest.mark.skipif(not VID4.is_dir(), reason=f"needs ../shared/datasets/video ({VID4} is absent)")


def city(n: int = 4, size: int = 64) -> list[torch.Tensor]:
    return [f[:, 100 : 100 + size, 200 : 200 + size].contiguous() for f in V.load_frames(VID4 / "city", n)]


def video_pts(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


@need_video
def test_frame_folder_and_real_clip_read() -> None:
    info = V.probe(VID4 / "city")
    assert (info.width, info.height, info.frames, info.folder, info.fps) == (704, 576, 34, True, 25)
    frames = V.load_frames(VID4 / "walk", 3)
    assert len(frames) == 3 and frames[0].dtype == torch.uint8 and tuple(frames[0].shape) == (3, 480, 720)
    clip = V.probe(CLIPS / "04_coffee.mp4")
    assert (clip.width, clip.height, clip.codec, clip.audio) == (1280, 720, "h264", True)
    assert clip.fps == Fraction(30000, 1001) and clip.frames == 287
    first = next(V.read_frames(CLIPS / "bedroom.mp4"))
    assert tuple(first.shape) == (3, 540, 960) and 20 < first.float().mean() < 235  # a real picture, not black


@need_video
def test_roundtrip_is_deterministic_and_rate_follows_crf() -> None:
    frames = city(4)
    dec, bits = V.roundtrip(frames, crf=28, threads=1)
    again, bits2 = V.roundtrip(frames, crf=28, threads=1)
    assert bits == bits2 and all(torch.equal(a, b) for a, b in zip(dec, again, strict=True))
    assert len(dec) == 4 and dec[0].shape == frames[0].shape and dec[0].dtype == torch.uint8
    q = [psnr(d.float() / 255, f.float() / 255, crop_border=0, test_y_channel=True) for d, f in zip(dec, frames, strict=True)]
    assert 25 < min(q) and max(q) < 60  # lossy, but the picture
    _, fewer = V.roundtrip(frames, crf=40, threads=1)
    assert fewer < bits  # a higher CRF spends fewer bits
    data, counted = V.encode_bytes(frames, crf=28, threads=1)
    assert counted == bits and counted < 8 * len(data)  # the stream's bits, without the mp4's own
    assert V.kbps_of(bits, 4) == pytest.approx(bits / (4 / 25) / 1000)


@need_video
@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_other_codecs_roundtrip(codec: str) -> None:
    frames = city(3)
    dec, bits = V.roundtrip(frames, codec=codec, crf=30)
    assert len(dec) == 3 and bits > 0 and dec[0].shape == frames[0].shape


@need_video
def test_encoder_refuses_odd_sides_and_unknown_codec() -> None:
    with pytest.raises(V.VideoError, match="even sides"):
        V.encode_bytes([city(1)[0][:, :63]])
    with pytest.raises(V.VideoError, match="unknown codec 'vp8'"):
        V.encode_bytes(city(1), codec="vp8")


@need_video
def test_transcode_keeps_timestamps_and_copies_audio(tmp_path: Path) -> None:
    src = tmp_path / "vfr.mp4"
    pts = [0, 1, 3, 4, 8, 9]  # a variable frame rate: gaps of 1, 2 and 4 ticks of 1/25 s
    write_clip(src, city(6), pts=pts, audio_seconds=0.5)
    dst = tmp_path / "half.mp4"
    res = V.transcode(src, dst, lambda x: x[:, ::2, ::2].contiguous(), crf=30, preset="ultrafast")
    assert res.frames == 6 and res.out_size == (32, 32) and res.audio_packets == len(audio_payload(src)) > 0
    assert video_pts(dst) == pytest.approx([p / 25 for p in pts], abs=1e-3)
    assert audio_payload(dst) == audio_payload(src)  # untouched, byte for byte
    assert [tuple(f.shape) for f in V.read_frames(dst)] == [(3, 32, 32)] * 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


@need_video
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    audio_only = tmp_path / "audio.m4a"
    _audio_file(audio_only)
    changing = tmp_path / "changing.h264"  # raw H.264: 64x64, then 96x96 in mid-stream
    a, b = tmp_path / "a.h264", tmp_path / "b.h264"
    write_clip(a, city(3, 64), fmt="h264")
    write_clip(b, city(3, 96), fmt="h264")
    changing.write_bytes(a.read_bytes() + b.read_bytes())
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    from PIL import Image

    Image.new("RGB", (64, 64)).save(mixed / "f1.png")
    Image.new("RGB", (64, 48)).save(mixed / "f2.png")
    cases = {
        tmp_path / "missing.mp4": "no such file",
        empty: "empty file",
        junk: "not a video file",
        audio_only: "no video stream",
        changing: "resolution changes in mid-stream at frame 3",
        mixed: "mixed sizes",
    }
    for src, why in cases.items():
        dst = tmp_path / f"out-{src.stem}.mp4"
        with pytest.raises(V.VideoError, match=why) as err:
            V.transcode(src, dst, lambda x: x, preset="ultrafast")
        assert "\n" not in str(err.value)
        assert not dst.exists()
        with pytest.raises(V.VideoError, match=why):  # reading alone (upscale, compare) says the same
            list(V.iter_video(src))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _audio_file(path: Path) -> None:
    import av

    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=48000)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        f.sample_rate, f.pts = 48000, 0
        for p in list(a.encode(f)) + list(a.encode()):
            out.mux(p)


@need_video
def test_lossless_roundtrip_has_no_colour_bias() -> None:
    """x264 at CRF 0 is lossless in YUV: what comes back differs from the frames only by 4:2:0 chroma and rounding,
    not by a shift (swscale's direct yuv420p -> rgb24 path darkens every channel by ~1.2 levels)."""
    frames = city(2, 128)
    dec, _ = V.roundtrip(frames, crf=0, threads=1)
    for d, f in zip(dec, frames, strict=True):
        assert abs((d.float() - f.float()).mean()) < 0.25
        assert psnr(d.float() / 255, f.float() / 255, crop_border=0, test_y_channel=True) > 50
