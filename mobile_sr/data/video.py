"""Video in and out: frames from a video file or a folder of frames, and encoding through PyAV's codecs.

Every consumer (``video encode`` on the server, ``video upscale`` on the phone's side, the rate-distortion
comparison, fine-tuning on a video's own frames) reads and writes video here, so they all see the same
frames, the same colour conversion and the same bit counts:

- frames are ``(3, H, W)`` uint8 RGB tensors, streamed one at a time (a 720p clip never sits in RAM whole);
- colour goes RGB -> yuv420p -> RGB through swscale (BT.601, limited range), which is what the encoders take
  and what a player shows; decoding goes through yuv444p, without the ~1-level bias of swscale's direct path;
- a rate is the bits of the video stream's packets, not the file: the container's overhead (and any audio)
  is not what a codec comparison measures;
- x264 (PyAV's wheel) is not bit-exact from one encode to the next, even with one thread and the same yuv420p
  input: Vid4 city's 352x288 LR at CRF 40 gave 19,608, 19,696 or 19,848 bits in repeated encodes in one process
  (2026-12-04). Small crops (the tests') have come out exact; a rate-distortion point carries that ~1.5% noise.

yuv420p stores chroma at half resolution, so the encoder takes only even sides; callers crop (and say so),
this module refuses odd ones. Everything a user can get wrong (an unreadable or empty file, a file without a
video stream, a resolution change in mid-stream, a frame folder of mixed sizes, an unknown codec) is a
:class:`VideoError`: one line, raised before anything is written under the output's name.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..core.files import staging
from .images import IMAGE_EXTENSIONS, ImageError, list_images, read_rgb

ENCODERS = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")  # containers ``video encode/upscale`` write (mp4 by default)
DEFAULT_FPS = Fraction(25)  # a frame folder has no clock; Vid4 is 25 fps
PRESET = "medium"


class VideoError(ValueError):
    """A video input or request that cannot be used (one line, for the CLI): nothing has been written."""


def _av():  # noqa: ANN202 - the module, imported late: ``av`` is the optional ``video`` extra
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV: pip install 'mobile-sr[video]'") from None
    return av


def check_codec(codec: str) -> str:
    """The encoder behind a codec name (``h264`` -> ``libx264``); VideoError for a name we do not encode."""
    try:
        return ENCODERS[codec.lower()]
    except KeyError:
        raise VideoError(f"unknown codec {codec!r} (supported: {', '.join(ENCODERS)})") from None


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int | None  # from the container's header (None when it does not say); a folder's count is exact
    codec: str | None  # the video stream's codec; None for a frame folder
    audio: bool
    folder: bool

    def describe(self) -> str:
        n = f"{self.frames} frames" if self.frames is not None else "frames: not in the header"
        what = "frames folder" if self.folder else f"{self.codec}"
        return f"{self.width}x{self.height} {what}, {float(self.fps):.3g} fps, {n}" + (", audio" if self.audio else "")


def _frame_paths(folder: Path) -> list[Path]:
    paths = list_images(folder)
    if not paths:
        raise VideoError(f"{folder}: no frames ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return paths


@contextmanager
def _open_input(src: Path):  # noqa: ANN202 - yields an av InputContainer
    """Open a video file for reading, turning every way it can fail into one VideoError line."""
    av = _av()
    if not src.exists():
        raise VideoError(f"{src}: no such file or folder")
    if src.is_file() and src.stat().st_size == 0:
        raise VideoError(f"{src}: empty file (0 bytes), not a video")
    try:
        container = av.open(str(src))
    except PermissionError:
        raise VideoError(f"{src}: not readable (permission denied)") from None
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"{src}: not a video file PyAV can read ({_reason(exc)})") from None
    try:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
            raise VideoError(f"{src}: no video stream (it has {kinds})")
        yield container
    finally:
        container.close()


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _fps(stream) -> Fraction:  # noqa: ANN001 - an av VideoStream
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else DEFAULT_FPS


def probe(src: Path) -> VideoInfo:
    """Size, frame rate and frame count of a video file or a frame folder, from headers (or the first frame)."""
    src = Path(src)
    if src.is_dir():
        paths = _frame_paths(src)
        first = _read_frame_file(paths[0])
        return VideoInfo(first.shape[2], first.shape[1], DEFAULT_FPS, len(paths), None, False, True)
    with _open_input(src) as c:
        v = c.streams.video[0]
        w, h = v.codec_context.width, v.codec_context.height
        if not w or not h:
            raise VideoError(f"{src}: its video stream has no frame size (damaged header)")
        return VideoInfo(w, h, _fps(v), v.frames or None, v.codec_context.name, bool(c.streams.audio), False)


def _read_frame_file(path: Path) -> torch.Tensor:
    try:
        return read_rgb(path).mul(255).round().to(torch.uint8)
    except ImageError as exc:
        raise VideoError(f"frame {exc}") from None


def _to_tensor(frame) -> torch.Tensor:  # noqa: ANN001 - an av VideoFrame
    """RGB of a decoded frame. yuv420p goes to rgb24 through yuv444p: swscale's direct path darkens every
    channel by ~1.2 levels on average (Vid4 city at CRF 0: Y-PSNR 46.6 dB direct, 57.9 through yuv444p)."""
    if frame.format.name != "rgb24":
        frame = frame.reformat(format="yuv444p") if frame.format.name.startswith("yuv4") else frame
    return torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).contiguous()


@dataclass
class Frame:
    """One decoded frame and when it is shown: ``pts`` in ``time_base`` units (None for a frame folder)."""

    rgb: torch.Tensor  # (3, H, W) uint8
    pts: int | None
    time_base: Fraction | None


def _one_size(src: Path, size: tuple[int, int] | None, frame, n: int) -> tuple[int, int]:  # noqa: ANN001
    """The stream's frame size: the first frame's; VideoError when frame ``n`` has another (every consumer, an
    encoder or a fixed-size artifact, needs one size)."""
    if size is not None and (frame.width, frame.height) != size:
        raise VideoError(f"{src}: the resolution changes in mid-stream at frame {n} ({size[0]}x{size[1]} "
                         f"-> {frame.width}x{frame.height}); split the video where it changes")
    return (frame.width, frame.height)


def iter_video(src: Path, limit: int | None = None) -> Iterator[Frame]:
    """Frames of a video file or frame folder with their timestamps, one at a time; VideoError when the size
    changes in mid-stream (a file) or between files (a folder): every consumer needs one frame size."""
    src = Path(src)
    if src.is_dir():
        size = None
        for i, path in enumerate(_frame_paths(src)[:limit]):
            rgb = _read_frame_file(path)
            if size is None:
                size = rgb.shape[1:]
            elif rgb.shape[1:] != size:
                raise VideoError(f"{src}: frames of mixed sizes ({path.name} is {rgb.shape[2]}x{rgb.shape[1]}, "
                                 f"the first frame {size[1]}x{size[0]}); every frame must have one size")
            yield Frame(rgb, i, 1 / DEFAULT_FPS)
        return
    av = _av()
    with _open_input(src) as c:
        stream = c.streams.video[0]
        size, n = None, 0
        try:
            for frame in c.decode(stream):
                size = _one_size(src, size, frame, n)
                yield Frame(_to_tensor(frame), frame.pts, frame.time_base)
                n += 1
                if limit is not None and n >= limit:
                    return
        except av.FFmpegError as exc:
            raise VideoError(f"{src}: cannot decode frame {n} ({_reason(exc)})") from None
        if n == 0:
            raise VideoError(f"{src}: its video stream has no decodable frames")


def read_frames(src: Path, limit: int | None = None) -> Iterator[torch.Tensor]:
    """The frames of a video file or frame folder as (3, H, W) uint8 tensors, streaming."""
    for frame in iter_video(src, limit):
        yield frame.rgb


def load_frames(src: Path, limit: int | None = None) -> list[torch.Tensor]:
    """:func:`read_frames` as a list (short clips: Vid4, tests)."""
    return list(read_frames(src, limit))


def even_crop(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """``hr`` cropped (bottom/right) to a multiple of ``2 * scale``, so its LR has the even sides yuv420p needs."""
    m = 2 * scale
    h, w = hr.shape[-2:]
    return hr[..., : h // m * m, : w // m * m]


def _check_even(rgb: torch.Tensor) -> None:
    h, w = rgb.shape[-2:]
    if h % 2 or w % 2:
        raise VideoError(f"a {w}x{h} frame cannot be encoded: yuv420p needs even sides (crop a row or column)")


def _av_frame(rgb: torch.Tensor):  # noqa: ANN202
    return _av().VideoFrame.from_ndarray(np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()), format="rgb24")


def _add_encoder(container, codec: str, width: int, height: int, fps: Fraction, crf: int | None,  # noqa: ANN001
                 kbps: float | None, preset: str, time_base: Fraction | None = None, threads: int = 0):  # noqa: ANN202
    if crf is not None and kbps is not None:
        raise VideoError("give a CRF or a bitrate, not both")
    name = check_codec(codec)
    options = {"preset": str(preset)} if name != "libsvtav1" else {"preset": "8"}
    if crf is not None:
        options["crf"] = str(crf)
    if name == "libx264":
        options["threads"] = str(threads)
    if name == "libx265":  # x265 and SVT-AV1 print their banners to stderr themselves, not through FFmpeg's log
        options["x265-params"] = "log-level=error"
    os.environ.setdefault("SVT_LOG", "1")  # errors only
    stream = container.add_stream(name, rate=fps, options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = time_base or 1 / fps
    # The encoder counts in the input's own clock, so a variable frame rate's timestamps are kept, not rounded to 1/fps.
    stream.codec_context.time_base = time_base or 1 / fps
    if kbps is not None:
        stream.bit_rate = int(kbps * 1000)
    return stream


def encode_bytes(frames: Iterable[torch.Tensor], codec: str = "h264", crf: int | None = None, kbps: float | None = None,
                 fps: Fraction = DEFAULT_FPS, preset: str = PRESET, threads: int = 0) -> tuple[bytes, int]:
    """Encode frames at a constant frame rate into an mp4 in memory: (the file, the bits of the video packets)."""
    av = _av()
    fps = Fraction(fps)
    buf = io.BytesIO()
    bits = 0
    with av.open(buf, mode="w", format="mp4") as out:
        stream = None
        for i, rgb in enumerate(frames):
            _check_even(rgb)
            if stream is None:
                stream = _add_encoder(out, codec, rgb.shape[2], rgb.shape[1], fps, crf, kbps, preset, threads=threads)
            elif (rgb.shape[2], rgb.shape[1]) != (stream.width, stream.height):
                raise VideoError(f"frame {i} is {rgb.shape[2]}x{rgb.shape[1]}, the first {stream.width}x{stream.height}")
            frame = _av_frame(rgb)
            frame.pts = i
            frame.time_base = 1 / fps
            for packet in stream.encode(frame):
                bits += packet.size * 8
                out.mux(packet)
        if stream is None:
            raise VideoError("no frames to encode")
        for packet in stream.encode():
            bits += packet.size * 8
            out.mux(packet)
    return buf.getvalue(), bits


def decode_bytes(data: bytes) -> list[torch.Tensor]:
    """The frames of a video held in memory, as (3, H, W) uint8 tensors."""
    av = _av()
    with av.open(io.BytesIO(data)) as c:
        return [_to_tensor(f) for f in c.decode(video=0)]


def roundtrip(frames: list[torch.Tensor], codec: str = "h264", crf: int | None = None, kbps: float | None = None,
              fps: Fraction = DEFAULT_FPS, preset: str = PRESET, threads: int = 0) -> tuple[list[torch.Tensor], int]:
    """What the phone decodes from these frames sent at ``crf`` (or ``kbps``): (decoded frames, stream bits)."""
    data, bits = encode_bytes(frames, codec, crf, kbps, fps, preset, threads)
    decoded = decode_bytes(data)
    if len(decoded) != len(frames):
        raise VideoError(f"the {codec} round trip returned {len(decoded)} frames for {len(frames)}")
    return decoded, bits


def kbps_of(bits: int, frames: int, fps: Fraction = DEFAULT_FPS) -> float:
    """Average rate of ``bits`` spread over ``frames`` shown at ``fps``."""
    return bits / (frames / float(fps)) / 1000


@dataclass
class TranscodeResult:
    frames: int
    in_size: tuple[int, int]  # (W, H)
    out_size: tuple[int, int]
    video_bits: int
    seconds_of_video: float
    audio_packets: int

    @property
    def kbps(self) -> float:
        return self.video_bits / max(self.seconds_of_video, 1e-9) / 1000


Transform = Callable[[torch.Tensor], torch.Tensor]  # (3, H, W) uint8 -> (3, h, w) uint8


def transcode(src: Path, dst: Path, transform: Transform, codec: str = "h264", crf: int | None = None,
              kbps: float | None = None, preset: str = PRESET, fps: Fraction | None = None,
              on_frame: Callable[[], None] | None = None) -> TranscodeResult:
    """Decode ``src`` (a video file or frame folder), ``transform`` each frame, encode it into ``dst``.

    One frame is in flight at a time. Each frame keeps its timestamp, so a variable frame rate survives, and
    audio packets are copied untouched (no re-encoding). ``dst`` appears only when the whole video is written:
    it is built in a hidden staging folder beside it and renamed into place.
    """
    av = _av()
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"{dst}: the output video must be {', '.join(VIDEO_SUFFIXES)}")
    check_codec(codec)
    info = probe(src)  # refuses an unreadable file or one without video before any work
    with staging(dst.parent, dst.name) as tmp:
        part = tmp / dst.name
        with av.open(str(part), mode="w") as out:
            result = _transcode_into(av, out, src, info, transform, codec, crf, kbps, preset, fps, on_frame)
        os.replace(part, dst)
    return result


def _transcode_into(av, out, src: Path, info: VideoInfo, transform: Transform, codec: str,  # noqa: ANN001
                    crf: int | None, kbps: float | None, preset: str, fps: Fraction | None,
                    on_frame: Callable[[], None] | None) -> TranscodeResult:
    stream = None
    bits = frames = audio = 0
    first_pts = last_pts = None
    tb = None
    out_size = (0, 0)

    def put(rgb: torch.Tensor, pts: int | None, time_base: Fraction | None) -> None:
        nonlocal stream, bits, frames, first_pts, last_pts, tb, out_size
        y = transform(rgb)
        _check_even(y)
        if stream is None:
            rate = Fraction(fps) if fps is not None else info.fps
            tb = time_base if (time_base is not None and fps is None) else 1 / rate
            stream = _add_encoder(out, codec, y.shape[2], y.shape[1], rate, crf, kbps, preset, time_base=tb)
            out_size = (y.shape[2], y.shape[1])
        frame = _av_frame(y)
        frame.pts = pts if (pts is not None and fps is None and time_base is not None) else frames
        frame.time_base = tb
        first_pts = frame.pts if first_pts is None else first_pts
        last_pts = frame.pts
        for packet in stream.encode(frame):
            bits += packet.size * 8
            out.mux(packet)
        frames += 1
        if on_frame is not None:
            on_frame()

    if info.folder:
        for f in iter_video(src):
            put(f.rgb, f.pts, f.time_base)
    else:
        with _open_input(src) as c:
            vin = c.streams.video[0]
            ain = c.streams.audio[0] if c.streams.audio else None
            aout = None  # added right after the video stream, so that video is stream 0
            size, held = None, []
            try:
                for packet in c.demux(*[s for s in (vin, ain) if s is not None]):
                    if packet.stream.type == "audio":
                        if packet.dts is not None and packet.size:  # the demuxer's empty flush packet is not audio
                            held.append(packet)  # muxed once the video stream exists: the header needs both
                            if stream is not None:
                                aout = aout or out.add_stream_from_template(ain)
                                audio += _mux_all(out, held, aout)
                        continue
                    for frame in packet.decode():
                        size = _one_size(src, size, frame, frames)
                        put(_to_tensor(frame), frame.pts, frame.time_base)
            except av.FFmpegError as exc:  # a damaged input (our own muxing of valid frames does not fail)
                raise VideoError(f"{src}: cannot decode frame {frames} ({_reason(exc)})") from None
            if stream is not None and held:
                audio += _mux_all(out, held, aout or out.add_stream_from_template(ain))
    if stream is None:
        raise VideoError(f"{src}: its video stream has no decodable frames")
    for packet in stream.encode():
        bits += packet.size * 8
        out.mux(packet)
    frame_s = float(tb) * (last_pts - first_pts) + 1 / float(info.fps if fps is None else fps)
    return TranscodeResult(frames, (info.width, info.height), out_size, bits, frame_s, audio)


def _mux_all(out, packets: list, stream) -> int:  # noqa: ANN001
    """Mux held packets into ``stream`` and empty the list; returns how many."""
    for p in packets:
        p.stream = stream
        out.mux(p)
    n = len(packets)
    packets.clear()
    return n
