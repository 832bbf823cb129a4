"""Talking to an Android device through the ``adb`` executable: choosing the device, running commands with
a timeout, and describing the phone.

Safety: ``adb shell`` joins its arguments and hands them to the phone's ``sh``; a file named
``x; touch pwned.tflite`` would run ``touch``. :meth:`Adb.shell` therefore takes an argv and sends one
string in which every word is ``shlex.quote``-d; nothing else builds shell text.

Never a hang: every adb call has a timeout; on expiry the whole process group (adb and anything it
started) is killed, so no pipe stays open behind it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

STATE_HINTS = {
    "unauthorized": "accept the 'Allow USB debugging' prompt on the phone, then retry",
    "offline": "reconnect the cable or run `adb kill-server`, then retry",
    "authorizing": "wait for the phone to finish authorizing, then retry",
    "no permissions": "fix the udev rules for this device (see the Android docs), then retry",
}
LOST = re.compile(r"^(adb: )?error: (device .*not found|device offline|device unauthorized|device still|"
                  r"no devices/emulators found|closed|protocol fault)", re.M)
THERMAL_NAMES = ["none", "light", "moderate", "severe", "critical", "emergency", "shutdown"]


class AdbError(RuntimeError):
    """adb or the device cannot be used (or got lost); stops the whole run. ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def find_adb(path: str | None) -> str:
    """``--adb PATH``, else ``$ADB``, else ``adb`` on PATH."""
    chosen = path or os.environ.get("ADB") or shutil.which("adb")
    if not chosen:
        raise AdbError("adb not found: install the Android platform tools (Debian/Ubuntu: apt install adb), "
                       "or pass --adb PATH or set $ADB")
    if os.sep in chosen and not os.access(chosen, os.X_OK):
        raise AdbError(f"adb at {chosen} is not an executable file")
    return chosen


def execute(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run ``argv``; (exit code, stdout, stderr). AdbError when it cannot start or outlives ``timeout``."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", start_new_session=True)
    except OSError as exc:
        raise AdbError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # the group may already be gone
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        raise AdbError(f"`{_show(argv)}` timed out after {timeout:g} s") from None
    return proc.returncode, out, err


def _show(argv: list[str], limit: int = 120) -> str:
    text = " ".join(shlex.quote(a) for a in argv)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def list_devices(exe: str, timeout: float) -> list[tuple[str, str]]:
    """(serial, state) of every attached device, from ``adb devices``."""
    rc, out, err = execute([exe, "devices"], timeout)
    if rc != 0:
        raise AdbError(f"`adb devices` failed (exit {rc}): {_first_line(err or out)}")
    devices = []
    for line in out.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*")):
            continue
        serial, _, state = line.partition("\t")
        devices.append((serial.strip(), state.strip()))
    return devices


def select_device(exe: str, serial: str | None, timeout: float) -> Adb:
    """The device named by ``serial`` (or ``$ANDROID_SERIAL``), or the only one attached, ready to use."""
    serial = serial or os.environ.get("ANDROID_SERIAL") or None
    devices = list_devices(exe, timeout)
    if serial is None:
        if not devices:
            raise AdbError("no Android device attached (adb devices lists none); connect one and enable USB debugging")
        if len(devices) > 1:
            listing = ", ".join(f"{s} ({st})" for s, st in devices)
            raise AdbError(f"several devices attached: {listing}; pick one with --serial or $ANDROID_SERIAL", code=2)
        serial = devices[0][0]
    states = dict(devices)
    if serial not in states:
        attached = ", ".join(s for s, _ in devices) or "none"
        raise AdbError(f"device {serial} is not attached (attached: {attached})")
    state = states[serial]
    if state != "device":
        hint = next((h for key, h in STATE_HINTS.items() if key in state), "check `adb devices`")
        raise AdbError(f"device {serial} is {state}: {hint}")
    return Adb(exe, serial, timeout)


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "(no output)")[:200]


@dataclass
class Adb:
    """One device. ``timeout`` bounds every call unless a call gives its own."""

    exe: str
    serial: str
    timeout: float

    def run(self, *args: str, timeout: float | None = None) -> tuple[int, str, str]:
        """``adb -s SERIAL args...``; AdbError if it times out or the device has gone away."""
        rc, out, err = execute([self.exe, "-s", self.serial, *args], self.timeout if timeout is None else timeout)
        if rc != 0:
            lost = LOST.search(err) or LOST.search(out)
            if lost:
                raise AdbError(f"device {self.serial} was lost during the run ({lost.group(0).strip()})")
        return rc, out, err

    def check(self, *args: str, timeout: float | None = None) -> str:
        """Like :meth:`run`, but a non-zero exit is an AdbError; returns stdout."""
        rc, out, err = self.run(*args, timeout=timeout)
        if rc != 0:
            raise AdbError(f"`adb {_show(list(args))}` failed (exit {rc}): {_first_line(err or out)}")
        return out

    def shell(self, *argv: str, timeout: float | None = None) -> tuple[int, str, str]:
        """Run a command on the phone; every word is quoted, so no argument is ever read as shell syntax."""
        return self.run("shell", " ".join(shlex.quote(a) for a in argv), timeout=timeout)

    def shell_check(self, *argv: str, timeout: float | None = None) -> str:
        return self.check("shell", " ".join(shlex.quote(a) for a in argv), timeout=timeout)

    def push(self, local: Path, remote: str) -> None:
        """Copy a file to the phone (adb's sync protocol: the remote path never meets a shell)."""
        self.check("push", str(local), remote)

    def getprops(self) -> dict[str, str]:
        out = self.shell_check("getprop")
        return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", out, re.M))

    def thermal(self) -> dict | None:
        """Thermal status (0 none .. 6 shutdown) and hottest CPU sensor; None where thermalservice is absent."""
        rc, out, _ = self.shell("dumpsys", "thermalservice")
        return parse_thermal(out) if rc == 0 else None

    def describe(self) -> dict:
        """The device section of a results document (model, ABI, Android version, SoC, thermal state)."""
        p = self.getprops()
        soc = " ".join(x for x in (p.get("ro.soc.manufacturer"), p.get("ro.soc.model")) if x) or \
            p.get("ro.board.platform") or p.get("ro.hardware") or None
        sdk = p.get("ro.build.version.sdk", "")
        release = p.get("ro.build.version.release")
        return {
            "kind": "android",
            "serial": self.serial,
            "manufacturer": p.get("ro.product.manufacturer") or None,
            "model": p.get("ro.product.model") or None,
            "abi": p.get("ro.product.cpu.abi") or None,
            "os": f"Android {release}" if release else None,
            "sdk": int(sdk) if sdk.isdigit() else None,
            "soc": soc,
            "cpu_cores": None,
            "thermal_start": self.thermal(),
            "thermal_end": None,
        }


def parse_thermal(text: str) -> dict | None:
    """``dumpsys thermalservice`` -> {status, status_name, max_cpu_c}; None when it reports no status."""
    m = re.search(r"Thermal Status:\s*(\d+)", text)
    if not m:
        return None
    status = int(m.group(1))
    temps = [float(v) for v, t in re.findall(r"Temperature\{mValue=([-\d.]+), mType=(\d+)", text) if t == "0"]
    return {"status": status, "status_name": THERMAL_NAMES[status] if status < len(THERMAL_NAMES) else None,
            "max_cpu_c": max(temps) if temps else None}
