"""The real ``adb`` binary (Debian's adb 29 here and in CI), for everything that needs no phone: the server's
cold start, no device attached, a daemon that cannot start, the strings of a device that is not there, and
that tests/fake_adb.py in its ``old`` mode prints exactly what this binary prints.

Each test runs its own server on a free loopback port (``ANDROID_ADB_SERVER_PORT``), with its log and keys in
the test's folder (``TMPDIR``, ``HOME``), and kills it afterwards; a machine without adb skips them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mobile_sr.bench.adb import Adb, AdbError, execute, list_devices, select_device
from mobile_sr.cli import main

ADB = shutil.which("adb")
FAKE = Path(__file__).resolve().parent / "fake_adb.py"
pytestmark = pytest.mark.skipif(ADB is None, reason="adb is not installed (Debian/Ubuntu: apt install adb; CI has it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(port: int) -> bool:
    """Whether nothing listens on ``port`` any more (kill-server returns before the server has gone)."""
    for _ in range(500):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.02)
    return False


@pytest.fixture
def port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A private server port; no server is left running afterwards."""
    number = free_port()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(number))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the server's log
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.android/adbkey, made on the first start
    for name in ("ANDROID_SERIAL", "ADB", "ANDROID_SDK_HOME", "ANDROID_USER_HOME", "ADB_VENDOR_KEYS"):
        monkeypatch.delenv(name, raising=False)
    yield number
    subprocess.run([ADB, "kill-server"], capture_output=True, timeout=60)
    assert refused(number), f"an adb server still listens on port {number}"


def no_device_or_skip() -> None:
    if list_devices(ADB, 60):
        pytest.skip("a device or emulator is attached to this machine; these tests need none")


def test_cold_start_prints_on_stderr_and_lists_no_device(port):
    rc, out, err = execute([ADB, "devices"], 60)
    assert rc == 0
    assert err == f"* daemon not running; starting now at tcp:{port}\n* daemon started successfully\n"
    assert out.startswith("List of devices attached\n")
    no_device_or_skip()
    assert execute([ADB, "devices"], 60) == (0, "List of devices attached\n\n", "")  # warm: no notice


def test_bench_on_a_cold_server_with_no_device(port, tmp_path, make_artifact):
    art = make_artifact(tmp_path, "m.tflite")
    res = CliRunner().invoke(main, ["bench", "--no-psnr", "--no-progress", "--device", "adb", "--adb", ADB,
                                    "--binary", __file__, "--json", str(tmp_path / "r.json"), str(art)])
    no_device_or_skip()
    assert res.exit_code == 1
    assert res.output == "error: no Android device attached (adb devices lists none); connect one and enable " \
        "USB debugging\n"
    assert not (tmp_path / "r.json").exists()


def test_a_daemon_that_cannot_start_is_reported_with_its_cause(port):
    """The port is taken (bound, not listening): the client cannot connect and the server cannot listen."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        with pytest.raises(AdbError) as exc:
            select_device(ADB, None, 600)
    assert str(exc.value) == "`adb devices` failed (exit 1): the adb server did not start: could not install " \
        "*smartsocket* listener: Address already in use"


def test_a_device_that_is_not_there_is_a_lost_device(port, tmp_path):
    no_device_or_skip()
    dev = Adb(ADB, "nope", 60)
    with pytest.raises(AdbError, match=r"^device nope was lost during the run \(error: device 'nope' not found\)$"):
        dev.shell("true")
    with pytest.raises(AdbError, match=r"^device nope was lost during the run \(adb: error: failed to get feature "
                                       r"set: device 'nope' not found\)$"):
        dev.push(Path(__file__), "/data/local/tmp/x")


def fake(argv: list[str], root: Path, **env: str) -> tuple[int, str, str]:
    run = subprocess.run([sys.executable, "-S", str(FAKE), *argv], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "FAKE_ADB_ROOT": str(root), "FAKE_ADB_VERSION": "old",
                              "FAKE_ADB_DEVICES": "", **env})
    return run.returncode, run.stdout, run.stderr


def normal(text: str) -> str:
    """Without what differs from run to run: times and process ids."""
    text = re.sub(r"\d\d-\d\d \d\d:\d\d:\d\d +\d+ +\d+ ", "TIME PID PID ", text)
    return re.sub(r"pid:? \d+", "pid N", text)


@pytest.mark.parametrize("argv", [
    ["devices"],
    ["-s", "nope", "shell", "true; echo :mobile_sr_exit:$?"],
    ["-s", "nope", "push", "FILE", "/data/local/tmp/mobile_sr/m.tflite"],
    ["-s", "nope", "install", "-r", "-t", "APK"],
], ids=["devices", "shell", "push", "install"])
def test_the_fake_in_old_mode_prints_what_adb_29_prints(port, tmp_path, argv):
    apk = tmp_path / "demo.apk"
    apk.write_bytes(b"PK\x03\x04")
    argv = [str(apk) if a == "APK" else str(Path(__file__)) if a == "FILE" else a for a in argv]
    (tmp_path / "phone").mkdir()
    real = execute([ADB, *argv], 60)
    no_device_or_skip()
    assert fake(argv, tmp_path / "phone", FAKE_ADB_SERVER="cold") == real  # both started their server


def test_the_fake_in_old_mode_fails_to_start_the_daemon_as_adb_29(port, tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        rc, out, err = execute([ADB, "devices"], 60)
    (tmp_path / "phone").mkdir()
    frc, fout, ferr = fake(["devices"], tmp_path / "phone", FAKE_ADB_SERVER="fail")
    assert (frc, fout) == (rc, out) == (1, "")
    assert normal(ferr) == normal(err)
    assert "] could not install *smartsocket* listener: Address already in use\n" in err
