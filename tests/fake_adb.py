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

Knobs (environment variables):
  FAKE_ADB_DEVICES      "serial:state,..." (default "emulator-5554:device"; "" = no device)
  FAKE_ADB_LOSE_AFTER   N: every call to a device after the first N fails with "device not found"
  FAKE_ADB_HANG         substring: an adb call whose joined argv contains it sleeps for a minute
  FAKE_ADB_THERMAL      "absent": no thermalservice
  FAKE_ADB_INSTALL      "fail": adb install fails
  FAKE_BENCH_MODE       ok | old | crash | garbage | hang   (benchmark binaries)
  FAKE_APP_MODE         ok | delay | never | garbage | invalid | error | noactivity   (the demo app)
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
    spec = os.environ.get("FAKE_ADB_DEVICES", "emulator-5554:device")
    return [tuple(item.split(":", 1)) for item in spec.split(",") if item]  # type: ignore[misc]


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


def count_device_call() -> None:
    lose_after = os.environ.get("FAKE_ADB_LOSE_AFTER")
    if lose_after is None:
        return
    counter = ROOT / ".device_calls"
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    if n >= int(lose_after):
        die(f"error: device '{os.environ.get('FAKE_SERIAL', 'emulator-5554')}' not found")


def adb(argv: list[str]) -> None:
    hang = os.environ.get("FAKE_ADB_HANG")
    if hang and hang in " ".join(argv):
        time.sleep(60)
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
    if state is None:
        die(f"error: device '{serial}' not found")
    if state != "device":
        die(f"error: device {state}")
    os.environ["FAKE_SERIAL"] = serial
    count_device_call()
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
        command = " ".join(args).replace("/data/", f"{ROOT}/data/")
        env = {**os.environ, "PATH": f"{ROOT / 'system' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        sys.stdout.flush()
        rc = subprocess.run(["sh", "-c", command], cwd=ROOT, env=env).returncode
        sys.exit(128 - rc if rc < 0 else rc)  # killed by a signal: report it as a shell does (139 = SIGSEGV)
    else:
        die(f"fake adb: unknown command {cmd}")


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
    if mode == "delay":  # the app finishes later: a detached writer that holds none of adb's pipes
        subprocess.Popen([sys.executable, "-S", __file__, "--write-later", str(out), json.dumps(doc)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
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
            "peak_memory(mb)": 30.5, "ram_pss_usage(mb)": 11.25, "set5_psnr(db)": None, "gmac_per_inference": None,
            "achieved(gmac/s)": None, "matmul_peak_ratio": None}],
    }


def flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def bench_mode_prologue() -> str:
    mode = os.environ.get("FAKE_BENCH_MODE", "ok")
    if mode == "hang":
        time.sleep(60)
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
    if argv[:1] == ["--write-later"]:
        time.sleep(1.5)
        write_atomic(Path(argv[1]), argv[2])
        return
    if argv[:1] == ["--tool"]:
        log([argv[1], *argv[2:]])
        tool(argv[1], argv[2:])
        return
    log(argv)
    adb(argv)


if __name__ == "__main__":
    main()
