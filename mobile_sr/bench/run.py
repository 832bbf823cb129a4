"""One bench run: every artifact on one device, the same way, into one results document.

An artifact that this device cannot run (Core ML off Apple, ONNX on a phone) is recorded as
``unsupported`` and the run goes on; one that should run and does not is ``failed`` with one line
saying why, and the run goes on; a device that stops answering (AdbError) ends the run.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..core.text import describe
from ..core.weights import cpu_name
from . import host
from .adb import Adb, AdbError, find_adb, select_device
from .artifact import Artifact
from .matmul import matmul_gmacs
from .probe import mismatch, probe_all
from .remote import BINARY_FORMATS, RunFailed, app_ready, install_apk, pick_binary, run_app, run_binary
from .report import document, record

ON_PHONE = {"binary": ("tflite", "executorch"), "app": ("tflite", "executorch")}


@dataclass
class AdbPlan:
    """How artifacts run on the phone: ``runner`` "binary" (with ``binaries``) or "app" (with ``backend``)."""

    adb: Adb
    runner: str
    binaries: list[Path]
    backend: str


def host_device() -> dict:
    """The device section for this machine (CPU name, machine type, OS, cores)."""
    return {"kind": "host", "serial": None, "manufacturer": None, "model": cpu_name(),
            "abi": platform.machine() or None, "os": platform.platform(), "sdk": None, "soc": None,
            "cpu_cores": os.cpu_count(), "thermal_start": None, "thermal_end": None}


def unsupported(artifact: Artifact, plan: AdbPlan | None) -> str | None:
    """Why this device cannot run the artifact's format at all, or None."""
    if plan is None:
        return host.NOT_ON_HOST.get(artifact.format)
    if artifact.format not in ON_PHONE[plan.runner]:
        return f"no Android {plan.runner} runner for {artifact.format} artifacts (TFLite and ExecuTorch only)"
    if plan.runner == "binary" and pick_binary(plan.binaries, artifact.format) is None:
        return (f"no --binary for {artifact.format}: pass {BINARY_FORMATS[artifact.format]} "
                "(a file name containing that name)")
    return None


def bench(artifacts: list[Artifact], *, plan: AdbPlan | None, threads: int, warmup: int, runs: int, psnr: bool,
          matmul_n: int = 2048, progress: bool = True) -> dict:
    """Benchmark every artifact; returns the results document (``results.schema.json``)."""
    device = host_device() if plan is None else plan.adb.describe()
    matmul = matmul_gmacs(threads, matmul_n) if plan is None else None
    per = max(warmup, 0) + runs
    # Before any timing. On a phone run the host opens the files only to score them (without --no-psnr).
    checks = host_checks(artifacts) if plan is None or psnr else {}
    results = []
    with tqdm(total=per * len(artifacts), unit="run", desc="bench", disable=None if progress else True,
              leave=False) as bar:
        for art in artifacts:
            start = bar.n
            bar.set_postfix_str(art.name[-40:])
            results.append(_one(art, plan, threads, warmup, runs, psnr, matmul, bar, checks.get(art.path)))
            bar.update(start + per - bar.n)
    if plan is not None:
        device["thermal_end"] = plan.adb.thermal()
    return document(device, matmul, _bicubic(artifacts, plan, threads, warmup, runs, psnr), results)


def _one(art: Artifact, plan: AdbPlan | None, threads: int, warmup: int, runs: int, psnr: bool,
         matmul: float | None, bar: tqdm, check: HostCheck | None) -> dict:
    """One artifact. ``check``: what opening it on this host found (None: no host runtime for it, or a checkpoint)."""
    runner = "host" if plan is None else plan.runner
    common = dict(runner=runner, threads=threads, warmup=warmup, runs=runs, matmul_gmacs=matmul)
    reason = unsupported(art, plan)
    if reason:
        return record(art, measurement=None, status="unsupported", error=reason, psnr=None, **common)
    if check is not None and check.mismatch:  # every figure derived from the sidecar would be wrong
        return record(art, measurement=None, status="failed", error=check.error, psnr=None, **common)
    if plan is None and check is not None and check.error:  # it crashed or failed in the child: it fails alone
        return record(art, measurement=None, status="failed", error=check.error, psnr=None, **common)
    try:
        if plan is None:
            m = host.measure(art, threads, warmup, runs, bar)
        elif plan.runner == "binary":
            binary = pick_binary(plan.binaries, art.format)
            assert binary is not None
            m = run_binary(plan.adb, art.path, art.format, binary, threads, warmup, runs)
        else:
            m, _ = run_app(plan.adb, art.path, plan.backend, threads, warmup, runs)
    except AdbError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken artifact may raise anything from its runtime
        return record(art, measurement=None, status="failed", error=_one_line(exc), psnr=None, **common)
    on_host = art.format == "pytorch" or (check is not None and check.error is None)
    if plan is not None and psnr and check is not None and check.error:  # the phone ran it; the host could not
        tqdm.write(f"warning: {art.name}: not opened on this host, so no Set5 PSNR ({check.error})", file=sys.stderr)
    quality = _psnr(art, threads) if psnr and on_host else None
    return record(art, measurement=m, status="ok", error=None, psnr=quality, **common)


@dataclass(frozen=True)
class HostCheck:
    """An exported file opened here in a child process (see :mod:`.probe`): ``error`` says why it failed to open,
    or (``mismatch``) where its tensors disagree with its sidecar."""

    error: str | None
    mismatch: bool = False


def host_checks(artifacts: list[Artifact]) -> dict[Path, HostCheck]:
    """Open every exported file whose runtime this host has, all in one child process, and compare it with its
    sidecar. Files without a host runtime (Core ML off macOS, a missing extra) and checkpoints are left out."""
    todo = []
    for art in artifacts:
        if art.format in host.HOST_FORMATS and art.format != "pytorch":
            try:
                host.preload(art.format)
            except host.RuntimeMissing:
                continue
            todo.append(art)
    found = probe_all([(a.format, a.path) for a in todo])
    out = {}
    for art in todo:
        got = found[art.path]
        problem = mismatch(art.tensors, got.tensors) if got.tensors is not None and art.tensors is not None else None
        out[art.path] = HostCheck(problem, mismatch=True) if problem else HostCheck(got.error)
    return out


def _one_line(exc: Exception) -> str:
    if isinstance(exc, (RunFailed, host.RuntimeMissing)):
        return str(exc)
    return describe(exc, 200)


def _psnr(art: Artifact, threads: int) -> float | None:
    """Set5 PSNR on the host, where the host has the artifact's runtime; None otherwise."""
    if art.format not in host.HOST_FORMATS:
        return None
    try:
        host.preload(art.format)
        return host.set5_psnr(art, threads)
    except host.RuntimeMissing:
        return None
    except Exception as exc:  # noqa: BLE001 - the timing stands; say why the quality figure is missing
        tqdm.write(f"warning: {art.name}: no Set5 PSNR ({_one_line(exc)})", file=sys.stderr)
        return None


def _bicubic(artifacts: list[Artifact], plan: AdbPlan | None, threads: int, warmup: int, runs: int,
             psnr: bool) -> list[dict]:
    """The bicubic reference per scale: Set5 PSNR, and on the host its latency at the same input size."""
    refs = []
    upscalers = [a for a in artifacts if a.role == "upscaler"]  # a downscaler's input is an HR tile
    for scale in sorted({a.scale for a in upscalers}):
        size = next(a.input_size for a in upscalers if a.scale == scale)
        latency = host.bicubic_latency(size, scale, threads, warmup, runs).median_ms if plan is None else None
        quality = host.bicubic_set5_psnr(scale) if psnr else None
        refs.append({"scale": scale, "input_size": list(size),
                     "set5_psnr(db)": None if quality is None else round(quality, 3),
                     "median_inference_latency(ms)": None if latency is None else round(latency, 3)})
    return refs


def connect(adb_path: str | None, serial: str | None, timeout: float, runner: str, binaries: list[Path],
            apk: Path | None, backend: str) -> AdbPlan:
    """Find adb, pick the device, install the APK if given and check the app is there (app runner)."""
    adb = select_device(find_adb(adb_path), serial, timeout)
    if apk is not None:
        install_apk(adb, apk)
    if runner == "app":
        app_ready(adb)
    return AdbPlan(adb, runner, binaries, backend)
