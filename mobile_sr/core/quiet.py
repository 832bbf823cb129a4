"""Keep what converters and runtimes print out of our output, unless ``--verbose`` asks for it.

TensorFlow, absl, torchao and ExecuTorch write notices straight to file descriptors 1 and 2 from C++
(``cudart_stub.cc``, "All log messages before absl::InitializeLog()", ``[cpuinfo_utils.cpp:...]``),
where no Python logging setting reaches them. Inside :func:`native_quiet` both descriptors point at a
temporary file; with verbose on, what was caught is written to stderr afterwards. Nothing of ours is
printed inside such a block: errors travel as exceptions and are printed after it.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_state = {"verbose": False, "depth": 0}


def set_verbose(on: bool) -> None:
    _state["verbose"] = on


@contextmanager
def native_quiet() -> Iterator[None]:
    """Catch everything written to fds 1 and 2 during the block (nested blocks share the outer one)."""
    if _state["depth"]:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    sink = tempfile.TemporaryFile()
    # Some bindings (ExecuTorch's pybind11 logging) write C++ notices through Python's sys.stdout/sys.stderr
    # instead of the descriptors: catch those too.
    streams, text = (sys.stdout, sys.stderr), io.StringIO()
    _state["depth"] += 1
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        sys.stdout = sys.stderr = text
        yield
    finally:
        sys.stdout, sys.stderr = streams
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        _state["depth"] -= 1
        if _state["verbose"]:
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace") + text.getvalue())
            sys.stderr.flush()
        sink.close()
