"""MariaDB 10.11 x3 as a Galera cluster (Debian ``galera-4``, rsync SST).

::

    g1..g3   MariaDB :23306..23308, gcomm :24567/:24577/:24587 (IST one above), SST :24597..24599

every port plus ``AIOPD_PORT_OFFSET``, on 127.0.0.1, state under ``$AIOPD_CLUSTER_DIR/galera``.
mariadbd starts as root and drops to ``mysql``; root logs in over the socket, the application
user ``aiopd`` over TCP (databases ``aiopd`` and ``chaos``).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .procs import (
    APP_PASSWORD,
    APP_USER,
    MARIADBD,
    TopologyError,
    apt_install,
    daemon,
    offset,
    read_pid,
    state_dir,
    stop_pid,
    wait,
)

__all__ = ["Galera"]

NODES = ("g1", "g2", "g3")


@dataclass(frozen=True)
class GNode:
    name: str
    port: int
    gcomm: int
    sst: int


class Galera:
    """The Galera topology: install, start, stop, faults, URLs."""

    def __init__(self) -> None:
        base = offset()
        self.dir = state_dir() / "galera"
        self.nodes = [
            GNode(n, 23306 + base + i, 24567 + base + 10 * i, 24597 + base + i) for i, n in enumerate(NODES)
        ]

    def node(self, name: str) -> GNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise TopologyError(f"no Galera node {name!r} (known: {', '.join(NODES)})")

    def url(self, name: str, database: str = "aiopd") -> str:
        password = quote(APP_PASSWORD, safe="")
        return f"mysql://{APP_USER}:{password}@127.0.0.1:{self.node(name).port}/{database}"

    def env(self) -> dict[str, str]:
        return {f"AIOPD_GALERA_{n.name.upper()}": self.url(n.name) for n in self.nodes}

    def install(self) -> None:
        apt_install(
            ["mariadb-server", "galera-4", "rsync"], [MARIADBD, "/usr/lib/galera/libgalera_smm.so", "rsync"]
        )

    # -- files -----------------------------------------------------------------------

    def _home(self, name: str) -> Path:
        return self.dir / name

    def _cnf(self, name: str) -> Path:
        return self.dir / f"{name}.cnf"

    def _write_cnf(self, node: GNode) -> None:
        home = self._home(node.name)
        peers = ",".join(f"127.0.0.1:{n.gcomm}" for n in self.nodes)
        options = (
            f"gmcast.listen_addr=tcp://127.0.0.1:{node.gcomm};"
            f"ist.recv_addr=127.0.0.1:{node.gcomm + 1};gcache.size=64M"
        )
        lines = [
            "[mysqld]", "user=mysql", f"datadir={home}/data", f"socket={home}/mysqld.sock",
            f"pid-file={home}/mysqld.pid", f"log-error={home}/error.log", f"port={node.port}",
            "bind-address=127.0.0.1", "binlog_format=ROW", "innodb_autoinc_lock_mode=2",
            "innodb_buffer_pool_size=64M", "performance_schema=OFF", "skip-name-resolve",
            "wsrep_on=ON", "wsrep_provider=/usr/lib/galera/libgalera_smm.so",
            f"wsrep_cluster_name=aiopd-galera-{offset()}", f"wsrep_cluster_address=gcomm://{peers}",
            f"wsrep_node_address=127.0.0.1:{node.gcomm}", f"wsrep_node_name={node.name}",
            "wsrep_sst_method=rsync", f"wsrep_sst_receive_address=127.0.0.1:{node.sst}",
            f'wsrep_provider_options="{options}"',
        ]  # fmt: skip
        path = self._cnf(node.name)
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o644)  # SST scripts and --wsrep-recover run as mysql

    def _prepare(self) -> bool:
        """Directories and config files; whether the cluster was never initialised."""
        fresh = not (self._home(NODES[0]) / "data" / "mysql").exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            home = self._home(node.name)
            (home / "data").mkdir(parents=True, exist_ok=True)
            for path in (home, home / "data"):
                shutil.chown(path, "mysql", "mysql")
            self._write_cnf(node)
        return fresh

    # -- SQL over the socket as root ------------------------------------------------

    def sql(self, name: str, statement: str, *, timeout: float = 30) -> str:
        argv = ["mariadb", "-S", str(self._home(name) / "mysqld.sock"), "-uroot", "-N", "-B", "-e", statement]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
        if proc.returncode != 0:
            raise TopologyError(f"mariadb on {name}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def wsrep(self, name: str) -> dict[str, str]:
        """The node's ``wsrep_%`` status, {} when it does not answer."""
        try:
            text = self.sql(name, "SHOW STATUS LIKE 'wsrep_%'", timeout=5)
        except (TopologyError, subprocess.TimeoutExpired):
            return {}
        return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)

    def synced(self, name: str, size: int | None = None) -> bool:
        status = self.wsrep(name)
        return (
            status.get("wsrep_ready") == "ON"
            and status.get("wsrep_local_state_comment") == "Synced"
            and status.get("wsrep_cluster_status") == "Primary"
            and (size is None or status.get("wsrep_cluster_size") == str(size))
        )

    def healthy(self) -> bool:
        return all(self.synced(n.name, len(self.nodes)) for n in self.nodes)

    def status(self) -> dict[str, str]:
        return {n.name: self.wsrep(n.name).get("wsrep_local_state_comment", "down") for n in self.nodes}

    # -- start / stop ----------------------------------------------------------------

    def running(self, name: str) -> bool:
        return (
            read_pid(self._home(name) / "mysqld.pid") is not None
            or read_pid(self._home(name) / "daemon.pid") is not None
        )

    def start(self) -> float:
        """Bootstrap (first time: install-db on g1) and start every stopped node; seconds taken."""
        started = time.monotonic()
        fresh = self._prepare()
        if fresh:
            first = NODES[0]
            argv = [
                "mariadb-install-db",
                f"--defaults-file={self._cnf(first)}",
                "--user=mysql",
                "--skip-test-db",
            ]
            subprocess.run(argv, check=True, capture_output=True)
            self._launch(first, bootstrap=True)
        elif not any(self.running(n) for n in NODES):
            self._launch(self._bootstrap_candidate(), bootstrap=True)
        primary = next(n for n in NODES if self.running(n))
        wait(
            lambda: self.synced(primary),
            60,
            f"Galera {primary} Synced",
            logs=[self._home(primary) / "error.log"],
        )
        for node in NODES:  # joiners one after another: one donor serves one SST at a time
            if not self.running(node):
                self.start_node(node, wait_synced=False)
                wait(
                    lambda n=node: self.synced(n),
                    90,
                    f"Galera {node} Synced",
                    logs=[self._home(node) / "error.log"],
                )
        wait(self.healthy, 60, "Galera: 3 nodes Synced in a Primary component")
        if fresh:
            self._create_app_user(primary)
        return time.monotonic() - started

    def _bootstrap_candidate(self) -> str:
        """After a full stop only the last node out may bootstrap; after a crash, the most advanced."""
        best, best_seqno = NODES[0], -2
        for node in NODES:
            state = (self._home(node) / "data" / "grastate.dat").read_text(errors="replace")
            if re.search(r"safe_to_bootstrap:\s*1", state):
                return node
            match = re.search(r"seqno:\s*(-?\d+)", state)
            seqno = int(match.group(1)) if match else -1
            if seqno > best_seqno:
                best, best_seqno = node, seqno
        path = self._home(best) / "data" / "grastate.dat"
        path.write_text(re.sub(r"safe_to_bootstrap:\s*0", "safe_to_bootstrap: 1", path.read_text()))
        return best

    def _launch(self, name: str, *, bootstrap: bool = False, position: str | None = None) -> None:
        argv = [MARIADBD, f"--defaults-file={self._cnf(name)}"]
        if bootstrap:
            argv.append("--wsrep-new-cluster")
        if position:
            argv.append(f"--wsrep_start_position={position}")
        daemon(argv, log=self._home(name) / "daemon.log", pidfile=self._home(name) / "daemon.pid")

    def start_node(self, name: str, *, wait_synced: bool = True) -> float:
        """Start one node into the running cluster: recover its position first, so that it
        catches up by IST rather than a full SST."""
        started = time.monotonic()
        if self.running(name):
            return 0.0
        position = self._recover(name)
        self._launch(name, position=position)
        if wait_synced:
            size = sum(self.running(n) for n in NODES)
            wait(
                lambda: self.synced(name, size),
                90,
                f"Galera {name} Synced",
                logs=[self._home(name) / "error.log"],
            )
        return time.monotonic() - started

    def _recover(self, name: str) -> str | None:
        if not (self._home(name) / "data" / "mysql").exists():
            return None
        log = self._home(name) / "recover.log"
        log.unlink(missing_ok=True)
        argv = [MARIADBD, f"--defaults-file={self._cnf(name)}", "--wsrep-recover", f"--log-error={log}"]
        subprocess.run(argv, capture_output=True, check=False, timeout=120)
        match = re.search(
            r"Recovered position:\s*(\S+:-?\d+)", log.read_text(errors="replace") if log.exists() else ""
        )
        return match.group(1) if match and not match.group(1).endswith(":-1") else None

    def _create_app_user(self, name: str) -> None:
        password = APP_PASSWORD.replace("'", "''")
        self.sql(
            name,
            f"CREATE USER IF NOT EXISTS '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{password}';"
            f" CREATE DATABASE IF NOT EXISTS aiopd; CREATE DATABASE IF NOT EXISTS chaos;"
            f" GRANT ALL ON aiopd.* TO '{APP_USER}'@'127.0.0.1';"
            f" GRANT ALL ON chaos.* TO '{APP_USER}'@'127.0.0.1';"
            # The chaos invariants read the server's view of the sessions and transactions.
            f" GRANT PROCESS ON *.* TO '{APP_USER}'@'127.0.0.1'",
        )

    def stop(self) -> None:
        """Stop the nodes one by one (the last one out may bootstrap next time)."""
        for node in reversed(NODES):
            self.stop_node(node)

    def stop_node(self, name: str) -> None:
        for pidfile in ("mysqld.pid", "daemon.pid"):
            stop_pid(read_pid(self._home(name) / pidfile), timeout=60)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- faults ----------------------------------------------------------------------

    def kill_node(self, name: str) -> None:
        """SIGKILL the node's mariadbd."""
        for pidfile in ("mysqld.pid", "daemon.pid"):
            stop_pid(read_pid(self._home(name) / pidfile), sig=signal.SIGKILL, timeout=10)
