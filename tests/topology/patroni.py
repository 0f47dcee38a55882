"""PostgreSQL 15 x3 under Patroni (from pip, in a venv the postgres user can run) with one etcd.

::

    etcd       client :22379, peer :22380
    pg1..pg3   PostgreSQL :25432..25434, Patroni REST API :28008..28010

every port plus ``AIOPD_PORT_OFFSET``, all on 127.0.0.1, state under ``$AIOPD_CLUSTER_DIR/ha``.
``synchronous_mode`` is on, ``ttl`` 20 s (Patroni's minimum), ``loop_wait`` 2 s. The application
user ``aiopd`` owns the databases ``aiopd`` and ``chaos``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .procs import (
    APP_PASSWORD,
    APP_USER,
    PG_BIN,
    TopologyError,
    apt_install,
    as_postgres,
    daemon,
    offset,
    read_pid,
    state_dir,
    stop_pid,
    tcp_open,
    wait,
)

__all__ = ["Patroni"]

SU_PASSWORD = "su-secret"
MEMBERS = ("pg1", "pg2", "pg3")
PATRONI_VERSION = "4.1.5"
TTL = 20


@dataclass(frozen=True)
class Member:
    name: str
    pg_port: int
    rest_port: int

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"


class Patroni:
    """The Patroni topology: install, start, stop, faults, and what tests need to reach it."""

    def __init__(self) -> None:
        base = offset()
        self.dir = state_dir() / "ha"
        self.etcd_port = 22379 + base
        self.etcd_peer_port = 22380 + base
        self.members = [Member(name, 25432 + base + i, 28008 + base + i) for i, name in enumerate(MEMBERS)]
        self.venv = self.dir / "patroni-venv"
        self.scope = f"aiopd-ha-{base}"

    # -- URLs ------------------------------------------------------------------------

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        raise TopologyError(f"no Patroni member {name!r} (known: {', '.join(MEMBERS)})")

    def url(self, name: str, database: str = "aiopd") -> str:
        password = quote(APP_PASSWORD, safe="")
        return f"postgresql://{APP_USER}:{password}@127.0.0.1:{self.member(name).pg_port}/{database}"

    def su_url(self, name: str, database: str = "postgres") -> str:
        return f"postgresql://postgres:{SU_PASSWORD}@127.0.0.1:{self.member(name).pg_port}/{database}"

    @property
    def rest_urls(self) -> list[str]:
        return [member.rest_url for member in self.members]

    def env(self) -> dict[str, str]:
        return {
            "AIOPD_PATRONI_REST": ",".join(self.rest_urls),
            **{f"AIOPD_PATRONI_{m.name.upper()}": self.url(m.name) for m in self.members},
        }

    # -- install ---------------------------------------------------------------------

    def install(self) -> None:
        apt_install(
            ["etcd-server", "etcd-client", "postgresql-15"], ["/usr/bin/etcd", str(PG_BIN / "postgres")]
        )
        if (self.venv / "bin" / "patroni").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        # /usr/bin/python3: a venv of a Python under root's home (mode 0700) cannot be run by postgres.
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(self.venv)], check=True)
        pip = [str(self.venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, f"patroni[etcd3]=={PATRONI_VERSION}", "psycopg2-binary"], check=True)

    # -- cluster state ---------------------------------------------------------------

    def cluster(self, *, timeout: float = 2.0) -> dict[str, Any] | None:
        """``GET /cluster`` from the first member that answers, or None."""
        for member in self.members:
            try:
                with urllib.request.urlopen(f"{member.rest_url}/cluster", timeout=timeout) as resp:
                    data: dict[str, Any] = json.load(resp)
                    return data
            except (OSError, ValueError, urllib.error.URLError):
                continue
        return None

    def roles(self) -> dict[str, tuple[str, str]]:
        """``{member: (role, state)}`` as Patroni reports them now (empty when no member answers)."""
        data = self.cluster() or {}
        return {m["name"]: (m.get("role", ""), m.get("state", "")) for m in data.get("members", [])}

    def leader(self) -> str | None:
        return next(
            (n for n, (role, state) in self.roles().items() if role == "leader" and state == "running"), None
        )

    def sync_standby(self) -> str | None:
        return next(
            (
                n
                for n, (role, state) in self.roles().items()
                if role == "sync_standby" and state == "streaming"
            ),
            None,
        )

    def healthy(self) -> bool:
        """A running leader, every other member streaming, one of them the synchronous standby."""
        roles = self.roles()
        if len(roles) != len(self.members):
            return False
        leaders = [n for n, (role, state) in roles.items() if role == "leader" and state == "running"]
        streaming = [
            n
            for n, (role, state) in roles.items()
            if role in ("replica", "sync_standby") and state == "streaming"
        ]
        return (
            len(leaders) == 1 and len(streaming) == len(self.members) - 1 and self.sync_standby() is not None
        )

    def timeline_of_all(self) -> set[int]:
        return {int(m.get("timeline", 0)) for m in (self.cluster() or {}).get("members", [])}

    # -- start / stop ----------------------------------------------------------------

    def _config(self, member: Member) -> dict[str, Any]:
        run = self.dir / "run"
        return {
            "scope": self.scope,
            "name": member.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{member.rest_port}",
                "connect_address": f"127.0.0.1:{member.rest_port}",
            },
            "etcd3": {"hosts": f"127.0.0.1:{self.etcd_port}"},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL,
                    "loop_wait": 2,
                    "retry_timeout": 5,
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "wal_log_hints": "on",
                            "max_wal_senders": 10,
                            "shared_buffers": "32MB",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{member.pg_port}",
                "connect_address": f"127.0.0.1:{member.pg_port}",
                "data_dir": str(self.dir / member.name),
                "bin_dir": str(PG_BIN),
                "pgpass": str(run / f"pgpass-{member.name}"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": SU_PASSWORD},
                    "replication": {"username": "replicator", "password": "repl-secret"},
                    "rewind": {"username": "rewinder", "password": "rewind-secret"},
                },
                "parameters": {"unix_socket_directories": str(run), "max_connections": 100},
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
            },
        }

    def _prepare(self) -> None:
        run = self.dir / "run"
        for path in (self.dir, run):
            path.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "postgres", "postgres")
        for member in self.members:
            data = self.dir / member.name
            if not data.exists():
                # Patroni's initdb/basebackup runs as postgres and cannot create it under our dir.
                data.mkdir(mode=0o700)
                shutil.chown(data, "postgres", "postgres")
            # JSON is YAML: no YAML library needed here.
            config = self.dir / f"{member.name}.yml"
            config.write_text(json.dumps(self._config(member), indent=1))
            os.chmod(config, 0o644)

    def start(self) -> float:
        """Start etcd and the members that are not running; wait until healthy; seconds taken."""
        started = time.monotonic()
        self._prepare()
        self._start_etcd()
        for member in self.members:
            self.start_member(member.name, wait_healthy=False)
        logs = [self.dir / f"{m.name}.log" for m in self.members]
        wait(self.healthy, 90, "Patroni: a leader, 2 streaming replicas, a sync standby", logs=logs)
        self._create_app_user()
        return time.monotonic() - started

    def _start_etcd(self) -> None:
        if read_pid(self.dir / "etcd.pid") is not None:
            return
        peer, client = f"http://127.0.0.1:{self.etcd_peer_port}", f"http://127.0.0.1:{self.etcd_port}"
        argv = [
            "etcd", "--name", "ha-etcd", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"ha-etcd={peer}", "--initial-cluster-state", "new",
        ]  # fmt: skip
        daemon(argv, log=self.dir / "etcd.log", pidfile=self.dir / "etcd.pid")
        wait(lambda: tcp_open(self.etcd_port), 30, "etcd", logs=[self.dir / "etcd.log"])

    def start_member(self, name: str, *, wait_healthy: bool = True) -> float:
        """Start one member's Patroni (it starts, rewinds or rebuilds its PostgreSQL)."""
        started = time.monotonic()
        member = self.member(name)
        if read_pid(self.dir / f"{name}.pid") is None:
            argv = as_postgres(
                "env", "HOME=/var/lib/postgresql", self.venv / "bin" / "patroni", self.dir / f"{name}.yml"
            )
            daemon(argv, log=self.dir / f"{name}.log", pidfile=self.dir / f"{name}.pid")
        if wait_healthy:
            wait(
                self.healthy,
                90,
                f"Patroni healthy after starting {member.name}",
                logs=[self.dir / f"{name}.log"],
            )
        return time.monotonic() - started

    def _create_app_user(self) -> None:
        leader = self.leader()
        if leader is None:
            raise TopologyError("Patroni has no leader")
        sql = (
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_USER}') THEN "
            f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'; END IF; END $$;"
        )
        self.psql(leader, sql)
        for database in ("aiopd", "chaos"):
            if self.psql(leader, f"SELECT 1 FROM pg_database WHERE datname = '{database}'") != "1":
                self.psql(leader, f"CREATE DATABASE {database} OWNER {APP_USER}")

    def psql(self, name: str, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as postgres on member ``name`` over its Unix socket; its output."""
        argv = as_postgres(
            PG_BIN / "psql", "-h", self.dir / "run", "-p", str(self.member(name).pg_port), "-d", database,
            "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql,
        )  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        if proc.returncode != 0:
            raise TopologyError(f"psql on {name}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def stop(self) -> None:
        """Stop every Patroni (each stops its PostgreSQL), then etcd."""
        pids = [read_pid(self.dir / f"{m.name}.pid") for m in self.members]
        for pid in pids:
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            stop_pid(pid, timeout=30)
        for member in self.members:  # a postmaster left behind by a killed Patroni
            stop_pid(self._postmaster_pid(member.name), sig=signal.SIGINT, timeout=30)
        stop_pid(read_pid(self.dir / "etcd.pid"))

    def destroy(self) -> None:
        self.stop()
        for path in [self.dir / m.name for m in self.members] + [self.dir / "etcd", self.dir / "run"]:
            shutil.rmtree(path, ignore_errors=True)

    # -- faults ----------------------------------------------------------------------

    def _postmaster_pid(self, name: str) -> int | None:
        return read_pid(self.dir / name / "postmaster.pid")

    def switchover(self, candidate: str | None = None) -> str:
        """``patronictl switchover`` from the leader to ``candidate`` (default: the sync standby).

        With synchronous_mode Patroni refuses other candidates, yet patronictl exits 0: the
        result is checked on ``/cluster`` instead. Returns the candidate.
        """
        leader, target = self.leader(), candidate or self.sync_standby()
        if leader is None or target is None:
            raise TopologyError(f"no leader or sync standby to switch over: {self.roles()}")
        argv = [
            str(self.venv / "bin" / "patronictl"), "-c", str(self.dir / f"{leader}.yml"),
            "switchover", self.scope, "--leader", leader, "--candidate", target, "--force",
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode != 0 or "failed" in proc.stdout.lower():
            raise TopologyError(f"patronictl switchover: {proc.stdout.strip()} {proc.stderr.strip()}")
        return target

    def kill_member(self, name: str) -> None:
        """SIGKILL the member's Patroni and its postmaster (a crashed machine, as Patroni sees it)."""
        patroni, postmaster = read_pid(self.dir / f"{name}.pid"), self._postmaster_pid(name)
        for pid in (patroni, postmaster):
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        for pid in (patroni, postmaster):
            stop_pid(pid, sig=signal.SIGKILL, timeout=10)

    def status(self) -> dict[str, tuple[str, str]]:
        return self.roles()
