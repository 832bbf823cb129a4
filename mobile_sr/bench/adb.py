"""Talking to an Android device through the ``adb`` executable: choosing the device, running commands with
a timeout, and describing the phone.

Safety: ``adb shell`` joins its arguments and hands them to the phone's ``sh``; a file named
``x; touch pwned.tflite`` would run ``touch``. :meth:`Adb.shell` therefore takes an argv and sends one
string in which every word is ``shlex.quote``-d, followed by a fixed ``; echo MARK$?``; nothing else
builds shell text.

Exit codes: over the shell v2 protocol (Android 7+) ``adb shell`` returns the command's status, and 255
when the connection drops; without it (older phones, ``adb shell -x``) it returns 0 whatever happened,
merges stderr into stdout and ends lines with CRLF. So :meth:`Adb.shell` takes the status from the
``echo`` it appends: a missing marker means the shell never finished, i.e. the device went away.

Lost devices: adb's own messages changed over time; :data:`LOST` matches today's (``adb: device 'X' not
found``, ``adb: device offline``, ``adb: device unauthorized.``, ``adb: error: failed to get feature set:
...``) and Debian's adb 29 (``error: device 'X' not found``, ...), on stdout or stderr.

Never a hang, never an orphan: every adb call has a timeout (``adb devices`` a short one of its own), and
on expiry, Ctrl-C or SIGTERM the whole process group (adb and anything it started) is killed, so no
pipe stays open behind it and nothing keeps running on the host.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STATE_HINTS = {
    "unauthorized": "accept the 'Allow USB debugging' prompt on the phone, then retry",
    "offline": "reconnect the cable or run `adb kill-server`, then retry",
    "authorizing": "wait for the phone to finish authorizing, then retry",
    "no permissions": "fix the udev rules for this device (see the Android docs), then retry",
}
# The first line of every "this device cannot be reached" message of adb 29 and of current adb.
LOST = re.compile(r"^(?:adb: )?(?:error: )?(?:(?:failed to get feature set|failed to check server version): )?"
                  r"(?:device '[^'\n]*' not found|device (?:offline|unauthorized|still authorizing|still connecting)"
                  r"|no devices/emulators found|closed|protocol fault|cannot connect to daemon).*$", re.M)
# The server's own fatal log line, which adb copies to stderr when the daemon does not start.
DAEMON_FATAL = re.compile(r"^adb [FE] .*?\] (.+)$", re.M)
EXIT_MARK = ":mobile_sr_exit:"
EXIT = re.compile(re.escape(EXIT_MARK) + r"(\d+)\s*\Z")
DEVICES_TIMEOUT = 30.0  # `adb devices` answers at once, even on a cold server start; a wedged server must not cost --timeout
THERMAL_NAMES = ["none", "light", "moderate", "severe", "critical", "emergency", "shutdown"]


class AdbError(RuntimeError):
    """adb or the device cannot be used (or got lost); stops the whole run. ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Interrupted(AdbError):
    """Ctrl-C or SIGTERM arrived while an adb command ran; it was killed. Stops the run at once, with the
    shell's exit code for that signal (130, 143), and no further adb call may be made."""


class _Terminated(BaseException):
    """Raised by our SIGTERM handler inside :func:`execute`, so the child can be killed before we go."""


def find_adb(path: str | None) -> str:
    """``--adb PATH``, else ``$ADB``, else ``adb`` on PATH."""
    chosen = path or os.environ.get("ADB") or shutil.which("adb")
    if not chosen:
        raise AdbError("adb not found: install the Android platform tools (Debian/Ubuntu: apt install adb), "
                       "or pass --adb PATH or set $ADB")
    if os.sep in chosen and not os.access(chosen, os.X_OK):
        raise AdbError(f"adb at {chosen} is not an executable file")
    return chosen


def communicate(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """``proc``'s (stdout, stderr); TimeoutExpired after ``timeout`` s. A hook: the tests replace it with one
    that expires when the fake adb signals that it hangs, so no test depends on how fast the machine is."""
    return proc.communicate(timeout=timeout)


def execute(argv: list[str], timeout: float, shown: str | None = None) -> tuple[int, str, str]:
    """Run ``argv``; (exit code, stdout, stderr). AdbError when it cannot start or outlives ``timeout``;
    Interrupted on Ctrl-C or SIGTERM. In every such case its process group is killed first.
    ``shown`` is how the command is named in those messages (default: ``argv``)."""
    shown = shown or _show(argv)
    with _sigterm_raises():
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, errors="replace", start_new_session=True)
        except OSError as exc:
            raise AdbError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        try:
            out, err = communicate(proc, timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise AdbError(f"`{shown}` timed out after {timeout:g} s") from None
        except KeyboardInterrupt:
            _kill_group(proc)
            raise Interrupted(f"interrupted (Ctrl-C) during `{shown}`", 128 + signal.SIGINT) from None
        except _Terminated:
            _kill_group(proc)
            raise Interrupted(f"terminated (SIGTERM) during `{shown}`", 128 + signal.SIGTERM) from None
        except BaseException:
            _kill_group(proc)
            raise
    return proc.returncode, out, err


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While adb runs, SIGTERM raises _Terminated instead of ending Python at once (which would leave the
    adb child and the command on the phone running). Only where SIGTERM has its default action and we are
    the main thread (the only one Python lets set handlers); a handler someone else installed is kept."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL adb's whole process group (it was started in a session of its own), then reap it."""
    with contextlib.suppress(ProcessLookupError):  # the group may already be gone
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=5)


def _show(argv: list[str], limit: int = 120) -> str:
    text = " ".join(shlex.quote(a) for a in argv)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def why(err: str, out: str = "") -> str:
    """The line that says why an adb call failed: the daemon's fatal log line when the server did not start,
    else adb's first ``adb:``/``error:`` line, else the first line that is not a ``* daemon ...`` notice."""
    fatal = DAEMON_FATAL.search(err)
    if fatal:
        return f"the adb server did not start: {fatal.group(1).strip()}"[:200]
    lines = [ln.strip() for ln in (err + "\n" + out).splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith("* ")]
    errors = [ln for ln in said if ln.startswith(("adb: ", "error: "))]
    return (errors or said or lines or ["(no output)"])[0][:200]


def list_devices(exe: str, timeout: float) -> list[tuple[str, str]]:
    """(serial, state) of every attached device, from ``adb devices`` (bounded by DEVICES_TIMEOUT)."""
    rc, out, err = execute([exe, "devices"], min(timeout, DEVICES_TIMEOUT))
    if rc != 0:
        raise AdbError(f"`adb devices` failed (exit {rc}): {why(err, out)}")
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


@dataclass
class Adb:
    """One device. ``timeout`` bounds every call unless a call gives its own."""

    exe: str
    serial: str
    timeout: float

    def _execute(self, args: list[str], timeout: float | None, shown: str) -> tuple[int, str, str]:
        return execute([self.exe, "-s", self.serial, *args], self.timeout if timeout is None else timeout, shown)

    def _lost(self, out: str, err: str) -> AdbError | None:
        lost = LOST.search(err) or LOST.search(out)
        return AdbError(f"device {self.serial} was lost during the run ({lost.group(0).strip()})") if lost else None

    def run(self, *args: str, timeout: float | None = None) -> tuple[int, str, str]:
        """``adb -s SERIAL args...`` (not ``shell``: see :meth:`shell`); adb's own exit code. AdbError if it
        times out or the device has gone away."""
        rc, out, err = self._execute(list(args), timeout, f"adb {_show(list(args))}")
        if rc != 0:
            lost = self._lost(out, err)
            if lost:
                raise lost
        return rc, out, err

    def check(self, *args: str, timeout: float | None = None) -> str:
        """Like :meth:`run`, but a non-zero exit is an AdbError; returns stdout."""
        rc, out, err = self.run(*args, timeout=timeout)
        if rc != 0:
            raise AdbError(f"`adb {_show(list(args))}` failed (exit {rc}): {why(err, out)}")
        return out

    def shell(self, *argv: str, timeout: float | None = None) -> tuple[int, str, str]:
        """Run a command on the phone; (its exit status, stdout, stderr), LF line ends. Every word is quoted,
        so no argument is ever read as shell syntax. AdbError when the shell did not finish (device lost)."""
        command = " ".join(shlex.quote(a) for a in argv)
        shown = f"adb shell {_show(list(argv))}"
        rc, out, err = self._execute(["shell", f"{command}; echo {EXIT_MARK}$?"], timeout, shown)
        out, err = out.replace("\r\n", "\n"), err.replace("\r\n", "\n")
        status = EXIT.search(out)
        if status:
            return int(status.group(1)), out[: status.start()], err
        lost = self._lost(out, err)
        if lost:
            raise lost
        if rc in (0, 255):  # 255: shell v2 got no exit status; 0: a legacy shell's stream just ended
            raise AdbError(f"device {self.serial} was lost during the run (the connection closed during "
                           f"`{shown}`, adb exit {rc})")
        raise AdbError(f"`{shown}` failed (exit {rc}): {why(err, out)}")

    def shell_check(self, *argv: str, timeout: float | None = None) -> str:
        """Like :meth:`shell`, but a non-zero status is an AdbError; returns stdout."""
        rc, out, err = self.shell(*argv, timeout=timeout)
        if rc != 0:
            raise AdbError(f"`adb shell {_show(list(argv))}` failed (exit {rc}): {why(err, out)}")
        return out

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
