"""Android benchmarks against tests/fake_adb.py: the exact adb commands, quoting, parsing, the app contract and
every failure (no adb, no device, unauthorized, offline, lost device, crash, garbage, timeouts) as one line."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mobile_sr.bench.latency_table import LayerConfig, lookup, measure_layers
from mobile_sr.bench.report import validate
from mobile_sr.bench.run import connect
from mobile_sr.cli import main
from mobile_sr.export.sidecar import validate as validate_sidecar

FAKE = Path(__file__).resolve().parent / "fake_adb.py"
SERIAL = "emulator-5554"
REMOTE = "/data/local/tmp/mobile_sr"


def sidecar(path: Path, fmt: str, precision: str = "fp32", size: int = 32) -> dict:
    """A sidecar written by hand, following mobile_sr/export/sidecar.schema.json (checked below)."""
    layout, shape_in, shape_out = ("NHWC", [1, size, size, 3], [1, 2 * size, 2 * size, 3]) if fmt == "tflite" else \
        ("NCHW", [1, 3, size, size], [1, 3, 2 * size, 2 * size])

    def tensor(name: str, shape: list[int]) -> dict:
        return {"name": name, "shape": shape, "layout": layout, "dtype": "float32", "color_order": "RGB",
                "value_range": [0.0, 1.0], "quantization": None}

    return {
        "schema_version": 1,
        "artifact": {"file": path.name, "format": fmt, "precision": precision, "bytes": 10, "sha256": "0" * 64},
        "model": {"name": "fsrcnn-s", "arch": "FSRCNN", "config": {"d": 32, "s": 5, "m": 1}, "scale": 2,
                  "source": "fsrcnn-s", "clamp_output": True},
        "inputs": [tensor("input", shape_in)], "outputs": [tensor("output", shape_out)],
        "export": {"seconds": 1.0, "created": "2026-01-01T00:00:00+00:00", "tools": {}, "min_runtime": None},
        "calibration": None,
        "verification": {"status": "skipped", "verified": False, "runtime": "none", "parity_psnr_db": None,
                         "set5_psnr_db": None, "set5_fp32_psnr_db": None,
                         "thresholds": {"parity_min_db": 50.0, "int8_max_loss_db": None}, "ops": None, "problems": []},
    }


def make_artifact(folder: Path, name: str) -> Path:
    """A stand-in artifact (the fake binaries do not read it) with a valid sidecar."""
    path = folder / name
    path.write_bytes(b"not a real model")
    fmt = {".tflite": "tflite", ".pte": "executorch", ".onnx": "onnx"}[path.suffix]
    doc = sidecar(path, fmt)
    assert validate_sidecar(doc) == []
    path.with_name(name + ".json").write_text(json.dumps(doc))
    return path


class Phone:
    """The fake device: its storage folder, the adb wrapper, the log of every command."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.log_path, self.work = tmp / "phone", tmp / "adb.log", tmp / "work"
        self.root.mkdir()
        self.work.mkdir()
        self.adb = self._script(tmp / "bin" / "adb", "")
        self.tflite_bin = self._script(tmp / "bin" / "benchmark_model", "--tool benchmark_model")
        self.et_bin = self._script(tmp / "bin" / "executor_runner", "--tool executor_runner")
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("FAKE_ADB_ROOT", str(self.root))
        monkeypatch.setenv("FAKE_ADB_LOG", str(self.log_path))
        monkeypatch.delenv("ANDROID_SERIAL", raising=False)
        monkeypatch.delenv("ADB", raising=False)
        monkeypatch.chdir(self.work)

    @staticmethod
    def _script(path: Path, args: str) -> Path:
        path.parent.mkdir(exist_ok=True)
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKE}" {args} "$@"\n')
        path.chmod(0o755)
        return path

    def env(self, **values: str) -> None:
        for key, value in values.items():
            self.monkeypatch.setenv(key, value)

    def log(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines()] if self.log_path.exists() else []

    def adb_calls(self) -> list[list[str]]:
        """Calls to adb itself (tools and binaries on the phone log under their own names)."""
        return [c for c in self.log() if c[0] in ("devices", "-s")]

    def bench(self, *args: str, timeout: float = 30):
        return CliRunner().invoke(main, ["bench", "--no-progress", "--no-psnr", "--device", "adb", "--adb",
                                         str(self.adb), "--timeout", str(timeout), "--warmup", "2", "--runs", "4",
                                         *args])

    def leftovers(self) -> list[str]:
        folder = self.root / REMOTE.lstrip("/")
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def phone(tmp_path, monkeypatch) -> Phone:
    return Phone(tmp_path, monkeypatch)


def shell(cmd: list[str]) -> list[str]:
    return ["-s", SERIAL, "shell", " ".join(shlex.quote(c) for c in cmd)]


def test_tflite_binary_exact_commands_parsing_and_cleanup(phone, tmp_path):
    art = make_artifact(phone.work, "m_x2.tflite")
    out = tmp_path / "r.json"
    res = phone.bench(str(art), "--binary", str(phone.tflite_bin), "--threads", "4", "--json", str(out))
    assert res.exit_code == 0, res.output
    model, binary = f"{REMOTE}/m_x2.tflite", f"{REMOTE}/benchmark_model"
    run = [binary, f"--graph={model}", "--num_threads=4", "--warmup_runs=2", "--warmup_min_secs=0", "--num_runs=4",
           "--min_secs=0", "--max_secs=30", "--use_xnnpack=true"]
    assert phone.adb_calls() == [
        ["devices"],
        shell(["getprop"]),
        shell(["dumpsys", "thermalservice"]),
        shell(["mkdir", "-p", REMOTE]),
        ["-s", SERIAL, "push", str(phone.tflite_bin), binary],
        ["-s", SERIAL, "push", str(art), model],
        shell(["chmod", "755", binary]),
        shell(run),
        shell(["rm", "-f", model, binary]),
        shell(["dumpsys", "thermalservice"]),
    ]
    ran = [c for c in phone.log() if c[0] == "benchmark_model"]
    assert len(ran) == 1 and ran[0][2:] == run[2:]
    assert phone.leftovers() == []
    doc = json.loads(out.read_text())
    assert validate(doc) == []
    dev = doc["device"]
    assert (dev["kind"], dev["serial"], dev["model"], dev["manufacturer"], dev["abi"], dev["os"], dev["sdk"], dev["soc"]) \
        == ("android", SERIAL, "Pixel 7", "Google", "arm64-v8a", "Android 14", 34, "Google GS201")
    assert dev["thermal_start"] == {"status": 1, "status_name": "light", "max_cpu_c": 42.25} == dev["thermal_end"]
    (r,) = doc["results"]
    assert (r["runner"], r["runtime"], r["status"], r["threads"]) == ("binary", "benchmark_model", "ok", 4)
    assert r["model_load_time(ms)"] == 18.738 and r["first_inference_latency(ms)"] == 140.706
    assert r["avg_inference_latency(ms)"] == 74.482 and r["median_inference_latency(ms)"] == 74.43
    assert r["min_inference_latency(ms)"] == 73.909 and r["p90_inference_latency(ms)"] is None
    assert r["median_cpu_time(ms)"] is None  # only the host measures CPU time
    assert r["peak_memory(mb)"] == 12.25
    assert r["throughput(mpix/s)"] == pytest.approx(64 * 64 / 1e6 / 0.07443, rel=1e-3)
    assert doc["matmul_peak(gmac/s)"] is None and r["matmul_peak_ratio"] is None
    assert doc["bicubic"] == [{"scale": 2, "input_size": [32, 32], "set5_psnr(db)": None,
                               "median_inference_latency(ms)": None}]
    assert "Pixel 7" in res.output


@pytest.mark.parametrize("name", ["x; touch pwned.tflite", "$(touch pwned2).tflite", "a'b`touch pwned3`.tflite"])
def test_file_names_never_run_as_commands(phone, name):
    art = make_artifact(phone.work, name)
    res = phone.bench(str(art), "--binary", str(phone.tflite_bin))
    assert res.exit_code == 0, res.output
    ran = [c for c in phone.log() if c[0] == "benchmark_model"]
    assert ran[0][1] == f"--graph={phone.root}{REMOTE}/{name}"  # arrived as one argument, intact
    assert not [p for p in phone.root.parent.rglob("pwned*")]
    assert phone.leftovers() == []


def test_executor_runner_iterations(phone, tmp_path):
    art = make_artifact(phone.work, "m_x2.pte")
    out = tmp_path / "r.json"
    res = phone.bench(str(art), "--binary", str(phone.et_bin), "--binary", str(phone.tflite_bin), "--threads", "2",
                      "--json", str(out))
    assert res.exit_code == 0, res.output
    run = [f"{REMOTE}/executor_runner", f"--model_path={REMOTE}/m_x2.pte", "--num_executions=6", "--cpu_threads=2"]
    assert shell(run) in phone.adb_calls()
    (r,) = json.loads(out.read_text())["results"]
    assert r["latencies(ms)"] == [32.0, 33.0, 34.0, 35.0]  # the 2 warm-up iterations (30, 31 ms) dropped
    assert (r["first_inference_latency(ms)"], r["model_load_time(ms)"], r["median_inference_latency(ms)"]) == \
        (30.0, 11.5, 33.5)
    assert r["runtime"] == "executor_runner"


@pytest.mark.parametrize(("mode", "message"), [
    ("crash", "benchmark_model crashed (signal 11)"),
    ("garbage", "printed no 'Inference timings in us' line"),
])
def test_binary_failures_are_one_line_and_clean_up(phone, tmp_path, mode, message):
    phone.env(FAKE_BENCH_MODE=mode)
    arts = [make_artifact(phone.work, "a.tflite"), make_artifact(phone.work, "b.tflite")]
    out = tmp_path / "r.json"
    res = phone.bench(*map(str, arts), "--binary", str(phone.tflite_bin), "--json", str(out))
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if "FAILED" in ln]
    assert len(lines) == 2 and all(message in ln for ln in lines)
    assert [r["status"] for r in json.loads(out.read_text())["results"]] == ["failed", "failed"]
    assert phone.leftovers() == []


def test_binary_timeout_never_hangs(phone, tmp_path):
    phone.env(FAKE_BENCH_MODE="hang")
    art = make_artifact(phone.work, "a.tflite")
    t0 = time.monotonic()
    res = phone.bench(str(art), "--binary", str(phone.tflite_bin), "--timeout", "2", "--json", str(tmp_path / "r.json"))
    assert time.monotonic() - t0 < 20
    assert res.exit_code == 1
    assert "timed out after 2 s" in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "r.json").exists()


def test_adb_hang_never_hangs(phone):
    phone.env(FAKE_ADB_HANG="devices")
    res = phone.bench(str(make_artifact(phone.work, "a.tflite")), "--binary", str(phone.tflite_bin), "--timeout", "1")
    assert res.exit_code == 1 and "`" in res.output and "devices` timed out after 1 s" in res.output


def test_device_lost_mid_run(phone, tmp_path):
    phone.env(FAKE_ADB_LOSE_AFTER="5")  # getprop, dumpsys, mkdir, 2 pushes answer; then the device is gone
    arts = [make_artifact(phone.work, "a.tflite"), make_artifact(phone.work, "b.tflite")]
    res = phone.bench(*map(str, arts), "--binary", str(phone.tflite_bin), "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 1
    assert f"error: device {SERIAL} was lost during the run (error: device '{SERIAL}' not found)" in res.output
    assert res.output.count("\n") == 1
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(("devices", "extra", "code", "message"), [
    ("", [], 1, "no Android device attached"),
    (f"{SERIAL}:unauthorized", [], 1, f"device {SERIAL} is unauthorized: accept the 'Allow USB debugging' prompt"),
    (f"{SERIAL}:offline", [], 1, f"device {SERIAL} is offline: reconnect"),
    (f"{SERIAL}:device,R5CT:device", [], 2, f"several devices attached: {SERIAL} (device), R5CT (device); pick one"),
    (f"{SERIAL}:device", ["--serial", "nope"], 1, f"device nope is not attached (attached: {SERIAL})"),
])
def test_device_selection_errors(phone, devices, extra, code, message):
    phone.env(FAKE_ADB_DEVICES=devices)
    res = phone.bench(str(make_artifact(phone.work, "a.tflite")), "--binary", str(phone.tflite_bin), *extra)
    assert res.exit_code == code
    assert message in res.output and res.output.count("\n") == 1
    assert phone.adb_calls() == [["devices"]]  # nothing was sent to any device


def test_serial_from_option_and_environment(phone):
    phone.env(FAKE_ADB_DEVICES=f"R5CT:device,{SERIAL}:device")
    art = str(make_artifact(phone.work, "a.tflite"))
    assert phone.bench(art, "--binary", str(phone.tflite_bin), "--serial", SERIAL).exit_code == 0
    phone.env(ANDROID_SERIAL="R5CT")
    assert phone.bench(art, "--binary", str(phone.tflite_bin)).exit_code == 0
    serials = {c[1] for c in phone.adb_calls() if c[0] == "-s"}
    assert serials == {SERIAL, "R5CT"}


def test_no_adb(phone, tmp_path):
    art = str(make_artifact(phone.work, "a.tflite"))
    res = CliRunner().invoke(main, ["bench", "--no-psnr", "--device", "adb", "--binary", str(phone.tflite_bin), art],
                             env={"PATH": str(tmp_path / "empty"), "ADB": None})
    assert res.exit_code == 1 and "adb not found: install the Android platform tools" in res.output
    res = phone.bench(art, "--binary", str(phone.tflite_bin), "--adb", str(tmp_path / "nope" / "adb"))
    assert res.exit_code == 1 and "is not an executable file" in res.output


def test_formats_without_a_phone_runner_are_skipped(phone, tmp_path):
    onnx = make_artifact(phone.work, "m.onnx")
    tfl = make_artifact(phone.work, "m.tflite")
    res = phone.bench(str(onnx), str(tfl), "--binary", str(phone.et_bin), "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["status"] for r in doc["results"]] == ["unsupported", "unsupported"]
    assert "no Android binary runner for onnx" in res.output
    assert "no --binary for tflite: pass benchmark_model" in res.output
    assert not [c for c in phone.adb_calls() if "push" in c]


def app_start(model: str, threads: str = "1") -> list[str]:
    return shell(["am", "start", "-W", "-S", "-n", "org.mobilesr.demo/.BenchmarkActivity", "--es", "model", model,
                  "--es", "backend", "xnnpack", "--ei", "threads", threads, "--ei", "warmup", "2", "--ei", "runs", "4",
                  "--es", "output", "mobile_sr_results.json"])


def test_app_runner_contract(phone, tmp_path):
    art = make_artifact(phone.work, "m_x2.pte")
    apk = tmp_path / "demo.apk"
    apk.write_bytes(b"PK fake apk")
    out = tmp_path / "r.json"
    res = phone.bench(str(art), "--runner", "app", "--apk", str(apk), "--json", str(out))
    assert res.exit_code == 0, res.output
    model = f"{REMOTE}/m_x2.pte"
    results = ["run-as", "org.mobilesr.demo"]
    assert phone.adb_calls() == [
        ["devices"],
        ["-s", SERIAL, "install", "-r", "-t", str(apk)],
        shell(["pm", "path", "org.mobilesr.demo"]),
        shell(["getprop"]),
        shell(["dumpsys", "thermalservice"]),
        shell(["mkdir", "-p", REMOTE]),
        ["-s", SERIAL, "push", str(art), model],
        shell([*results, "rm", "-f", "files/mobile_sr_results.json"]),
        app_start(model),
        shell([*results, "cat", "files/mobile_sr_results.json"]),
        shell(["rm", "-f", model]),
        shell([*results, "rm", "-f", "files/mobile_sr_results.json"]),
        shell(["dumpsys", "thermalservice"]),
    ]
    assert phone.leftovers() == []
    assert not list((phone.root / "data" / "data" / "org.mobilesr.demo" / "files").iterdir())
    doc = json.loads(out.read_text())
    (r,) = doc["results"]
    assert (r["runner"], r["runtime"], r["format"]) == ("app", "app xnnpack", "executorch")
    assert r["latencies(ms)"] == [20.0, 20.5, 21.0, 21.5] and r["median_inference_latency(ms)"] == 21.0
    assert r["ram_pss_usage(mb)"] == 11.25 and r["model_load_time(ms)"] == 12.5
    assert r["throughput(mpix/s)"] == pytest.approx(64 * 64 / 1e6 / 0.021, rel=1e-3)  # recomputed here


def test_app_results_are_polled_until_written(phone):
    phone.env(FAKE_APP_MODE="delay")
    (phone.root / "data" / "app" / "org.mobilesr.demo").mkdir(parents=True)
    (phone.root / "data" / "data" / "org.mobilesr.demo" / "files").mkdir(parents=True)
    res = phone.bench(str(make_artifact(phone.work, "m.tflite")), "--runner", "app")
    assert res.exit_code == 0, res.output
    reads = [c for c in phone.adb_calls() if c[-1].endswith("cat files/mobile_sr_results.json")]
    assert len(reads) >= 2  # not there yet, then there


@pytest.mark.parametrize(("mode", "message"), [
    ("never", "the app wrote no results within 3 s"),
    ("garbage", "the app's results file is not JSON"),
    ("invalid", "the app's results do not match results.schema.json"),
    ("error", "the app reported failed: Failed to load model: error 0x22"),
    ("noactivity", "am start failed: Error: Activity class {org.mobilesr.demo/.BenchmarkActivity} does not exist."),
])
def test_app_failures(phone, mode, message):
    phone.env(FAKE_APP_MODE=mode)
    apk = phone.work / "demo.apk"
    apk.write_bytes(b"PK")
    res = phone.bench(str(make_artifact(phone.work, "m.tflite")), "--runner", "app", "--apk", str(apk), timeout=3)
    assert res.exit_code == 1
    assert f"m.tflite: FAILED: {message}" in res.output
    if mode == "never":
        assert shell(["am", "force-stop", "org.mobilesr.demo"]) in phone.adb_calls()
    assert phone.leftovers() == []


def test_app_missing_or_failing_install(phone, tmp_path):
    art = str(make_artifact(phone.work, "m.tflite"))
    res = phone.bench(art, "--runner", "app")
    assert res.exit_code == 1 and "the demo app org.mobilesr.demo is not installed on emulator-5554; pass --apk" in res.output
    apk = tmp_path / "demo.apk"
    apk.write_bytes(b"PK")
    phone.env(FAKE_ADB_INSTALL="fail")
    res = phone.bench(art, "--runner", "app", "--apk", str(apk))
    assert res.exit_code == 1 and "INSTALL_FAILED_NO_MATCHING_ABIS" in res.output and res.output.count("\n") == 1


def test_no_thermal_service(phone, tmp_path):
    phone.env(FAKE_ADB_THERMAL="absent")
    res = phone.bench(str(make_artifact(phone.work, "m.tflite")), "--binary", str(phone.tflite_bin), "--json",
                      str(tmp_path / "r.json"))
    assert res.exit_code == 0
    dev = json.loads((tmp_path / "r.json").read_text())["device"]
    assert dev["thermal_start"] is None and dev["thermal_end"] is None


def test_latency_table_on_the_phone(phone):
    """Each layer is exported for real (ExecuTorch), pushed, run by the phone's executor_runner and removed."""
    cfg = LayerConfig(4, 4, 3, 16, 16)
    plan = connect(str(phone.adb), None, 30, "binary", [phone.et_bin], None, "xnnpack")
    table = measure_layers([cfg], runtime="executorch", plan=plan, threads=2, warmup=1, runs=2)
    assert table["device"]["model"] == "Pixel 7" and table["runtime_version"] == "executor_runner"
    assert lookup(table, cfg) == 31.5  # the fake's iterations 30, 31, 32 ms; the warm-up one dropped
    model = f"{REMOTE}/{cfg.key}.pte"
    assert ["-s", SERIAL, "push", str(phone.et_bin), f"{REMOTE}/executor_runner"] in phone.adb_calls()
    assert shell([f"{REMOTE}/executor_runner", f"--model_path={model}", "--num_executions=3", "--cpu_threads=2"]) \
        in phone.adb_calls()
    assert phone.leftovers() == []
    with pytest.raises(ValueError, match="binary runner and runtime tflite or executorch"):
        measure_layers([cfg], runtime="onnx", plan=plan)
