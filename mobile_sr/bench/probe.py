"""Open an artifact in its runtime in a child process before this process touches it.

An artifact is a file we did not necessarily make: a corrupt or hostile ``.pte`` makes the ExecuTorch
loader call C++ ``terminate`` (SIGABRT), which no ``except`` can catch, and every other artifact of the
run and its JSON would go down with it. So the child loads the file, runs it once on its own declared
input, and prints what the file says its tensors are; the parent then checks that against the sidecar
(a sidecar copied from another export must not be believed). Only then is the file timed in-process.

    python -m mobile_sr.bench.probe FORMAT PATH   # prints one JSON line, or "error: ..." and exits 1
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from ..core.text import describe, first_line

PROBE_TIMEOUT_S = 300.0


class SidecarMismatch(RuntimeError):
    """The file's tensors are not those its sidecar declares."""


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


def probe(fmt: str, path: Path, timeout: float = PROBE_TIMEOUT_S) -> dict:
    """The file's tensors, read in a child process. RuntimeError with one line if the child fails or dies."""
    cmd = [sys.executable, "-m", "mobile_sr.bench.probe", fmt, str(path)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the {fmt} runtime did not finish loading and running it in {timeout:.0f} s") from None
    if r.returncode < 0:
        name = signal.Signals(-r.returncode).name
        raise RuntimeError(f"the {fmt} runtime crashed loading it ({name}): a corrupt or foreign file")
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        ours = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("error: ")]
        raise RuntimeError(ours[-1].removeprefix("error: ") if ours else
                           f"the {fmt} runtime failed to load it (exit {r.returncode}: "
                           f"{first_line(r.stderr) or 'no output'})")
    return json.loads(lines[-1])


def mismatch(sidecar_tensors: dict, file_tensors: dict) -> str | None:
    """Where the sidecar's tensors disagree with the file's, or None."""
    for kind in ("inputs", "outputs"):
        a, b = sidecar_tensors[kind][0], file_tensors[kind][0]
        for key in ("shape", "layout", "dtype"):
            if a[key] != b[key]:
                return f"its sidecar says {kind[:-1]} {key} {a[key]}, the file has {b[key]}"
    return None


def main() -> None:
    fmt, path = sys.argv[1], Path(sys.argv[2])
    try:
        doc = tensors(fmt, path)
    except Exception as exc:  # noqa: BLE001 - a foreign file may raise anything from its runtime
        print(f"error: the {fmt} runtime cannot load it ({describe(exc, 200)})")
        sys.exit(1)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
