"""Turning user text into values, and errors into the one line the CLI prints."""

from __future__ import annotations


def first_line(text: object, limit: int = 300) -> str:
    """The first non-blank line of ``text`` (an exception's message, a tool's output), at most ``limit`` chars."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line[:limit]


def describe(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line`` of an exception, for errors from code we do not control (runtimes, converters)."""
    line = first_line(exc, limit)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def parse_size(text: str, lo: int = 1, hi: int = 4096, option: str = "--input-size") -> tuple[int, int]:
    """``HxW`` or ``N`` (square) -> (H, W), each side in ``lo..hi``; ValueError with one line otherwise."""
    parts = text.strip().lower().split("x")
    try:
        if len(parts) > 2:
            raise ValueError
        h, w = int(parts[0]), int(parts[-1])
    except ValueError:
        raise ValueError(f"{option} {text!r} is not HxW (e.g. 256x256) or N") from None
    if not (lo <= h <= hi and lo <= w <= hi):
        raise ValueError(f"{option} {h}x{w}: each side must be {lo}..{hi} pixels")
    return h, w
