"""Running an artifact on an Android device: the user's benchmark binary, or the demo app's BenchmarkActivity.

Binary runner: push the binary and the artifact to ``/data/local/tmp/mobile_sr/``, run the binary with
thread, warm-up and run counts, parse its output, remove both.

App runner, the contract the Android demo app implements (see the README, "The demo app's benchmark contract")::

    adb shell am start -W -S -n org.mobilesr.demo/.BenchmarkActivity \\
        --es model /data/local/tmp/mobile_sr/<artifact> --es backend xnnpack \\
        --ei threads 4 --ei warmup 5 --ei runs 50 --es output mobile_sr_results.json

The activity runs the model and writes a results document (``results.schema.json``, one result) to
``<app files dir>/<output>``, writing ``<output>.tmp`` first and renaming it, so a reader never sees half
a file; then it finishes. We poll ``run-as org.mobilesr.demo cat files/<output>`` until it is there.

A failure of this artifact (binary crash, unparseable output, app error or timeout) raises RunFailed
and the bench goes on with the next one; a failure of the device raises AdbError and stops it. Files
pushed for a run are removed afterwards, whatever happened, except after Ctrl-C or SIGTERM (adb.Interrupted):
then nothing more is sent to the phone.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .adb import Adb, AdbError, Interrupted
from .parse import ParseError, parse_benchmark_model, parse_executor_runner
from .report import validate
from .stats import Latency, Measurement

REMOTE_DIR = "/data/local/tmp/mobile_sr"
APP_PACKAGE = "org.mobilesr.demo"
APP_ACTIVITY = ".BenchmarkActivity"
APP_OUTPUT = "mobile_sr_results.json"
BINARY_FORMATS = {"tflite": "benchmark_model", "executorch": "executor_runner"}
# What _poll_results waits by: a hook, so that tests give it a fake clock and a deadline costs no real time.
clock: Callable[[], float] = time.monotonic
pause: Callable[[float], None] = time.sleep


class RunFailed(RuntimeError):
    """This artifact did not run on the device; one line saying why."""


def binary_format(path: Path) -> str | None:
    """Which artifacts a binary runs, from its name: ``benchmark_model*`` (TFLite) or ``*executor_runner*``."""
    name = path.name.lower()
    if "benchmark_model" in name:
        return "tflite"
    if "executor_runner" in name:
        return "executorch"
    return None


def pick_binary(binaries: list[Path], fmt: str) -> Path | None:
    """The binary for ``fmt``: the one whose name says so, else the only one given."""
    named = [b for b in binaries if binary_format(b) == fmt]
    if named:
        return named[0]
    unnamed = [b for b in binaries if binary_format(b) is None]
    return unnamed[0] if len(binaries) == 1 and unnamed else None


def binary_argv(fmt: str, remote_bin: str, remote_model: str, threads: int, warmup: int, runs: int,
                timeout: float) -> list[str]:
    """The command line of one on-device run (exact counts: no minimum durations)."""
    if fmt == "tflite":
        return [remote_bin, f"--graph={remote_model}", f"--num_threads={threads}", f"--warmup_runs={warmup}",
                "--warmup_min_secs=0", f"--num_runs={runs}", "--min_secs=0", f"--max_secs={int(timeout)}",
                "--use_xnnpack=true"]
    return [remote_bin, f"--model_path={remote_model}", f"--num_executions={warmup + runs}", f"--cpu_threads={threads}"]


def run_binary(adb: Adb, artifact: Path, fmt: str, binary: Path, threads: int, warmup: int, runs: int) -> Measurement:
    """Push, run, parse, clean up. The device's timeout bounds the run itself."""
    remote_model, remote_bin = f"{REMOTE_DIR}/{artifact.name}", f"{REMOTE_DIR}/{binary.name}"
    adb.shell_check("mkdir", "-p", REMOTE_DIR)
    with _afterwards(adb, ("rm", "-f", remote_model, remote_bin)):
        adb.push(binary, remote_bin)
        adb.push(artifact, remote_model)
        adb.shell_check("chmod", "755", remote_bin)
        rc, out, err = adb.shell(*binary_argv(fmt, remote_bin, remote_model, threads, warmup, runs, adb.timeout))
        text = out + "\n" + err
        if rc != 0:
            how = f"crashed (signal {rc - 128})" if rc > 128 else f"exited with status {rc}"
            raise RunFailed(f"{binary.name} {how}: {_last_words(text)}")
        try:
            m = parse_benchmark_model(text) if fmt == "tflite" else parse_executor_runner(text, warmup)
        except ParseError as exc:
            raise RunFailed(str(exc)) from None
        m.runtime_version = binary.name
        return m


@contextlib.contextmanager
def _afterwards(adb: Adb, *commands: tuple[str, ...]) -> Iterator[None]:
    """Run ``commands`` on the phone after the body, however it ended, unless Ctrl-C or SIGTERM ended it."""
    interrupted = False
    try:
        yield
    except Interrupted:
        interrupted = True
        raise
    finally:
        if not interrupted:
            for argv in commands:
                _cleanup(adb, *argv)


def _cleanup(adb: Adb, *argv: str) -> None:
    """Best effort: a lost device must not hide the error that brought us here; a signal is never swallowed."""
    try:
        adb.shell(*argv)
    except Interrupted:
        raise
    except AdbError:
        pass


def _last_words(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "(no output)"


def install_apk(adb: Adb, apk: Path) -> None:
    out = adb.check("install", "-r", "-t", str(apk))
    if "Success" not in out:
        raise AdbError(f"installing {apk.name} failed: {_last_words(out)}")


def app_ready(adb: Adb, package: str = APP_PACKAGE) -> None:
    rc, out, _ = adb.shell("pm", "path", package)
    if rc != 0 or not out.strip().startswith("package:"):
        raise AdbError(f"the demo app {package} is not installed on {adb.serial}; pass --apk PATH to install it")


def run_app(adb: Adb, artifact: Path, backend: str, threads: int, warmup: int, runs: int, poll_s: float = 1.0,
            package: str = APP_PACKAGE) -> tuple[Measurement, dict]:
    """Start BenchmarkActivity on the artifact, wait for its results file, read it; (measurement, its record)."""
    remote_model = f"{REMOTE_DIR}/{artifact.name}"
    adb.shell_check("mkdir", "-p", REMOTE_DIR)
    with _afterwards(adb, ("rm", "-f", remote_model), ("run-as", package, "rm", "-f", f"files/{APP_OUTPUT}")):
        adb.push(artifact, remote_model)
        adb.shell("run-as", package, "rm", "-f", f"files/{APP_OUTPUT}")
        out = adb.shell_check("am", "start", "-W", "-S", "-n", f"{package}/{APP_ACTIVITY}",
                              "--es", "model", remote_model, "--es", "backend", backend,
                              "--ei", "threads", str(threads), "--ei", "warmup", str(warmup), "--ei", "runs", str(runs),
                              "--es", "output", APP_OUTPUT)
        errors = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("Error")]
        if errors:  # am start exits 0 even when the activity does not exist
            raise RunFailed(f"am start failed: {next((e for e in errors if e.startswith('Error:')), errors[0])}")
        doc = _poll_results(adb, package, poll_s)
    errors = validate(doc)
    if errors:
        raise RunFailed(f"the app's results do not match results.schema.json: {errors[0]}")
    rec = doc["results"][0]
    if rec["status"] != "ok":
        raise RunFailed(f"the app reported {rec['status']}: {rec['error']}")
    return _measurement(rec), rec


def _poll_results(adb: Adb, package: str, poll_s: float) -> dict:
    deadline = clock() + adb.timeout
    while True:
        rc, out, _ = adb.shell("run-as", package, "cat", f"files/{APP_OUTPUT}")
        if rc == 0 and out.strip():
            try:
                return json.loads(out)
            except ValueError:
                raise RunFailed(f"the app's results file is not JSON: {_last_words(out)}") from None
        if clock() + poll_s > deadline:
            _cleanup(adb, "am", "force-stop", package)
            raise RunFailed(f"the app wrote no results within {adb.timeout:g} s")
        pause(poll_s)


def _measurement(rec: dict) -> Measurement:
    lat = Latency(load_ms=rec["model_load_time(ms)"], first_ms=rec["first_inference_latency(ms)"],
                  avg_ms=rec["avg_inference_latency(ms)"], trimmean_ms=rec["trimmean_inference_latency(ms)"],
                  median_ms=rec["median_inference_latency(ms)"], p90_ms=rec["p90_inference_latency(ms)"],
                  min_ms=rec["min_inference_latency(ms)"], samples_ms=list(rec["latencies(ms)"]))
    return Measurement(lat, rec["runtime"], rec["peak_memory(mb)"], rec["ram_pss_usage(mb)"])
