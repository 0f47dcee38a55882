"""PgBouncer in front of pg-primary (transaction pooling), part of the replication topology.

Its files live in ``$AIOPD_CLUSTER_DIR/pgbouncer``; it runs as ``postgres`` (it refuses root).
Logging in through it is checked by :class:`~topology.postgres.Postgres`, which owns the
PostgreSQL client.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from .procs import (
    APP_PASSWORD,
    APP_USER,
    TopologyError,
    as_postgres,
    error,
    read_pid,
    run,
    say,
    stop_pid,
    wait,
)

__all__ = ["PgBouncer"]

NAME = "pgbouncer"


class PgBouncer:
    """One PgBouncer listening on ``port``, forwarding every database to ``primary_port``."""

    def __init__(self, state: Path, port: int, primary_port: int) -> None:
        self.dir = state / NAME
        self.port = port
        self.primary_port = primary_port

    @property
    def ini(self) -> Path:
        return self.dir / "pgbouncer.ini"

    @property
    def log(self) -> Path:
        return self.dir / "pgbouncer.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / "pgbouncer.pid"

    def init(self) -> None:
        """Write the configuration and the user list."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ini.write_text(
            f"""[databases]
aiopd = host=127.0.0.1 port={self.primary_port} dbname=aiopd
* = host=127.0.0.1 port={self.primary_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir = {self.dir}
pidfile = {self.pidfile}
logfile = {self.log}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
; The userlist holds the plain password, so PgBouncer can do SCRAM towards clients AND the server.
auth_type = scram-sha-256
auth_file = {self.dir}/userlist.txt
; The app user may read the console (SHOW POOLS, SHOW CLIENTS) in tests.
admin_users = aiopd
stats_users = aiopd
ignore_startup_parameters = extra_float_digits
; After pg-primary was down, retry the server login after 1 s instead of the default 15 s.
server_login_retry = 1
server_connect_timeout = 5
"""
        )
        userlist = self.dir / "userlist.txt"
        userlist.write_text(f'"{APP_USER}" "{APP_PASSWORD}"\n')
        # A root-owned log file left by an earlier root attempt makes PgBouncer exit silently.
        self.log.touch()
        for path in (self.dir, *self.dir.iterdir()):
            shutil.chown(path, "postgres", "postgres")
        userlist.chmod(0o600)

    def pid(self) -> int | None:
        return read_pid(self.pidfile, "pgbouncer")

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        if self.running():
            return
        if not self.ini.is_file():
            raise TopologyError(f"no {self.ini}: run destroy + start")
        # It refuses to start over a pid file whose pid answers kill -0, which a zombie does.
        self.pidfile.unlink(missing_ok=True)
        out = self.dir / "pgbouncer.out"
        try:
            run(as_postgres("pgbouncer", "-d", "-q", self.ini), timeout=30, output=out, append=True)
        except TopologyError as exc:
            raise error(f"pgbouncer did not start: {exc}", [out, self.log]) from None
        wait(self.running, 10, "pgbouncer to write its pid file", logs=[out, self.log])
        say(f"pgbouncer up on :{self.port}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM for a clean stop, SIGKILL for a crash."""
        pid = self.pid()
        if pid is None:
            return
        stop_pid(pid, sig=sig, timeout=30)
        self.pidfile.unlink(missing_ok=True)
        say(f"pgbouncer stopped ({sig.name.removeprefix('SIG')})")
