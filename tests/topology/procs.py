"""Process, port and polling helpers shared by every topology (stdlib only).

Every daemon is started with ``start_new_session=True`` and its pid written to a file in the
state directory, so a later ``down`` (possibly another process) stops exactly what it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "ROOT",
    "TopologyError",
    "apt_install",
    "daemon",
    "offset",
    "pid_alive",
    "read_pid",
    "state_dir",
    "stop_pid",
    "tcp_open",
    "wait",
]

ROOT = Path(__file__).resolve().parents[2]
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends"]


class TopologyError(RuntimeError):
    """A topology could not be installed, started, changed or stopped; the message says why."""


def offset() -> int:
    text = os.environ.get("AIOPD_PORT_OFFSET") or "0"
    if not text.isdigit():
        raise TopologyError(f"AIOPD_PORT_OFFSET must be a number, got {text!r}")
    return int(text)


def state_dir() -> Path:
    return Path(os.environ.get("AIOPD_CLUSTER_DIR") or ROOT / ".cluster")


def apt_install(packages: Sequence[str], binaries: Sequence[str]) -> None:
    """Install Debian ``packages`` unless every one of ``binaries`` already exists."""
    if all(shutil.which(b) or Path(b).exists() for b in binaries):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # The package lists may be missing on a fresh CI machine.
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update"], check=False, env=env)
    subprocess.run([*APT, *packages], check=True, env=env)


def daemon(argv: Sequence[str], *, log: Path, pidfile: Path) -> int:
    """Start ``argv`` as a daemon in its own session, output to ``log``; record and return its pid.

    A shell starts it in the background and exits at once, so the daemon is not our child (no
    zombie, no Popen left running). Without job control ``setsid`` is no group leader there, so it
    execs in place and ``$!`` is the daemon's own pid.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    script = 'setsid "$@" >>"$AIOPD_DAEMON_LOG" 2>&1 </dev/null & echo $!'
    proc = subprocess.run(
        ["sh", "-c", script, "sh", *argv],
        env={**os.environ, "AIOPD_DAEMON_LOG": str(log)},
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(proc.stdout.split()[0])
    pidfile.write_text(f"{pid}\n")
    return pid


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return not os.waitpid(pid, os.WNOHANG)[0]
    except ChildProcessError:
        return True


def stop_pid(pid: int | None, *, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Send ``sig``, wait for the process to go; SIGKILL it after ``timeout``."""
    if pid is None or not pid_alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.05)


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait(predicate: Callable[[], bool], timeout: float, what: str, *, logs: Sequence[Path] = ()) -> float:
    """Poll ``predicate`` until true; return the seconds it took, or raise naming ``what`` with the
    tails of ``logs``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            tails = "".join(_tail(path) for path in logs)
            raise TopologyError(f"timed out after {timeout:g} s waiting for {what}{tails}")
        time.sleep(0.1)
    return time.monotonic() - started


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n----- tail of {path} -----\n" + "\n".join(text)
