#!/usr/bin/env python3
"""A fake ``adb`` (and the phone behind it) for the bench tests. Standard library only, so it runs with
``python -S`` (no site-packages scan: a quick start for the dozens of calls a test makes).

The phone's storage is the folder ``$FAKE_ADB_ROOT``: a device path ``/data/...`` is ``$FAKE_ADB_ROOT/data/...``.
``adb shell CMD`` joins its arguments as real adb does and runs them with the host's real ``sh -c``
(device paths rewritten to the storage folder, working folder = the storage root), so quoting
mistakes have the same effect as on a phone: ``x; touch pwned.tflite`` unquoted creates a file.
Android's own tools (``getprop``, ``dumpsys``, ``am``, ``pm``, ``run-as``) are small scripts in
``$FAKE_ADB_ROOT/system/bin`` that call back into this file with ``--tool NAME``; a benchmark binary
given to the bench is a script calling ``--tool benchmark_model`` or ``--tool executor_runner``.

Every invocation appends its argv as one JSON line to ``$FAKE_ADB_LOG`` (tools log ``["<tool>", ...]``).

It prints what adb prints, failures included, in two versions: ``current`` (platform-tools of the last
years: ``adb: device 'X' not found``, ``adb: device offline``, ``adb: device unauthorized.`` + the
``$ADB_VENDOR_KEYS`` lines, ``adb: error: failed to get feature set: ...`` for push/pull) and ``old``
(Debian's adb 29, the pre-2020 strings: ``error: device 'X' not found``, push errors on stdout, install
exiting 255); tests/test_real_adb.py checks ``old`` against that binary. Exit codes are adb's: ``adb shell``
returns the command's status over the shell v2 protocol and 255 when the connection drops; without it,
0 whatever happened, with stderr merged into stdout and CRLF line ends (a pty).

A call that hangs (FAKE_ADB_HANG, FAKE_BENCH_MODE=hang) first writes its pid to ``$FAKE_ADB_ROOT/.hanging``:
the file signal the tests wait on instead of a clock.

Knobs (environment variables):
  FAKE_ADB_VERSION      current (default) | old
  FAKE_ADB_SHELL_V2     1 (default) | 0: the phone's adbd has no shell v2 protocol (Android 6 and older)
  FAKE_ADB_SERVER       running (default) | cold: the first call starts the daemon (its two `*` lines on
                        stderr) | fail: the daemon cannot start (port taken), as adb 29 reports it
  FAKE_ADB_DEVICES      "serial:state,..." (default "emulator-5554:device"; "" = no device)
  FAKE_ADB_LOSE_AFTER   N: the phone is unplugged after N calls to it; later ones fail with "not found"
  FAKE_ADB_DROP         substring: the phone is unplugged while the shell command containing it runs
  FAKE_ADB_HANG         substring: an adb call whose joined argv contains it hangs (a minute)
  FAKE_ADB_THERMAL      "absent": no thermalservice
  FAKE_ADB_INSTALL      "fail": adb install fails
  FAKE_BENCH_MODE       ok | old | crash | garbage | hang   (benchmark binaries)
  FAKE_APP_MODE         ok | delay | never | garbage | invalid | error | noactivity   (the demo app; delay:
                        the results appear right after the first read that finds none)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("FAKE_ADB_ROOT", "/nonexistent"))
PACKAGE = "org.mobilesr.demo"
TOOLS = ("getprop", "dumpsys", "am", "pm", "run-as")
PROPS = {
    "ro.product.manufacturer": "Google",
    "ro.product.model": "Pixel 7",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.soc.manufacturer": "Google",
    "ro.soc.model": "GS201",
    "ro.board.platform": "gs201",
}
VENDOR_KEYS = """This adb server's $ADB_VENDOR_KEYS is not set
Try 'adb kill-server' if that seems wrong.
Otherwise check for a confirmation dialog on your device."""
THERMAL = """IsStatusOverride: false
ThermalEventListeners:
\tcallbacks: 1
Thermal Status: 1
Cached temperatures:
\tTemperature{mValue=41.5, mType=0, mName=cpu0-silver-usr, mStatus=1}
HAL Ready: true
HAL connection:
\tThermalHAL 2.0 connected: yes
Current temperatures from HAL:
\tTemperature{mValue=42.25, mType=0, mName=BIG, mStatus=1}
\tTemperature{mValue=39.0, mType=0, mName=LITTLE, mStatus=0}
\tTemperature{mValue=31.0, mType=2, mName=battery, mStatus=0}
"""


def log(argv: list[str]) -> None:
    path = os.environ.get("FAKE_ADB_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(argv) + "\n")


def devices() -> list[tuple[str, str]]:
    """The attached devices, less an unplugged one."""
    spec = os.environ.get("FAKE_ADB_DEVICES", "emulator-5554:device")
    gone = (ROOT / ".gone").read_text() if (ROOT / ".gone").exists() else None
    return [tuple(item.split(":", 1)) for item in spec.split(",") if item and item.split(":")[0] != gone]  # type: ignore[misc]


def old() -> bool:
    return os.environ.get("FAKE_ADB_VERSION", "current") == "old"


def unplug(serial: str) -> None:
    (ROOT / ".gone").write_text(serial)


def hang() -> None:
    """Hang for a minute, first telling the tests so (the file signal they wait on)."""
    (ROOT / ".hanging").write_text(str(os.getpid()))
    time.sleep(60)


def die(msg: str, code: int = 1) -> None:
    sys.stderr.write(msg + "\n")
    sys.exit(code)


def to_host(path: str) -> Path:
    return ROOT / path.lstrip("/")


def install_tools() -> None:
    """Android's tools as scripts on the fake phone's PATH."""
    bindir = ROOT / "system" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        script = bindir / tool
        if not script.exists():
            script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{Path(__file__).resolve()}" --tool {tool} "$@"\n')
            script.chmod(0o755)


def lose_now(serial: str) -> bool:
    """FAKE_ADB_LOSE_AFTER: count this call to the phone; unplug it once N calls have answered."""
    lose_after = os.environ.get("FAKE_ADB_LOSE_AFTER")
    if lose_after is None:
        return False
    counter = ROOT / ".device_calls"
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    if n >= int(lose_after):
        unplug(serial)
        return True
    return False


def server() -> None:
    """The adb server, as the client reports starting it (on stderr, as adb 29 and current adb do)."""
    mode = os.environ.get("FAKE_ADB_SERVER", "running")
    started = ROOT / ".server"
    if mode == "running" or started.exists():
        return
    port = os.environ.get("ANDROID_ADB_SERVER_PORT", "5037")
    sys.stderr.write(f"* daemon not running; starting now at tcp:{port}\n")
    if mode == "cold":
        started.write_text(port)
        sys.stderr.write("* daemon started successfully\n")
        return
    pid, now = os.getpid() + 1, time.strftime("%m-%d %H:%M:%S")
    version = ["Version 29.0.6-debian", "Installed as /usr/lib/android-sdk/platform-tools/adb"] if old() else \
        ["Version 35.0.2-12147458", "Installed as /opt/android-sdk/platform-tools/adb", "Running on Linux 6.1.0 (x86_64)"]
    log = [f"adb I {now} {pid:5d} {pid:5d} main.cpp:60] {line}"
           for line in ["Android Debug Bridge version 1.0.41", *version, ""]]
    startup_log = f"{os.environ.get('TMPDIR', '/tmp')}/adb.{os.getuid()}.log"
    die("\n".join(["ADB server didn't ACK", f"Full server startup log: {startup_log}",
                   f"Server had pid: {pid}", f"--- adb starting (pid {pid}) ---", *log,
                   f"adb F {now} {pid:5d} {pid:5d} main.cpp:144] could not install *smartsocket* listener: "
                   "Address already in use", "", "* failed to start daemon",
                   "adb: failed to check server version: cannot connect to daemon"]))


def refuse(serial: str, state: str | None, cmd: str) -> None:
    """A command to a device that is not there (state None) or not usable, worded as adb words it."""
    reason = f"device '{serial}' not found" if state is None else \
        "device unauthorized.\n" + VENDOR_KEYS if state == "unauthorized" else f"device {state}"
    if cmd in ("push", "pull"):  # the sync client reports it; adb 29 printed that on stdout
        print(f"adb: error: failed to get feature set: {reason}", file=sys.stdout if old() else sys.stderr)
        sys.exit(1)
    if cmd == "install" and old():
        print(f"Performing Push Install\nadb: error: failed to get feature set: {reason}")
        die(f"error: {reason}", 255)
    die(("error: " if old() else "adb: ") + reason)


def adb(argv: list[str]) -> None:
    hung = os.environ.get("FAKE_ADB_HANG")
    if hung and hung in " ".join(argv):
        hang()
    server()
    if argv[:1] == ["devices"]:
        print("List of devices attached")
        for serial, state in devices():
            print(f"{serial}\t{state}")
        print()
        return
    if argv[:1] != ["-s"] or len(argv) < 3:
        die("fake adb: every device command must name its device with -s SERIAL")
    serial, cmd, args = argv[1], argv[2], argv[3:]
    state = dict(devices()).get(serial)
    if state == "device" and lose_now(serial):
        state = None
    if state != "device":
        refuse(serial, state, cmd)
    install_tools()
    if cmd == "push":
        local, remote = Path(args[0]), to_host(args[1])
        if not local.is_file():
            die(f"adb: error: cannot stat '{local}': No such file or directory")
        remote.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, remote)
        print(f"{local}: 1 file pushed, 0 skipped. 12.3 MB/s ({local.stat().st_size} bytes in 0.001s)")
    elif cmd == "pull":
        shutil.copy2(to_host(args[0]), args[1])
    elif cmd == "install":
        if os.environ.get("FAKE_ADB_INSTALL") == "fail":
            print("Performing Streamed Install")
            die("adb: failed to install app.apk: Failure [INSTALL_FAILED_NO_MATCHING_ABIS: Failed to extract native libraries]")
        (ROOT / "data" / "app" / PACKAGE).mkdir(parents=True, exist_ok=True)
        (ROOT / "data" / "data" / PACKAGE / "files").mkdir(parents=True, exist_ok=True)
        print("Performing Streamed Install\nSuccess")
    elif cmd == "shell":
        shell(serial, " ".join(args))
    else:
        die(f"fake adb: unknown command {cmd}")


def shell(serial: str, command: str) -> None:
    """``adb shell``: the command runs in the phone's ``sh``; adb's exit code depends on the protocol."""
    v2 = os.environ.get("FAKE_ADB_SHELL_V2", "1") == "1"
    drop = os.environ.get("FAKE_ADB_DROP")
    if drop and drop in command:  # the cable is pulled: no exit status ever arrives
        unplug(serial)
        sys.exit(255 if v2 else 0)
    env = {**os.environ, "PATH": f"{ROOT / 'system' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    argv = ["sh", "-c", command.replace("/data/", f"{ROOT}/data/")]
    sys.stdout.flush()
    if v2:
        rc = subprocess.run(argv, cwd=ROOT, env=env).returncode
        sys.exit(128 - rc if rc < 0 else rc)  # killed by a signal: report it as a shell does (139 = SIGSEGV)
    # No shell v2: a pty joins stderr to stdout and ends lines with CRLF; the exit status is lost.
    with subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.buffer.write(line.replace(b"\n", b"\r\n"))
    sys.exit(0)


# ---- the phone's tools -------------------------------------------------------------------------------


def tool(name: str, args: list[str]) -> None:
    if name == "getprop":
        for key, value in sorted(PROPS.items()):
            print(f"[{key}]: [{value}]")
    elif name == "dumpsys":
        if os.environ.get("FAKE_ADB_THERMAL") == "absent":
            print(f"Can't find service: {args[0] if args else ''}")
        else:
            print(THERMAL, end="")
    elif name == "pm":
        if args[:2] == ["path", PACKAGE] and (ROOT / "data" / "app" / PACKAGE).is_dir():
            print(f"package:/data/app/{PACKAGE}/base.apk")
        else:
            sys.exit(1)
    elif name == "run-as":
        if not (ROOT / "data" / "app" / args[0]).is_dir():
            die(f"run-as: unknown package: {args[0]}")
        os.chdir(ROOT / "data" / "data" / args[0])
        pending = Path(f"{args[-1]}.pending")
        if args[1] == "cat" and pending.exists():  # FAKE_APP_MODE=delay: the app finishes just after this read
            rc = subprocess.run(args[1:]).returncode
            os.replace(pending, args[-1])
            sys.exit(rc)
        os.execvp(args[1], args[1:])
    elif name == "am":
        am(args)
    elif name == "benchmark_model":
        benchmark_model(args)
    elif name == "executor_runner":
        executor_runner(args)


def am(args: list[str]) -> None:
    if args[:1] == ["force-stop"]:
        return
    component = args[args.index("-n") + 1]
    mode = os.environ.get("FAKE_APP_MODE", "ok")
    if mode == "noactivity" or not (ROOT / "data" / "app" / component.split("/")[0]).is_dir():
        print("Starting: Intent { cmp=" + component + " }")  # and exit status 0, as the real am does
        print(f"Error type 3\nError: Activity class {{{component}}} does not exist.")
        return
    extras = {args[i + 1]: args[i + 2] for i, a in enumerate(args) if a in ("--es", "--ei")}
    print(f"Starting: Intent {{ cmp={component} (has extras) }}\nStatus: ok\nLaunchState: COLD\nActivity: {component}")
    if mode == "never":
        return
    out = ROOT / "data" / "data" / PACKAGE / "files" / extras["output"]
    doc = app_results(extras)
    if mode == "delay":  # the app is still running: run-as writes its results after the next read
        out.with_name(out.name + ".pending").write_text(json.dumps(doc))
        return
    text = {"garbage": "{not json", "invalid": json.dumps({"schema_version": 1, "results": []})}.get(mode, json.dumps(doc))
    write_atomic(out, text)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def app_results(extras: dict[str, str]) -> dict:
    """What BenchmarkActivity writes: one result in the results schema."""
    model = Path(extras["model"])
    ok = model.is_file() and os.environ.get("FAKE_APP_MODE", "ok") != "error"
    lat = [20.0 + 0.5 * i for i in range(int(extras["runs"]))]
    fmt = "executorch" if model.suffix == ".pte" else "tflite"
    return {
        "schema_version": 1, "tool": "org.mobilesr.demo 0.1", "created": "2026-01-01T00:00:00+00:00",
        "device": {"kind": "android", "serial": None, "manufacturer": "Google", "model": "Pixel 7", "abi": "arm64-v8a",
                   "os": "Android 14", "sdk": 34, "soc": "Google GS201", "cpu_cores": 8, "thermal_start": None,
                   "thermal_end": None},
        "matmul_peak(gmac/s)": None, "bicubic": [],
        "results": [{
            "artifact": model.name, "model": "fsrcnn-s", "scale": 2, "format": fmt, "precision": "fp32",
            "runtime": f"app {extras['backend']}", "runner": "app", "input_size": [32, 32], "output_size": [64, 64],
            "threads": int(extras["threads"]), "warmup": int(extras["warmup"]), "runs": int(extras["runs"]),
            "status": "ok" if ok else "failed", "error": None if ok else "Failed to load model: error 0x22",
            "load_status": 0 if ok else 34, "model_load_time(ms)": 12.5, "first_inference_latency(ms)": 40.0,
            "avg_inference_latency(ms)": sum(lat) / len(lat), "trimmean_inference_latency(ms)": sum(lat) / len(lat),
            "median_inference_latency(ms)": lat[len(lat) // 2], "p90_inference_latency(ms)": lat[-1],
            "min_inference_latency(ms)": lat[0], "median_cpu_time(ms)": None, "latencies(ms)": lat, "throughput(mpix/s)": None,
            "frames_per_second": None,
            "peak_memory(mb)": 30.5, "ram_pss_usage(mb)": 11.25, "set5_psnr(db)": None, "gmac_per_inference": None,
            "achieved(gmac/s)": None, "matmul_peak_ratio": None}],
    }


def flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def bench_mode_prologue() -> str:
    mode = os.environ.get("FAKE_BENCH_MODE", "ok")
    if mode == "hang":
        hang()
    return mode


def benchmark_model(args: list[str]) -> None:
    f = flags(args)
    print("INFO: STARTING!")
    print(f"INFO: Graph: [{f.get('graph')}]")
    print(f"INFO: Num threads: [{f.get('num_threads')}]")
    if not Path(f.get("graph", "")).is_file():
        die(f"ERROR: Could not open '{f.get('graph')}'.\nERROR: Benchmarking failed.")
    mode = bench_mode_prologue()
    if mode == "crash":
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "garbage":
        print("Segmentation fault handler installed\nweird output")
        return
    print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    print("INFO: The input model file size (MB): 0.05")
    print("INFO: Initialized session in 18.738ms.")
    print(f"INFO: Running benchmark for at least {f['warmup_runs']} iterations and at least 0 seconds but terminate "
          "if exceeding 150 seconds.")
    print("INFO: count=5 first=140706 curr=74599 min=74599 max=140706 avg=85791.2 std=24559")
    print()
    print(f"INFO: Running benchmark for at least {f['num_runs']} iterations and at least 0 seconds but terminate "
          "if exceeding 150 seconds.")
    if mode == "old":
        print(f"count={f['num_runs']} first=74456 curr=74516 min=73909 max=75323 avg=74481.6 std=268")
        print()
        print("Inference timings in us: Init: 18738, First inference: 140706, Warmup (avg): 85791.2, "
              "Inference (avg): 74481.6")
        print("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the "
              "actual memory footprint of the model at runtime. Take the information at your discretion.")
        print("Peak memory footprint (MB): init=6.44141 overall=64.8633")
        return
    print(f"INFO: count={f['num_runs']} first=74456 curr=74516 min=73909 max=1.2e+05 avg=74481.6 std=268 p5=73950 "
          "median=74430 p95=75300")
    print()
    print("INFO: Inference timings in us: Init: 18738, First inference: 1.40706e+05, Warmup (avg): 8.57912e+04, "
          "Inference (avg): 74481.6")
    print("INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to "
          "the actual memory footprint of the model at runtime. Take the information at your discretion.")
    print("INFO: Memory footprint delta from the start of the tool (MB): init=3.5 overall=12.25")


def executor_runner(args: list[str]) -> None:
    f = flags(args)
    print(f"I 00:00:00.000100 executorch:executor_runner.cpp:120] Resetting threadpool with num threads = "
          f"{f.get('cpu_threads')}")
    if not Path(f.get("model_path", "")).is_file():
        die("E 00:00:00.000200 executorch:executor_runner.cpp:140] FileDataLoader::from() failed: 0x22", 134)
    mode = bench_mode_prologue()
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    n = int(f["num_executions"])
    print(f"I 00:00:00.001139 executorch:executor_runner.cpp:180] Model file {f['model_path']} is loaded.")
    print("I 00:00:00.012000 executorch:executor_runner.cpp:260] Model loaded in 11.500000 ms.")
    for i in range(n):
        print(f"I 00:00:00.1{i:05d} executorch:executor_runner.cpp:300] Iteration {i + 1} of {n}: {30.0 + i:.6f} ms")
    if mode == "garbage":
        return
    print(f"I 00:00:01.000000 executorch:executor_runner.cpp:310] Model executed successfully {n} time(s) in "
          f"{sum(30.0 + i for i in range(n)):.6f} ms.")
    print("I 00:00:01.000100 executorch:executor_runner.cpp:320] 1 outputs: ")
    print("OutputX 0: tensor(sizes=[1, 3, 64, 64], [0.5, 0.5, ..., 0.5])")


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["--tool"]:
        log([argv[1], *argv[2:]])
        tool(argv[1], argv[2:])
        return
    log(argv)
    adb(argv)


if __name__ == "__main__":
    main()
