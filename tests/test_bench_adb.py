"""Android benchmarks against tests/fake_adb.py: the exact adb commands, quoting, parsing, the app contract and
every failure (no adb, no device, unauthorized, offline, lost device, daemon failure, crash, garbage, timeouts,
Ctrl-C and SIGTERM) as one line, with current adb's strings and exit codes and with adb 29's.

No test waits on the clock: a hanging fake call writes a file signal that the ``communicate`` hook turns into
the timeout, the app's polling runs on a fake clock, and the signal tests wait for the hang to begin."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mobile_sr.bench import adb as adb_mod
from mobile_sr.bench import remote
from mobile_sr.bench.adb import LOST, Adb, AdbError, execute, why
from mobile_sr.bench.latency_table import LayerConfig, lookup, measure_layers
from mobile_sr.bench.report import validate
from mobile_sr.bench.run import connect
from mobile_sr.cli import main

FAKE = Path(__file__).resolve().parent / "fake_adb.py"
SERIAL = "emulator-5554"
REMOTE = "/data/local/tmp/mobile_sr"
REPO = Path(__file__).resolve().parent.parent


class FakeClock:
    """remote's polling clock: sleeping moves it on at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


def expire_on_hang(hanging: Path, timeouts: list[float]):
    """adb.communicate for the tests: no real timeout; a call expires when the fake says it hangs (it writes
    ``hanging``, renamed to ``.hung`` here so the test can check that process was killed)."""
    def communicate(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
        timeouts.append(timeout)
        while True:
            try:
                return proc.communicate(timeout=0.05)
            except subprocess.TimeoutExpired:
                if hanging.exists():
                    hanging.replace(hanging.with_name(".hung"))
                    raise subprocess.TimeoutExpired(proc.args, timeout) from None
    return communicate


def gone(pid: int, limit_s: float = 60.0) -> bool:
    """Whether process ``pid`` has ended (or is a zombie): SIGKILL takes effect at once, the limit is generous."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


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
        for name in ("ANDROID_SERIAL", "ADB", "FAKE_ADB_VERSION", "FAKE_ADB_SHELL_V2", "FAKE_ADB_SERVER"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.chdir(self.work)
        self.timeouts: list[float] = []
        monkeypatch.setattr(adb_mod, "communicate", expire_on_hang(self.root / ".hanging", self.timeouts))
        self.clock = FakeClock()
        monkeypatch.setattr(remote, "clock", self.clock.clock)
        monkeypatch.setattr(remote, "pause", self.clock.pause)

    def hung_pid(self) -> int:
        """The pid of the last call that hung (and timed out)."""
        return int((self.root / ".hung").read_text())

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
    """The adb call that runs ``cmd`` on the phone: quoted words, then the echo that carries its status."""
    return ["-s", SERIAL, "shell", " ".join(shlex.quote(c) for c in cmd) + "; echo :mobile_sr_exit:$?"]


def test_tflite_binary_exact_commands_parsing_and_cleanup(phone, tmp_path, make_artifact):
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
    assert r["frames_per_second"] == pytest.approx(1 / 0.07443, rel=1e-3)
    assert doc["matmul_peak(gmac/s)"] is None and r["matmul_peak_ratio"] is None
    assert doc["bicubic"] == [{"scale": 2, "input_size": [32, 32], "set5_psnr(db)": None,
                               "median_inference_latency(ms)": None}]
    assert "Pixel 7" in res.output


@pytest.mark.parametrize("name", ["x; touch pwned.tflite", "$(touch pwned2).tflite", "a'b`touch pwned3`.tflite"])
def test_file_names_never_run_as_commands(phone, name, make_artifact):
    art = make_artifact(phone.work, name)
    res = phone.bench(str(art), "--binary", str(phone.tflite_bin))
    assert res.exit_code == 0, res.output
    ran = [c for c in phone.log() if c[0] == "benchmark_model"]
    assert ran[0][1] == f"--graph={phone.root}{REMOTE}/{name}"  # arrived as one argument, intact
    assert not [p for p in phone.root.parent.rglob("pwned*")]
    assert phone.leftovers() == []


def test_executor_runner_iterations(phone, tmp_path, make_artifact):
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
def test_binary_failures_are_one_line_and_clean_up(phone, tmp_path, mode, message, make_artifact):
    phone.env(FAKE_BENCH_MODE=mode)
    arts = [make_artifact(phone.work, "a.tflite"), make_artifact(phone.work, "b.tflite")]
    out = tmp_path / "r.json"
    res = phone.bench(*map(str, arts), "--binary", str(phone.tflite_bin), "--json", str(out))
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if "FAILED" in ln]
    assert len(lines) == 2 and all(message in ln for ln in lines)
    assert [r["status"] for r in json.loads(out.read_text())["results"]] == ["failed", "failed"]
    assert phone.leftovers() == []


def test_binary_timeout_kills_the_binary_and_stops(phone, tmp_path, make_artifact):
    phone.env(FAKE_BENCH_MODE="hang")
    art = make_artifact(phone.work, "a.tflite")
    res = phone.bench(str(art), "--binary", str(phone.tflite_bin), "--timeout", "2", "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 1
    assert res.output == f"error: `adb shell {REMOTE}/benchmark_model --graph={REMOTE}/a.tflite --num_threads=1 " \
        "--warmup_runs=2 ...` timed out after 2 s\n"
    assert gone(phone.hung_pid())  # the binary on the "phone" (adb's grandchild) was killed with adb
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(("timeout", "shown"), [("1", "1"), ("600", "30")])
def test_adb_devices_has_a_short_timeout_of_its_own(phone, timeout, shown, make_artifact):
    phone.env(FAKE_ADB_HANG="devices")
    res = phone.bench(str(make_artifact(phone.work, "a.tflite")), "--binary", str(phone.tflite_bin), "--timeout", timeout)
    assert res.exit_code == 1
    assert res.output == f"error: `{phone.adb} devices` timed out after {shown} s\n"
    assert phone.timeouts == [float(shown)]
    assert gone(phone.hung_pid())


@pytest.mark.parametrize(("version", "lose_after", "said"), [
    ("current", "6", f"adb: device '{SERIAL}' not found"),  # getprop, dumpsys, mkdir, 2 pushes, chmod; then the run
    ("old", "6", f"error: device '{SERIAL}' not found"),
    ("current", "5", f"adb: device '{SERIAL}' not found"),  # chmod
    ("current", "3", f"adb: error: failed to get feature set: device '{SERIAL}' not found"),  # the first push
    ("old", "3", f"adb: error: failed to get feature set: device '{SERIAL}' not found"),  # adb 29: on stdout
])
def test_device_lost_between_commands(phone, tmp_path, version, lose_after, said, make_artifact):
    phone.env(FAKE_ADB_VERSION=version, FAKE_ADB_LOSE_AFTER=lose_after)
    arts = [make_artifact(phone.work, "a.tflite"), make_artifact(phone.work, "b.tflite")]
    res = phone.bench(*map(str, arts), "--binary", str(phone.tflite_bin), "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 1
    assert res.output == f"error: device {SERIAL} was lost during the run ({said})\n"
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("version", ["current", "old"])
@pytest.mark.parametrize(("v2", "rc"), [("1", 255), ("0", 0)])
def test_device_lost_during_benchmark_model(phone, tmp_path, version, v2, rc, make_artifact):
    """The cable is pulled while the binary runs: adb exits 255 (shell v2) or 0 (no v2) and prints nothing."""
    phone.env(FAKE_ADB_VERSION=version, FAKE_ADB_SHELL_V2=v2, FAKE_ADB_DROP="--graph=")
    arts = [make_artifact(phone.work, "a.tflite"), make_artifact(phone.work, "b.tflite")]
    res = phone.bench(*map(str, arts), "--binary", str(phone.tflite_bin), "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 1
    assert res.output == f"error: device {SERIAL} was lost during the run (the connection closed during " \
        f"`adb shell {REMOTE}/benchmark_model --graph={REMOTE}/a.tflite --num_threads=1 --warmup_runs=2 ...`, " \
        f"adb exit {rc})\n"
    assert not (tmp_path / "r.json").exists()
    assert not [c for c in phone.log() if c[0] == "benchmark_model"]


@pytest.mark.parametrize("version", ["current", "old"])
def test_phone_without_shell_v2(phone, tmp_path, version, make_artifact):
    """adb shell exits 0 whatever the command did, stderr joins stdout, lines end in CRLF: results are the same,
    and a crash is still a crash."""
    phone.env(FAKE_ADB_VERSION=version, FAKE_ADB_SHELL_V2="0")
    art = make_artifact(phone.work, "m_x2.tflite")
    res = phone.bench(str(art), "--binary", str(phone.tflite_bin), "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    (r,) = json.loads((tmp_path / "r.json").read_text())["results"]
    assert r["median_inference_latency(ms)"] == 74.43 and r["peak_memory(mb)"] == 12.25
    phone.env(FAKE_BENCH_MODE="crash")
    res = phone.bench(str(art), "--binary", str(phone.tflite_bin))
    assert res.exit_code == 1 and "m_x2.tflite: FAILED: benchmark_model crashed (signal 11)" in res.output
    assert phone.leftovers() == []


@pytest.mark.parametrize("v2", ["1", "0"])
def test_shell_status_comes_from_the_phone(phone, v2):
    """The status is the command's, whatever the protocol; a command's own output that reads like an adb error
    is not a lost device."""
    phone.env(FAKE_ADB_SHELL_V2=v2)
    dev = Adb(str(phone.adb), SERIAL, 30)
    assert dev.shell("sh", "-c", "printf 'no newline'; exit 3") == (3, "no newline", "")
    rc, out, err = dev.shell("sh", "-c", "echo 'error: device offline' >&2; exit 1")
    assert rc == 1 and "error: device offline" in out + err
    with pytest.raises(AdbError, match=r"`adb shell false` failed \(exit 1\): \(no output\)"):
        dev.shell_check("false")


@pytest.mark.parametrize(("server", "code", "output"), [
    ("cold", 0, "Pixel 7"),
    ("fail", 1, "error: `adb devices` failed (exit 1): the adb server did not start: could not install "
                "*smartsocket* listener: Address already in use\n"),
])
def test_adb_server_start(phone, server, code, output, make_artifact):
    phone.env(FAKE_ADB_SERVER=server)
    res = phone.bench(str(make_artifact(phone.work, "a.tflite")), "--binary", str(phone.tflite_bin))
    assert res.exit_code == code, res.output
    assert output in res.output and "daemon" not in res.output
    if code:
        assert res.output == output


@pytest.mark.parametrize(("text", "line"), [
    ("adb: device 'X' not found", "adb: device 'X' not found"),
    ("adb: device offline", "adb: device offline"),
    ("adb: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n", "adb: device unauthorized."),
    ("adb: error: failed to get feature set: device 'X' not found", None),
    ("adb: error: failed to get feature set: device offline", None),
    ("adb: no devices/emulators found", None),
    ("error: device 'X' not found", None),
    ("error: device offline", None),
    ("error: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set", "error: device unauthorized."),
    ("error: closed", None),
    ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\nerror: device 'X' not found",
     "error: device 'X' not found"),
    ("adb: failed to check server version: cannot connect to daemon", None),
])
def test_lost_device_strings(text, line):
    m = LOST.search(text)
    assert m is not None and m.group(0) == (line or text)


@pytest.mark.parametrize("text", ["adb: failed to install a.apk: Failure [INSTALL_FAILED_NO_MATCHING_ABIS]",
                                  "adb: error: cannot stat 'x': No such file or directory",
                                  "ERROR: Could not open 'm.tflite'.", "my device offline", "sh: error: closed"])
def test_other_failures_are_not_lost_devices(text):
    assert LOST.search(text) is None


def test_why_names_the_cause_not_the_daemon_notice():
    assert why("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
               "error: device 'X' not found\n") == "error: device 'X' not found"
    assert why("", "Performing Streamed Install\nadb: failed to install a.apk: Failure [X]\n") == \
        "adb: failed to install a.apk: Failure [X]"
    assert why("* daemon not running; starting now at tcp:5037\n") == "* daemon not running; starting now at tcp:5037"


def test_real_timeout_kills_the_process_group(tmp_path, monkeypatch):
    """The production communicate (no hook): a child that would run a minute, with a grandchild, is killed as
    a group when its timeout passes. The hook only waits for the grandchild to exist before timing starts."""
    pidfile = tmp_path / "pid"
    real = adb_mod.communicate

    def started_then_real(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
        while not pidfile.exists() or not pidfile.read_text().strip():
            time.sleep(0.01)
        return real(proc, timeout)

    monkeypatch.setattr(adb_mod, "communicate", started_then_real)
    with pytest.raises(AdbError, match=r"^`slow` timed out after 0.2 s$"):
        execute(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], 0.2, shown="slow")
    assert gone(int(pidfile.read_text()))


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                                   (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_and_sigterm_kill_the_adb_process_group(phone, tmp_path, sig, code, said, make_artifact):
    """A real `mobile-sr bench` process, signalled once the binary hangs on the "phone": adb and the binary
    are killed, one error line, the signal's exit code, no JSON, and nothing more is sent to the phone."""
    phone.env(FAKE_BENCH_MODE="hang")
    art = make_artifact(phone.work, "a.tflite")
    out = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "mobile_sr", "bench", "--no-progress", "--no-psnr", "--device",
                             "adb", "--adb", str(phone.adb), "--binary", str(phone.tflite_bin), "--json", str(out),
                             str(art)], cwd=phone.work, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hanging = phone.root / ".hanging"
    while not (hanging.exists() and hanging.read_text()) and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    calls = len(phone.adb_calls())
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert stderr.startswith(f"error: {said} during `adb shell {REMOTE}/benchmark_model") and stderr.count("\n") == 1
    assert gone(int(hanging.read_text()))
    assert not out.exists() and stdout == ""
    assert len(phone.adb_calls()) == calls  # no clean-up calls after the signal


@pytest.mark.parametrize(("devices", "extra", "code", "message"), [
    ("", [], 1, "no Android device attached"),
    (f"{SERIAL}:unauthorized", [], 1, f"device {SERIAL} is unauthorized: accept the 'Allow USB debugging' prompt"),
    (f"{SERIAL}:offline", [], 1, f"device {SERIAL} is offline: reconnect"),
    (f"{SERIAL}:device,R5CT:device", [], 2, f"several devices attached: {SERIAL} (device), R5CT (device); pick one"),
    (f"{SERIAL}:device", ["--serial", "nope"], 1, f"device nope is not attached (attached: {SERIAL})"),
])
def test_device_selection_errors(phone, devices, extra, code, message, make_artifact):
    phone.env(FAKE_ADB_DEVICES=devices)
    res = phone.bench(str(make_artifact(phone.work, "a.tflite")), "--binary", str(phone.tflite_bin), *extra)
    assert res.exit_code == code
    assert message in res.output and res.output.count("\n") == 1
    assert phone.adb_calls() == [["devices"]]  # nothing was sent to any device


def test_serial_from_option_and_environment(phone, make_artifact):
    phone.env(FAKE_ADB_DEVICES=f"R5CT:device,{SERIAL}:device")
    art = str(make_artifact(phone.work, "a.tflite"))
    assert phone.bench(art, "--binary", str(phone.tflite_bin), "--serial", SERIAL).exit_code == 0
    phone.env(ANDROID_SERIAL="R5CT")
    assert phone.bench(art, "--binary", str(phone.tflite_bin)).exit_code == 0
    serials = {c[1] for c in phone.adb_calls() if c[0] == "-s"}
    assert serials == {SERIAL, "R5CT"}


def test_no_adb(phone, tmp_path, make_artifact):
    art = str(make_artifact(phone.work, "a.tflite"))
    res = CliRunner().invoke(main, ["bench", "--no-psnr", "--device", "adb", "--binary", str(phone.tflite_bin), art],
                             env={"PATH": str(tmp_path / "empty"), "ADB": None})
    assert res.exit_code == 1 and "adb not found: install the Android platform tools" in res.output
    res = phone.bench(art, "--binary", str(phone.tflite_bin), "--adb", str(tmp_path / "nope" / "adb"))
    assert res.exit_code == 1 and "is not an executable file" in res.output


def test_formats_without_a_phone_runner_are_skipped(phone, tmp_path, make_artifact):
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


def test_app_runner_contract(phone, tmp_path, make_artifact):
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
    assert r["frames_per_second"] == pytest.approx(1 / 0.021, rel=1e-3)  # one inference per frame at this size


def test_app_results_are_polled_until_written(phone, make_artifact):
    phone.env(FAKE_APP_MODE="delay")
    (phone.root / "data" / "app" / "org.mobilesr.demo").mkdir(parents=True)
    (phone.root / "data" / "data" / "org.mobilesr.demo" / "files").mkdir(parents=True)
    res = phone.bench(str(make_artifact(phone.work, "m.tflite")), "--runner", "app")
    assert res.exit_code == 0, res.output
    reads = [c for c in phone.adb_calls() if c[-1].startswith("run-as org.mobilesr.demo cat files/mobile_sr_results")]
    assert len(reads) == 2 and phone.clock.now == 1.0  # not there yet, one poll interval, then there


@pytest.mark.parametrize(("mode", "message"), [
    ("never", "the app wrote no results within 3 s"),
    ("garbage", "the app's results file is not JSON"),
    ("invalid", "the app's results do not match results.schema.json"),
    ("error", "the app reported failed: Failed to load model: error 0x22"),
    ("noactivity", "am start failed: Error: Activity class {org.mobilesr.demo/.BenchmarkActivity} does not exist."),
])
def test_app_failures(phone, mode, message, make_artifact):
    phone.env(FAKE_APP_MODE=mode)
    apk = phone.work / "demo.apk"
    apk.write_bytes(b"PK")
    res = phone.bench(str(make_artifact(phone.work, "m.tflite")), "--runner", "app", "--apk", str(apk), timeout=3)
    assert res.exit_code == 1
    assert f"m.tflite: FAILED: {message}" in res.output
    if mode == "never":  # read at 0, 1, 2 and 3 s of the fake clock; the next one would be past the 3 s
        reads = [c for c in phone.adb_calls() if c == shell(["run-as", "org.mobilesr.demo", "cat",
                                                            "files/mobile_sr_results.json"])]
        assert len(reads) == 4 and phone.clock.now == 3.0
        assert shell(["am", "force-stop", "org.mobilesr.demo"]) in phone.adb_calls()
    assert phone.leftovers() == []


def test_app_missing_or_failing_install(phone, tmp_path, make_artifact):
    art = str(make_artifact(phone.work, "m.tflite"))
    res = phone.bench(art, "--runner", "app")
    assert res.exit_code == 1 and "the demo app org.mobilesr.demo is not installed on emulator-5554; pass --apk" in res.output
    apk = tmp_path / "demo.apk"
    apk.write_bytes(b"PK")
    phone.env(FAKE_ADB_INSTALL="fail")
    res = phone.bench(art, "--runner", "app", "--apk", str(apk))
    assert res.exit_code == 1 and "INSTALL_FAILED_NO_MATCHING_ABIS" in res.output and res.output.count("\n") == 1


def test_no_thermal_service(phone, tmp_path, make_artifact):
    phone.env(FAKE_ADB_THERMAL="absent")
    res = phone.bench(str(make_artifact(phone.work, "m.tflite")), "--binary", str(phone.tflite_bin), "--json",
                      str(tmp_path / "r.json"))
    assert res.exit_code == 0
    dev = json.loads((tmp_path / "r.json").read_text())["device"]
    assert dev["thermal_start"] is None and dev["thermal_end"] is None


@pytest.mark.slow  # exports a layer with ExecuTorch for real (about 20 s on two busy cores)
@pytest.mark.extras("executorch")
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
