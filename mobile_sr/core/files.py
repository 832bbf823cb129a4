"""Files that are either there whole or not at all, and the checks that go before writing them.

Every output of this package (images, JSON reports, checkpoints, weights, exported artifacts) is
written to a temporary name beside its destination and renamed into place (``os.replace``, atomic
on one file system), so a crash, a kill or a full disk leaves the old file or the new one, never a
half-written file under the name a user asked for.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None] | bytes, *, fsync: bool = False) -> None:
    """Write ``write`` (bytes, or a function of the open binary file) to ``path`` through a temporary file.

    The file gets the mode a plain ``open()`` would give it (0666 less the umask), not ``mkstemp``'s 0600.
    ``fsync`` flushes it to disk before the rename (checkpoints: a power cut keeps the old one or the new one).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(write, bytes):
                f.write(write)
            else:
                write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, text.encode())


@contextmanager
def staging(folder: str | os.PathLike, name: str) -> Iterator[Path]:
    """A hidden temporary folder inside ``folder`` (so a rename out of it stays on one file system), removed
    afterwards whatever happens. Build several files in it, then :func:`place` each one."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def place(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` onto ``dst``. An existing folder (an ``.mlpackage``, a run folder) is swapped out first,
    since a rename cannot replace a non-empty folder, and removed after the new one is in place."""
    src, dst = Path(src), Path(dst)
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".old-{dst.name}.{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """``<artifact>.json``: the file that describes an exported artifact (``model.tflite.json``)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def check_writable_dir(folder: str | os.PathLike, what: str | None = None) -> None:
    """Raise OSError with one plain line unless files can be created in ``folder``: checked before minutes of
    work, not after. ``what`` names the folder ("run folder"); without it the line reads "its folder ..."."""
    folder = Path(folder)
    head = f"{folder}: the {what}" if what else f"its folder {folder}"
    if not folder.is_dir():
        raise FileNotFoundError(f"{head} does not exist")
    try:  # a real file, not os.access: root passes access checks even on a read-only mount
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(f"{head} is not writable ({exc.strerror or exc})") from None
