"""Run a library script with real bash on an emulated Linux or macOS device, isolated.

The script runs in bubblewrap (`bwrap`): a private mount namespace whose root is an empty tmpfs
with the host's `/usr`, `/bin`, `/lib*` and `/sbin` read-only (bash, coreutils, perl), the
device's writable areas bound from its private folder (`posix_device`), the device's `bin/` over
`/usr/local/bin` (its `mdatp` model), and the model's state folder; plus new user, PID, network,
IPC and UTS namespaces, a cleared environment, and death with the emulator. The script therefore
sees no host file it could change and no network; it is PID 1 of its namespace, so everything it
started ends with it. It runs as uid 0 in its user namespace: what live response runs a script as
on Linux and macOS is not documented (ANY.RUN's script calls `sudo`); the emulator assumes root.

Live response's own timeout (RunScript: 10 minutes) is modelled by `limit`: when the script is
still running then, it gets `limit_signal` (by default SIGKILL, which nothing can trap: what live
response sends is not documented, and the harsh case is the one the script must survive), and
SIGKILL a little later if it is still there. The script is told that timeout, in whole seconds,
through JOEDEFENDER_LIVE_RESPONSE_TIMEOUT, so its own deadline is compressed like the emulator's
time.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from joedefender_emulators.errors import EmulatorError
from joedefender_emulators.mde import mdatp_model
from joedefender_emulators.mde.posix_device import MODEL_MOUNT, MODEL_STATE_MOUNT, WRITABLE, PosixDevice

LIBRARY_MOUNT = "/run/joedefender-emulator/library"
_GRACE_SECONDS = 5.0
_HOST_READ_ONLY = ("/usr", "/bin", "/lib", "/lib64", "/sbin")


class SandboxUnavailable(EmulatorError):
    """bubblewrap is missing or cannot make namespaces here."""


def bwrap_path() -> str:
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: `make install` installs it as root (Debian package bubblewrap)"
        )
    return found


@dataclass(frozen=True)
class BashRun:
    exit_code: int
    stdout: str
    stderr: str
    signalled: int | None = None  # the signal the limit sent, if it was reached


def _arguments(device: PosixDevice, script: Path, argv: Sequence[str], timeout: int) -> list[str]:
    python_prefix = os.path.realpath(sys.base_prefix)
    args = [bwrap_path(), "--unshare-all", "--unshare-user", "--uid", "0", "--gid", "0"]
    args += ["--as-pid-1", "--die-with-parent", "--new-session", "--clearenv"]
    for folder in _HOST_READ_ONLY:
        args += ["--ro-bind-try", folder, folder]
    if not python_prefix.startswith("/usr/"):
        args += ["--ro-bind", python_prefix, python_prefix]
    args += ["--proc", "/proc", "--dev", "/dev", "--dir", "/etc", "--dir", "/root"]
    for area in WRITABLE[device.os]:
        args += ["--bind", str(device.folder / "fs" / area.lstrip("/")), area]
    args += ["--ro-bind", str(device.folder / "bin"), "/usr/local/bin"]
    args += ["--bind", str(device.folder / "mdatp"), MODEL_STATE_MOUNT]
    args += ["--ro-bind", mdatp_model.__file__, MODEL_MOUNT]
    args += ["--ro-bind", str(script), f"{LIBRARY_MOUNT}/{script.name}"]
    args += ["--chdir", "/", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/root"]
    args += ["--setenv", "JOEDEFENDER_LIVE_RESPONSE_TIMEOUT", str(timeout)]
    return [*args, "/bin/bash", f"{LIBRARY_MOUNT}/{script.name}", *argv]


def _script_pid(sandbox: subprocess.Popen[bytes]) -> int | None:
    """The script's PID on the host: bwrap's one child (the namespace's PID 1)."""
    try:
        children = Path(f"/proc/{sandbox.pid}/task/{sandbox.pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _signal(sandbox: subprocess.Popen[bytes], number: int) -> None:
    pid = _script_pid(sandbox)
    try:
        if pid is not None:
            os.kill(pid, number)
        elif number == signal.SIGKILL:
            sandbox.kill()  # bwrap's child dies with it (--die-with-parent)
    except ProcessLookupError:
        pass


def run_bash(
    device: PosixDevice,
    name: str,
    content: bytes,
    argv: Sequence[str],
    *,
    limit: float,
    limit_signal: int = signal.SIGKILL,
    told_timeout: int | None = None,
) -> BashRun:
    """Run `content` as the library script `name` with `argv`, on `device`, in the sandbox.

    `told_timeout`: the timeout the script is told, when it is not `limit` (a test of a signal
    that comes before the script's own deadline)."""
    script = device.folder / "library" / name
    script.parent.mkdir(exist_ok=True)
    script.write_bytes(content)
    timeout = told_timeout if told_timeout is not None else max(1, math.ceil(limit))
    sandbox = subprocess.Popen(
        _arguments(device, script, argv, timeout),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    signalled = None
    try:
        out, err = sandbox.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        signalled = limit_signal
        _signal(sandbox, limit_signal)
        try:
            out, err = sandbox.communicate(timeout=_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal(sandbox, signal.SIGKILL)
            out, err = sandbox.communicate()
    finally:
        if sandbox.poll() is None:
            sandbox.kill()
            sandbox.wait()
    return BashRun(sandbox.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), signalled)


def sandbox_works() -> str | None:
    """None when bwrap can make its namespaces here; else why not (for a test's skip reason)."""
    try:
        bwrap = bwrap_path()
    except SandboxUnavailable as exc:
        return str(exc)
    probe = subprocess.run(
        [bwrap, "--unshare-all", "--unshare-user", "--uid", "0", "--ro-bind", "/", "/", "/bin/true"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"bwrap cannot create namespaces here: {probe.stderr.decode(errors='replace').strip()[:200]}"
    return None
