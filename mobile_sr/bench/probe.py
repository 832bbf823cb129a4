"""Open artifacts in their runtime in a child process before this process touches them.

An artifact is a file we did not necessarily make: a corrupt or hostile ``.pte`` makes the ExecuTorch
loader call C++ ``terminate`` (SIGABRT), which no ``except`` can catch, and every other artifact of the
run and its JSON would go down with it. So a child loads each file, runs it once on its own declared
input, and prints what the file says its tensors are; the parent then checks that against the sidecar
(a sidecar copied from another export must not be believed). Only then is a file timed in-process.

One child checks all the files of a run (importing the runtimes once, not once per file); when it dies on
a file, that file is marked and a new child carries on with the rest.

    python -m mobile_sr.bench.probe FORMAT PATH [FORMAT PATH ...]   # one JSON line per file
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core.quiet import native_quiet
from ..core.text import describe, first_line

PROBE_TIMEOUT_S = 300.0  # per file


@dataclass(frozen=True)
class Probed:
    """What the child found: the file's tensors, or the one line saying why it could not open or run it."""

    tensors: dict | None
    error: str | None = None


def tensors(fmt: str, path: Path) -> dict:
    """{"inputs": [...], "outputs": [...]} as the runtime reads them from the file, after one inference."""
    import numpy as np

    from ..export import FORMATS

    loaded = FORMATS[fmt].load(path, 1)
    if loaded.run is not None:
        t = loaded.inputs[0]
        h, w = (t.shape[1], t.shape[2]) if t.layout == "NHWC" else (t.shape[2], t.shape[3])
        loaded.run(np.zeros((1, 3, h, w), dtype=np.float32))
    return {k: [{"shape": [int(d) for d in t.shape], "layout": t.layout, "dtype": t.dtype} for t in ts]
            for k, ts in (("inputs", loaded.inputs), ("outputs", loaded.outputs))}


def probe_all(files: list[tuple[str, Path]]) -> dict[Path, Probed]:
    """Every (format, path) opened and run once in child processes."""
    found: dict[Path, Probed] = {}
    todo = list(files)
    while todo:
        cmd = [sys.executable, "-m", "mobile_sr.bench.probe", *(str(x) for item in todo for x in item)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S * len(todo))
            code, out = r.returncode, r.stdout
        except subprocess.TimeoutExpired as exc:
            code, out = None, (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        for line in out.splitlines():
            if line.startswith("{"):
                doc = json.loads(line)
                found[Path(doc["path"])] = Probed(doc.get("tensors"), doc.get("error"))
        todo = [(fmt, path) for fmt, path in todo if path not in found]
        if not todo:
            break
        fmt, culprit = todo.pop(0)  # the child stopped on the first file it did not report
        if code is None:
            why = f"the {fmt} runtime did not finish loading and running it in {PROBE_TIMEOUT_S:.0f} s"
        elif code < 0:
            why = f"the {fmt} runtime crashed loading it ({signal.Signals(-code).name}): a corrupt or foreign file"
        else:
            why = f"the {fmt} runtime failed on it (exit {code}: {first_line(r.stderr) or 'no output'})"
        found[culprit] = Probed(None, why)
    return found


def mismatch(sidecar_tensors: dict, file_tensors: dict) -> str | None:
    """Where the sidecar's tensors disagree with the file's, or None."""
    for kind in ("inputs", "outputs"):
        a, b = sidecar_tensors[kind][0], file_tensors[kind][0]
        for key in ("shape", "layout", "dtype"):
            if a[key] != b[key]:
                return f"its sidecar says {kind[:-1]} {key} {a[key]}, the file has {b[key]}"
    return None


def main() -> None:
    args = sys.argv[1:]
    for fmt, path in zip(args[::2], args[1::2], strict=True):
        try:
            with native_quiet():  # the runtimes' notices are not our output
                doc = {"path": path, "tensors": tensors(fmt, Path(path))}
        except Exception as exc:  # noqa: BLE001 - a foreign file may raise anything from its runtime
            doc = {"path": path, "error": f"the {fmt} runtime cannot load it ({describe(exc, 200)})"}
        print(json.dumps(doc), flush=True)  # flushed: a crash on the next file must not lose this line


if __name__ == "__main__":
    main()
