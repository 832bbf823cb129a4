"""Weights on disk: a safetensors file with a JSON manifest beside it, written the same way by training,
``train/ship.py`` and ``search/ship.py``.

The manifest is the record the guide asks of every shipped model: the exact command, steps, wall time,
data, and the figures measured under the published protocol. :func:`write_weights` is the one writer;
:func:`rel`, :func:`hardware` and :func:`cpu_name` keep what the manifests (and benchmarks) say about paths and
machines the same everywhere.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from .files import atomic_write, atomic_write_text

PROTOCOL = "Y (BT.601), crop = scale, 8-bit output; published MATLAB LR images"


def write_weights(module: nn.Module, meta: dict, path: str | os.PathLike) -> Path:
    """``module``'s weights as safetensors at ``path`` and ``meta`` as ``path.json``, both written atomically
    (the weights first: a manifest never describes weights that are not there)."""
    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, save(state))
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    return path


def rel(path: str | os.PathLike) -> str:
    """Paths in a manifest are relative to where training ran, never machine-specific."""
    return os.path.relpath(path) if os.path.isabs(path) else str(path)


def cpu_name() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's processor string; None when neither says."""
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware(threads: int) -> str:
    """The machine line of a manifest."""
    return (f"{platform.machine()} CPU, torch {torch.__version__}, {threads} thread{'s' if threads != 1 else ''}, "
            "shared with other jobs")
