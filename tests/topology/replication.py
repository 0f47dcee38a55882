"""The replication topology: PostgreSQL 15 with two streaming standbys and PgBouncer
(``postgres.py``, ``pgbouncer.py``), MariaDB with a GTID replica (``mariadb.py``).

::

    pg-primary :55432  -> pg-replica-1 :55433, pg-replica-2 :55434 (streaming)
    pgbouncer  :56432  -> pg-primary (transaction pooling)
    my-primary :53306  -> my-replica :53307 (GTID, read_only)

every port plus ``AIOPD_PORT_OFFSET``, on 127.0.0.1, all state (data, sockets, logs, pid files)
in ``$AIOPD_CLUSTER_DIR`` (default ``<repo>/.cluster``). The application user ``aiopd`` owns the
databases ``aiopd``, ``shard1``..``shard3`` and ``chaos`` on both servers.

:class:`Replication` has one method per verb of ``scripts/cluster.sh`` (``python -m topology
replication VERB``); the tests call the same methods for their faults. Verbs that change the
topology hold a file lock, so that concurrent callers (several test sessions, threads) queue.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from . import mariadb, postgres
from .mariadb import MariaDB
from .postgres import Postgres
from .procs import (
    APP_PASSWORD,
    APP_USER,
    PG_BIN,
    TopologyError,
    apt_install,
    as_postgres,
    client_env,
    offset,
    parallel,
    run,
    say,
    state_dir,
)

__all__ = ["NODES", "USAGE", "Replication", "main"]

USAGE = """\
Real replicated database topologies on 127.0.0.1 for the test-suite.

  PostgreSQL 15: pg-primary :55432, streaming standbys pg-replica-1 :55433, pg-replica-2 :55434
  PgBouncer:     pgbouncer :56432 (transaction pooling) in front of pg-primary
  MariaDB:       my-primary :53306, GTID replica my-replica :53307 (read_only)

Usage: scripts/cluster.sh VERB [ARGS]   (or: PYTHONPATH=tests python3 -m topology replication VERB [ARGS])
  install                       apt-get install mariadb-server/pgbouncer if missing
  start [pg|mysql|all]          init (first time) or start stopped nodes; wait until healthy
  stop [pg|mysql|all]           stop what this script started
  destroy                       stop everything and delete the state dir
  status                        one line per node
  env                           print (and write $STATE/env) the export lines: AIOPD_* per
                                node, and DATABASE_URL / DATABASE_REPLICA_URLS (the PostgreSQL
                                primary and standbys) for Manager.from_env() and the CLI
  delay NODE SECS               replica replay delay (0 removes it)
  pause NODE | resume NODE      pause/resume replay on a replica
  down NODE | up NODE           crash a node / start it again
  promote NODE                  turn a replica into a primary (changes the topology)
  reset [pg|mysql|all]          back to the original healthy topology
  wait-sync [pg|mysql|all]      wait until the replicas replayed the primary's position

NODE: pg-primary pg-replica-1 pg-replica-2 my-primary my-replica pgbouncer

All state (data, sockets, logs, pid files) lives in ${AIOPD_CLUSTER_DIR:-<repo>/.cluster}.
AIOPD_PORT_OFFSET=N adds N to every port above (default 0).
Progress goes to stderr; only `env`/`start` print export lines and `status` its table on stdout."""

BASE_PORTS = {
    "pg-primary": 55432,
    "pg-replica-1": 55433,
    "pg-replica-2": 55434,
    "my-primary": 53306,
    "my-replica": 53307,
    "pgbouncer": 56432,
}
NODES = tuple(BASE_PORTS)
REPLICAS = (*postgres.REPLICAS, mariadb.REPLICA)
PARTS = ("pg", "mysql", "all")
#: Verbs whose first argument is a NODE.
NODE_VERBS = ("delay", "pause", "resume", "down", "up", "promote")
VERBS = ("install", "start", "stop", "destroy", "status", "env", *NODE_VERBS, "reset", "wait-sync")
#: Package -> the binary that shows it is installed.
PACKAGES = {
    "mariadb-server": "/usr/sbin/mariadbd",
    "pgbouncer": "/usr/sbin/pgbouncer",
    "postgresql-15": str(PG_BIN / "postgres"),
}
RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
LOCK_SECS = 300


def _kind(node: str) -> str:
    """``pg``, ``my`` or ``bouncer``."""
    if node in postgres.NODES:
        return "pg"
    if node in (mariadb.PRIMARY, mariadb.REPLICA):
        return "my"
    if node == "pgbouncer":
        return "bouncer"
    raise TopologyError(f"unknown node '{node}' ({' '.join(NODES)})")


def _part(part: str | None) -> str:
    part = part or "all"
    if part not in PARTS:
        raise TopologyError(f"expected pg, mysql or all, got '{part}'")
    return part


def _timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def _seconds(value: float | str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value >= 0 and math.isfinite(value):
            return float(value)
    elif re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
        return float(value)
    raise TopologyError(f"SECS must be a non-negative number, got '{value}'")


class Replication:
    """The replication topology: install, start, stop, faults, status, and its URLs."""

    def __init__(self) -> None:
        base = offset()
        self.dir = state_dir().absolute()
        self.ports = {node: port + base for node, port in BASE_PORTS.items()}
        self.postgres = Postgres(self.dir, self.ports)
        self.mariadb = MariaDB(self.dir, self.ports)
        #: Seconds each part took to become healthy in the last start or reset.
        self.times: dict[str, float] = {}
        self._local = threading.local()

    # -- URLs ------------------------------------------------------------------------

    def url(self, node: str, database: str = "aiopd") -> str:
        """``node``'s URL for the application user."""
        scheme = {"pg": "postgresql", "bouncer": "postgresql", "my": "mysql"}[_kind(node)]
        return f"{scheme}://{APP_USER}:{quote(APP_PASSWORD, safe='')}@127.0.0.1:{self.ports[node]}/{database}"

    def env(self) -> dict[str, str]:
        """The ``AIOPD_*`` variable of each node, and ``DATABASE_URL`` / ``DATABASE_REPLICA_URLS``
        (the PostgreSQL primary and standbys) for ``Manager.from_env()`` and the CLI."""
        return {
            "AIOPD_PG_PRIMARY": self.url("pg-primary"),
            "AIOPD_PG_REPLICA_1": self.url("pg-replica-1"),
            "AIOPD_PG_REPLICA_2": self.url("pg-replica-2"),
            "AIOPD_MY_PRIMARY": self.url("my-primary"),
            "AIOPD_MY_REPLICA": self.url("my-replica"),
            "AIOPD_PGBOUNCER": self.url("pgbouncer"),
            "DATABASE_URL": self.url("pg-primary"),
            "DATABASE_REPLICA_URLS": f"{self.url('pg-replica-1')},{self.url('pg-replica-2')}",
        }

    def env_text(self) -> str:
        """The ``export`` lines of :meth:`env`, also written to ``$AIOPD_CLUSTER_DIR/env``."""
        text = "\n".join(f"export {name}={value}" for name, value in self.env().items())
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "env").write_text(text + "\n")
        return text

    # -- lock, state dir, ports ------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """The file lock of this state dir, held by one caller at a time (re-entrant per thread)."""
        if getattr(self._local, "held", False):
            yield
            return
        digest = hashlib.md5(str(self.dir).encode()).hexdigest()[:12]
        path = Path(os.environ.get("TMPDIR") or "/tmp") / f"aiopd-cluster.{digest}.lock"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + LOCK_SECS
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TopologyError(
                            f"could not get the cluster lock {path} within {LOCK_SECS} s"
                        ) from None
                    time.sleep(0.1)
            self._local.held = True
            try:
                yield
            finally:
                self._local.held = False
        finally:
            os.close(fd)

    def _ensure_state_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # postgres and mysql must be able to reach their subdirectories.
        self.dir.chmod(0o755)
        for parent in self.dir.parents:
            try:
                run(as_postgres("test", "-x", parent), timeout=30)
            except TopologyError:
                raise TopologyError(
                    f"user postgres cannot enter {parent}; set AIOPD_CLUSTER_DIR to a world-traversable path"
                ) from None

    def reserve_ports(self) -> None:
        """Add the ports to the kernel's reserved ones (appended: other reservations stay).

        They lie inside the ephemeral range (32768-60999): a client socket opened elsewhere (Patroni
        and etcd start beside this in ``make test``) could take one as its source port just before
        a server binds it ("Address already in use").
        """
        if not os.access(RESERVED_PORTS, os.W_OK):
            return
        ports = ",".join(str(port) for port in self.ports.values())
        try:
            current = RESERVED_PORTS.read_text().strip()
            RESERVED_PORTS.write_text(f"{current},{ports}" if current else ports)
        except OSError:
            say(f"could not reserve ports {ports} (continuing)")

    # -- install, start, stop --------------------------------------------------------

    def install(self) -> None:
        """apt-get install what is missing (MariaDB, PgBouncer, PostgreSQL 15, setpriv)."""
        with self._lock():
            # Also here: `make test` installs before the HA topologies start opening sockets.
            self.reserve_ports()
            self._install_packages()

    def _install_packages(self) -> None:
        missing = {pkg: binary for pkg, binary in PACKAGES.items() if not os.access(binary, os.X_OK)}
        if not shutil.which("setpriv", path=client_env()["PATH"]):
            missing["util-linux"] = "setpriv"
        if not missing:
            say("install: everything present")
            return
        say(f"install: apt-get install {' '.join(missing)}")
        apt_install(list(missing), list(missing.values()))

    def start(self, part: str = "all") -> float:
        """Build (the first time) and start ``part`` (pg, mysql or all, side by side); wait until
        healthy. Returns the seconds taken; :attr:`times` holds those of each part."""
        part = _part(part)
        with self._lock():
            started = time.monotonic()
            self.reserve_ports()
            # Install before going parallel: two apt-get runs would fight over the dpkg lock.
            if not all(os.access(binary, os.X_OK) for binary in PACKAGES.values()):
                self._install_packages()
            self._ensure_state_dir()
            self.times = self._each(part, self.postgres.start, self.mariadb.start)
            return self._report("start", part, started)

    def _each(self, part: str, pg: Callable[[], object], mysql: Callable[[], object]) -> dict[str, float]:
        """Run the part's call, or both side by side for ``all`` (they mostly wait on I/O);
        ``{part: seconds it took}``."""
        chosen = {name: call for name, call in (("pg", pg), ("mysql", mysql)) if part in (name, "all")}
        seconds = parallel(*(functools.partial(_timed, call) for call in chosen.values()))
        return dict(zip(chosen, seconds, strict=True))

    def _report(self, verb: str, part: str, started: float) -> float:
        seconds = time.monotonic() - started
        each = ", ".join(f"{name} {secs:.1f} s" for name, secs in self.times.items())
        say(f"{verb} {part}: healthy ({seconds:.1f} s; {each})")
        return seconds

    def stop(self, part: str = "all") -> None:
        """Stop what runs: PgBouncer, the standbys, then the primary (fast shutdown); the MariaDB
        replica, then its primary (SIGTERM)."""
        part = _part(part)
        with self._lock():
            if part != "mysql":
                self.postgres.stop()
            if part != "pg":
                self.mariadb.stop()

    def destroy(self) -> None:
        """Kill every node and delete the whole state dir."""
        with self._lock():
            self.postgres.destroy()
            self.mariadb.destroy()
            shutil.rmtree(self.dir, ignore_errors=True)
            say(f"destroyed {self.dir}")

    # -- status ----------------------------------------------------------------------

    def status(self) -> str:
        """One line per node: port, up/down, role, and the replication detail."""
        rows = [("NODE", "PORT", "STATE", "ROLE", "DETAIL")]
        port = self.ports
        rows += [(node, str(port[node]), *rest) for node, *rest in self.postgres.status_rows()]
        if self.postgres.bouncer.running():
            rows.append(
                ("pgbouncer", str(port["pgbouncer"]), "up", "pooler", f"-> pg-primary :{port['pg-primary']}")
            )
        else:
            rows.append(("pgbouncer", str(port["pgbouncer"]), "down", "pooler", "-"))
        rows += [(node, str(port[node]), *rest) for node, *rest in self.mariadb.status_rows()]
        return "\n".join(f"{n:<13} {p:<6} {s:<5} {r:<8} {d}" for n, p, s, r, d in rows)

    # -- faults ----------------------------------------------------------------------

    def _replica(self, node: str) -> Postgres | MariaDB:
        """The topology that holds replica ``node``, which must be running."""
        kind = _kind(node)
        if node not in REPLICAS:
            raise TopologyError(f"{node} is not a replica")
        side: Postgres | MariaDB = self.postgres if kind == "pg" else self.mariadb
        if not side.running(node):
            raise TopologyError(f"{node} is down")
        return side

    def delay(self, node: str, seconds: float | str) -> None:
        """Replica ``node`` applies changes ``seconds`` late; 0 removes the delay."""
        with self._lock():
            self._replica(node).delay(node, _seconds(seconds))

    def pause(self, node: str) -> None:
        """Stop replay on replica ``node`` (it keeps receiving)."""
        with self._lock():
            self._replica(node).pause(node)
            say(f"{node}: replay paused")

    def resume(self, node: str) -> None:
        with self._lock():
            self._replica(node).resume(node)
            say(f"{node}: replay resumed")

    def down(self, node: str) -> None:
        """Crash ``node``: PostgreSQL's immediate stop, SIGKILL for mariadbd and PgBouncer."""
        kind = _kind(node)
        with self._lock():
            if kind == "pg":
                self.postgres.stop_node(node, "immediate")
            elif kind == "my":
                self.mariadb.stop_node(node, signal.SIGKILL)
            else:
                self.postgres.bouncer.stop(signal.SIGKILL)

    def up(self, node: str) -> None:
        """Start ``node`` again and wait until it serves (and replicates, or is replicated from)."""
        kind = _kind(node)
        with self._lock():
            if kind == "pg":
                self.postgres.up(node)
            elif kind == "my":
                self.mariadb.up(node)
            else:
                self.postgres.up_bouncer()
            say(f"{node}: up")

    def promote(self, node: str) -> None:
        """Turn replica ``node`` into a primary. The old primary keeps running (take it ``down``
        first for a real failover); the topology stays changed until :meth:`reset`."""
        with self._lock():
            self._replica(node).promote(node)
            say(f"{node}: promoted to primary")

    def reset(self, part: str = "all") -> float:
        """Back to the original healthy topology; the seconds it took."""
        part = _part(part)
        with self._lock():
            started = time.monotonic()
            self._ensure_state_dir()
            self.times = self._each(part, self.postgres.reset, self.mariadb.reset)
            return self._report("reset", part, started)

    def wait_sync(self, part: str = "all") -> None:
        """Wait until the replicas replayed their primary's current position."""
        part = _part(part)
        with self._lock():
            if part != "mysql":
                self.postgres.wait_sync()
            if part != "pg":
                self.mariadb.wait_sync()

    # -- the CLI verbs ---------------------------------------------------------------

    def command(self, args: Sequence[str]) -> str:
        """Run one verb with its string arguments, as ``scripts/cluster.sh`` takes them; what it
        prints on stdout."""
        if not args or args[0] not in VERBS:
            raise TopologyError(f"unknown verb '{args[0] if args else ''}'")
        verb, rest = args[0], list(args[1:])
        if verb in NODE_VERBS:
            if not rest:
                raise TopologyError(f"{verb} needs a NODE")
            _kind(rest[0])
        part = rest[0] if rest else "all"
        if verb == "install":
            self.install()
        elif verb == "start":
            self.start(part)
            return self.env_text()
        elif verb == "stop":
            self.stop(part)
        elif verb == "destroy":
            self.destroy()
        elif verb == "status":
            return self.status()
        elif verb == "env":
            return self.env_text()
        elif verb == "delay":
            if len(rest) < 2:
                raise TopologyError("delay NODE SECS")
            self.delay(rest[0], rest[1])
        elif verb == "reset":
            self.reset(part)
        elif verb == "wait-sync":
            self.wait_sync(part)
        else:
            getattr(self, verb)(rest[0])
        return ""


def main(argv: Sequence[str]) -> int:
    """``scripts/cluster.sh``: exit 0, 1 (the verb failed, stderr says why) or 2 (usage)."""
    if not argv or argv[0] in ("help", "-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] not in VERBS:
        print(f"cluster: unknown verb '{argv[0]}'\n{USAGE}", file=sys.stderr)
        return 2
    try:
        topology = Replication()
    except TopologyError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 2
    try:
        output = topology.command(argv)
    except TopologyError as exc:
        print(f"cluster: ERROR: {exc}", file=sys.stderr)
        return 1
    if output:
        print(output, flush=True)
    return 0
