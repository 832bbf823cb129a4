"""``mobile-sr video encode`` and ``video upscale`` end to end on real frames and a real codec: what lands on disk equals
the in-memory chain, audio and timestamps survive, and every bad input is one ``error:`` line with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mobile_sr.cli import main
from mobile_sr.data import video as V
from mobile_sr.data.images import read_rgb
from mobile_sr.inference import upscale_tiled
from mobile_sr.models import load_model
from mobile_sr.models.deploy import deploy

from .conftest import SHARED, audio_payload, write_clip

pytestmark = pytest.mark.extras("video")

CITY = SHARED / "video" / "vid4" / "city"
need_video = pytest.mark.skipif(not CITY.is_dir(), reason=f"needs ../shared/datasets/video ({CITY} is absent)")


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


def frame_folder(folder: Path, n: int = 4, w: int = 102, h: int = 70) -> Path:
    """``n`` crops of Vid4 city as PNG frames (102x70: not a multiple of 4, so x2 must crop to 100x68)."""
    folder.mkdir()
    for i, f in enumerate(V.load_frames(CITY, n)):
        Image.fromarray(f[:, 200 : 200 + h, 300 : 300 + w].permute(1, 2, 0).numpy()).save(folder / f"f{i:03d}.png")
    return folder


@need_video
def test_encode_then_upscale_to_frames_equals_the_in_memory_chain(tmp_path: Path) -> None:
    src = frame_folder(tmp_path / "hr")
    code, out, err = run("video", "encode", str(src), "-o", str(tmp_path / "lr.mp4"), "--crf", "30", "--no-progress")
    assert code == 0, err
    assert "102x70 (cropped to 100x68, a multiple of 4)" in out and "50x34, 4 frames" in out and "kbps video" in out
    lr = V.load_frames(tmp_path / "lr.mp4")
    assert len(lr) == 4 and tuple(lr[0].shape) == (3, 34, 50)
    code, out, err = run("video", "upscale", str(tmp_path / "lr.mp4"), "-o", str(tmp_path / "sr"), "--model", "elsr",
                         "--runtime", "torch", "--no-progress")
    assert code == 0, err
    assert "100x68, 4 frames (PNG frames)" in out and "frames/s" in out
    written = sorted((tmp_path / "sr").iterdir())
    assert [p.name for p in written] == [f"frame_{i:05d}.png" for i in range(1, 5)]
    elsr = deploy(load_model("elsr", 2)).upscaler
    for frame, path in zip(lr, written, strict=True):
        want = upscale_tiled(elsr, frame.float() / 255, 2, out_dtype=torch.uint8)
        assert torch.equal((read_rgb(path) * 255).round().to(torch.uint8), want)


@need_video
def test_learned_downscaler_and_refusals(tmp_path: Path, pair_ckpt: Path) -> None:
    src = frame_folder(tmp_path / "hr", n=2, w=64, h=64)
    code, out, err = run("video", "encode", str(src), "-o", str(tmp_path / "learned.mkv"), "--downscaler", str(pair_ckpt),
                         "--crf", "0", "--preset", "ultrafast", "--no-progress")
    assert code == 0, err
    code, _, err = run("video", "encode", str(src), "-o", str(tmp_path / "bicubic.mkv"), "--crf", "0",
                       "--preset", "ultrafast", "--no-progress")
    assert code == 0, err
    learned, bicubic = V.load_frames(tmp_path / "learned.mkv"), V.load_frames(tmp_path / "bicubic.mkv")
    assert learned[0].shape == bicubic[0].shape == (3, 32, 32)
    assert not torch.equal(learned[0], bicubic[0])  # the pair's own downscaler ran, not bicubic
    code, _, err = run("video", "encode", str(src), "-o", str(tmp_path / "x.mp4"), "--downscaler", "elsr")
    assert code == 2 and err.startswith("error: --downscaler elsr: elsr is an upscaler") and err.count("\n") == 1


@need_video
def test_upscale_to_video_keeps_audio_timestamps_and_odd_frames(tmp_path: Path) -> None:
    frames = [f[:, :, :].contiguous() for f in V.load_frames(CITY, 5)]
    lr = [f[:, 100:136, 200:246].contiguous() for f in frames]  # 46x36
    src = tmp_path / "clip.mp4"
    write_clip(src, lr, pts=[0, 1, 2, 5, 6], audio_seconds=0.4)
    code, out, err = run("video", "upscale", str(src), "-o", str(tmp_path / "sr.mp4"), "--model", "elsr", "--runtime",
                         "torch", "--crf", "20", "--no-progress")
    assert code == 0, err
    assert "92x72, 5 frames (h264 crf 20" in out and "audio copied" in out
    assert audio_payload(tmp_path / "sr.mp4") == audio_payload(src)
    import av

    with av.open(str(tmp_path / "sr.mp4")) as c:
        assert [round(float(f.pts * f.time_base) * 25) for f in c.decode(video=0)] == [0, 1, 2, 5, 6]
    # An odd LR frame (35x25) upscales to PNG frames whole and to a video of even sides.
    odd = tmp_path / "odd"
    odd.mkdir()
    for i in range(2):
        Image.fromarray(lr[i][:, :25, :35].permute(1, 2, 0).numpy()).save(odd / f"{i}.png")
    code, out, err = run("video", "upscale", str(odd), "-o", str(tmp_path / "odd.mp4"), "--model", "elsr", "--runtime",
                         "torch", "--no-progress")
    assert code == 0 and "70x50, 2 frames" in out, err


@need_video
def test_bad_inputs_are_one_line_exit_2_and_write_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    audio_only = tmp_path / "talk.m4a"
    write_clip(tmp_path / "v.mp4", [torch.zeros(3, 16, 16, dtype=torch.uint8)], audio_seconds=0.2)
    import av

    with av.open(str(tmp_path / "v.mp4")) as c, av.open(str(audio_only), "w") as out:  # its audio, no video
        a = out.add_stream_from_template(c.streams.audio[0])
        for p in c.demux(audio=0):
            if p.size:
                p.stream = a
                out.mux(p)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (64, 64)).save(mixed / "a.png")
    Image.new("RGB", (48, 64)).save(mixed / "b.png")
    (tmp_path / "corrupt").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "corrupt" / "a.png")
    (tmp_path / "corrupt" / "b.png").write_bytes(b"\x89PNG not really")
    good = frame_folder(tmp_path / "hr", n=1, w=32, h=32)
    out = str(tmp_path / "out.mp4")
    cases = [
        (["encode", str(tmp_path / "missing.mp4"), "-o", out], "no such file"),
        (["encode", str(empty), "-o", out], "empty file (0 bytes)"),
        (["upscale", str(empty), "-o", out, "--model", "elsr"], "empty file (0 bytes)"),
        (["encode", str(audio_only), "-o", out], "no video stream (it has audio)"),
        (["upscale", str(audio_only), "-o", out, "--model", "elsr"], "no video stream"),
        (["encode", str(mixed), "-o", out], "mixed sizes"),
        (["upscale", str(tmp_path / "corrupt"), "-o", out, "--model", "elsr", "--runtime", "torch"], "b.png"),
        (["encode", str(good), "-o", out, "--codec", "vp8"], "unknown codec 'vp8'"),
        (["upscale", str(good), "-o", out, "--codec", "mpeg2"], "unknown codec 'mpeg2'"),
        (["encode", str(good), "-o", out, "--crf", "30", "--bitrate", "500k"], "give one"),
        (["encode", str(good), "-o", out, "--bitrate", "fast"], "--bitrate 'fast'"),
        (["encode", str(good), "-o", str(tmp_path / "lr.avi")], "name it .mp4, .mkv or .mov"),
        (["upscale", str(good), "-o", str(tmp_path / "sr.gif")], "a folder of PNG frames"),
        (["encode", str(good), "-o", str(tmp_path / "no" / "such" / "dir.mp4")], "does not exist"),
    ]
    for args, why in cases:
        code, stdout, err = run("video", *args)
        assert code == 2, (args, stdout, err)
        assert err.startswith("error: ") and why in err and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "lr.avi").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
