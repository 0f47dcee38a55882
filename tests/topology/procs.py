"""Process, port and polling helpers shared by every topology (stdlib only).

Every daemon is started with ``start_new_session=True`` and its pid written to a file in the
state directory, so a later ``down`` (possibly another process) stops exactly what it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = [
    "APP_PASSWORD",
    "APP_USER",
    "MARIADBD",
    "PG_BIN",
    "ROOT",
    "TopologyError",
    "apt_install",
    "as_postgres",
    "client_env",
    "daemon",
    "error",
    "offset",
    "parallel",
    "pid_alive",
    "poll",
    "read_pid",
    "run",
    "say",
    "state_dir",
    "stop_pid",
    "tcp_open",
    "wait",
]

ROOT = Path(__file__).resolve().parents[2]
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends"]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
MARIADBD = "/usr/sbin/mariadbd"
#: The application user of every topology; the password makes every URL exercise percent-encoding.
APP_USER, APP_PASSWORD = "aiopd", "p@ss:w/rd 1"
#: Client tools must never pick up a developer's ~/.psqlrc, PGHOST, MYSQL_PWD, ... .
_CLIENT_UNSET = (
    "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE", "PGOPTIONS",
    "MYSQL_HOST", "MYSQL_PWD",
)  # fmt: skip


class TopologyError(RuntimeError):
    """A topology could not be installed, started, changed or stopped; the message says why."""


def offset() -> int:
    text = os.environ.get("AIOPD_PORT_OFFSET") or "0"
    if not text.isdigit():
        raise TopologyError(f"AIOPD_PORT_OFFSET must be a number, got {text!r}")
    return int(text)


def state_dir() -> Path:
    return Path(os.environ.get("AIOPD_CLUSTER_DIR") or ROOT / ".cluster")


def say(message: str) -> None:
    """Progress of the replication topology, on stderr (stdout carries only what a verb prints)."""
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def apt_install(packages: Sequence[str], binaries: Sequence[str]) -> None:
    """Install Debian ``packages`` unless every one of ``binaries`` already exists; apt's output
    goes to stderr."""
    if all(shutil.which(b) or Path(b).exists() for b in binaries):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # The package lists may be missing on a fresh CI machine.
    update = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "update"]
    subprocess.run(update, check=False, env=env, stdin=subprocess.DEVNULL, stdout=2)
    subprocess.run([*APT, *packages], check=True, env=env, stdin=subprocess.DEVNULL, stdout=2)


def as_postgres(*argv: str | Path) -> list[str]:
    """``argv`` run as the ``postgres`` user (PostgreSQL and PgBouncer refuse root); setpriv needs
    neither PAM nor a tty."""
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *map(str, argv)]


def client_env(**extra: str) -> dict[str, str]:
    """The environment for server and client tools: PostgreSQL's and Debian's sbin binaries on
    PATH (a CI user's PATH may lack sbin), no connection defaults from the caller."""
    env = {key: value for key, value in os.environ.items() if key not in _CLIENT_UNSET}
    env["PATH"] = f"{PG_BIN}:/usr/sbin:/sbin:{env.get('PATH') or '/usr/bin:/bin'}"
    env.update(extra)
    return env


def run(
    argv: Sequence[str | Path],
    *,
    timeout: float = 120.0,
    output: Path | None = None,
    append: bool = False,
    env: dict[str, str] | None = None,
) -> str:
    """Run ``argv`` (stdin from /dev/null, environment :func:`client_env`); its stdout, stripped.

    ``output``: stdout and stderr go to that file instead (truncated, or appended to), and ""
    is returned; a daemon that keeps them open then holds no pipe of ours. Raises TopologyError
    naming the program with its stderr when it fails or outlives ``timeout``.
    """
    args = [str(arg) for arg in argv]
    name = next((Path(a).name for a in args if not a.startswith("-") and a != "setpriv"), args[0])
    try:
        if output is None:
            proc = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=env or client_env(),
                cwd="/",
                timeout=timeout,
                check=False,
            )
        else:
            with output.open("a" if append else "w") as out:
                proc = subprocess.run(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=env or client_env(),
                    cwd="/",
                    timeout=timeout,
                    check=False,
                )
    except subprocess.TimeoutExpired as exc:
        raise TopologyError(f"{name}: no answer after {timeout:g} s") from exc
    except OSError as exc:
        raise TopologyError(f"{name}: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip() if output is None else f"see {output}"
        raise TopologyError(f"{name} exited {proc.returncode}: {detail}")
    return (proc.stdout or "").strip()


def parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` side by side, wait for all of them; their results, or one TopologyError with
    the message of each call that failed."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
    failures = [exc for future in futures if (exc := future.exception()) is not None]
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise TopologyError("\n".join(str(exc) for exc in failures))
    return [f.result() for f in futures]


def daemon(argv: Sequence[str], *, log: Path, pidfile: Path | None = None) -> int:
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
    if pidfile is not None:
        pidfile.write_text(f"{pid}\n")
    return pid


def read_pid(pidfile: Path, comm: str | None = None) -> int | None:
    """The live pid in ``pidfile``; with ``comm``, only if that pid still runs ``comm`` (pids get
    reused)."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not pid_alive(pid):
        return None
    if comm is not None:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != comm:
                return None
        except OSError:
            return None
    return pid


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie counts as gone: it holds no socket or file any more, yet it
    answers ``kill -0``, and PID 1 here reaps slowly."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # comm may hold spaces and parentheses: the state follows the last ") ".
    if stat.rpartition(") ")[2][:1] != "Z":
        return True
    with contextlib.suppress(ChildProcessError):  # a zombie child of ours: reap it
        os.waitpid(pid, os.WNOHANG)
    return False


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


def poll(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` every 0.1 s until it is true (True) or ``timeout`` passed (False); a
    TopologyError raised by the predicate counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except TopologyError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def wait(predicate: Callable[[], bool], timeout: float, what: str, *, logs: Sequence[Path] = ()) -> float:
    """Poll ``predicate`` until true; return the seconds it took, or raise naming ``what`` with the
    tails of ``logs``."""
    started = time.monotonic()
    if not poll(predicate, timeout):
        raise error(f"timed out after {timeout:g} s waiting for {what}", logs)
    return time.monotonic() - started


def error(message: str, logs: Sequence[Path] = ()) -> TopologyError:
    """A TopologyError saying ``message``, followed by the tail of each log (which usually says why
    a server did not come up)."""
    return TopologyError(message + "".join(_tail(path) for path in logs))


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    if not text:
        return ""
    return f"\n----- tail of {path} -----\n" + "\n".join(text)
