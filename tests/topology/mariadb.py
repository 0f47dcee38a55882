"""MariaDB: my-primary and its GTID replica my-replica (``read_only``), the MariaDB part of the
replication topology.

Each node lives in ``$AIOPD_CLUSTER_DIR/NODE`` with its own ``my.cnf``, socket, pid file and
datadir; mariadbd starts as root and drops to ``mysql``. Root logs in over TCP without a password,
the application user with its password. ``mysql.initialized`` marks a finished first start.
Clients run with ``--no-defaults``: otherwise ``/etc/mysql`` sends them to ``/run/mysqld``.
"""

from __future__ import annotations

import math
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from .procs import (
    APP_PASSWORD,
    APP_USER,
    MARIADBD,
    TopologyError,
    daemon,
    error,
    parallel,
    pid_alive,
    poll,
    read_pid,
    run,
    say,
    stop_pid,
)

__all__ = ["DATABASES", "PRIMARY", "REPLICA", "MariaDB"]

PRIMARY = "my-primary"
REPLICA = "my-replica"
DATABASES = ("aiopd", "shard1", "shard2", "shard3", "chaos")
WAIT_SECS = 60  # until a node accepts connections / replicates
SYNC_SECS = 30  # wait-sync

MY_CNF = """[mysqld]
user = mysql
datadir = {dir}/data
socket = {dir}/mariadb.sock
pid-file = {dir}/mariadbd.pid
log-error = {dir}/mariadb.log
# Own temp dir: install-db's temporary tables once vanished from a shared /tmp mid-bootstrap.
tmpdir = {dir}/tmp
port = {port}
bind-address = 127.0.0.1
skip-name-resolve
server-id = {server_id}
log-bin = binlog
relay-log = relay-bin
binlog-format = ROW
log-slave-updates
gtid-strict-mode = 1
read-only = {read_only}
max-connections = 300
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
# Disposable test data: trade durability for speed and memory.
innodb-buffer-pool-size = 64M
innodb-log-file-size = 32M
innodb-flush-log-at-trx-commit = 2
sync-binlog = 0
performance-schema = OFF
# Keeps the open-files request under common ulimits (else a warning on every start).
table-open-cache = 1000
"""


class MariaDB:
    """The MariaDB primary and replica: build, start, stop, faults, status."""

    def __init__(self, state: Path, ports: Mapping[str, int]) -> None:
        self.state = state
        self.ports = ports

    # -- paths and clients -------------------------------------------------------------

    def dir(self, node: str) -> Path:
        return self.state / node

    def log(self, node: str) -> Path:
        return self.state / node / "mariadb.log"

    def _client(self, node: str, user: str = "root", *, connect_timeout: int = 3) -> list[str]:
        return [
            "mariadb", "--no-defaults", "--protocol=tcp", "-h127.0.0.1", f"-P{self.ports[node]}", f"-u{user}",
            f"--connect-timeout={connect_timeout}",
        ]  # fmt: skip

    def root(self, node: str, sql: str) -> str:
        """``sql`` as root (tab-separated, no column names); the output."""
        return run([*self._client(node), "-N", "-B", "-e", sql], timeout=WAIT_SECS + 30)

    def login(self, node: str) -> bool:
        """Whether the application user can run a query on ``node``."""
        argv = [*self._client(node, APP_USER), f"--password={APP_PASSWORD}", "-N", "-B", "-D", "aiopd"]
        return run([*argv, "-e", "SELECT 1"], timeout=30) == "1"

    def ping(self, node: str) -> bool:
        try:
            run(["mariadb-admin", *self._client(node, connect_timeout=2)[1:], "ping"], timeout=30)
        except TopologyError:
            return False
        return True

    def slave_status(self, node: str) -> dict[str, str]:
        """``SHOW SLAVE STATUS`` as a dict ({} on a node that is not a replica)."""
        text = run([*self._client(node), "-e", "SHOW SLAVE STATUS\\G"], timeout=30)
        fields: dict[str, str] = {}
        for line in text.splitlines():
            name, sep, value = line.strip().partition(": ")
            if sep and not name.startswith("*"):
                fields[name] = value
            elif line.strip().endswith(":"):  # an empty value
                fields[line.strip()[:-1]] = ""
        return fields

    def slave_field(self, node: str, field: str) -> str:
        """One field of ``SHOW SLAVE STATUS``; "" when the node is no replica or does not answer."""
        try:
            return self.slave_status(node).get(field, "")
        except TopologyError:
            return ""

    def slave_running(self, node: str) -> bool:
        status = self.slave_status(node)
        return status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes"

    def slave_broken(self, node: str) -> str:
        """The error of a replication thread that stopped on one (an SQL error, e.g. a diverged
        replica, before a fatal IO error); "" if there is none."""
        try:
            status = self.slave_status(node)
        except TopologyError:
            return ""
        if status.get("Slave_SQL_Running") == "No" and status.get("Last_SQL_Error"):
            return status["Last_SQL_Error"]
        if status.get("Slave_IO_Running") == "No" and status.get("Last_IO_Error"):
            return status["Last_IO_Error"]
        return ""

    # -- node state --------------------------------------------------------------------

    def pid(self, node: str) -> int | None:
        return read_pid(self.dir(node) / "mariadbd.pid", "mariadbd")

    def running(self, node: str) -> bool:
        return self.pid(node) is not None

    @property
    def initialized(self) -> bool:
        return (self.state / "mysql.initialized").is_file()

    # -- start / stop ------------------------------------------------------------------

    def _init_node(self, node: str, server_id: int, read_only: int) -> None:
        home = self.dir(node)
        for path in (home / "data", home / "tmp"):
            path.mkdir(parents=True, exist_ok=True)
        cnf = MY_CNF.format(dir=home, port=self.ports[node], server_id=server_id, read_only=read_only)
        (home / "my.cnf").write_text(cnf)
        for path in (home, *home.rglob("*")):
            shutil.chown(path, "mysql", "mysql")
        # normal: root@localhost/127.0.0.1 without password, so root can log in over TCP.
        argv = ["mariadb-install-db", f"--defaults-file={home / 'my.cnf'}", "--user=mysql"]
        argv += ["--auth-root-authentication-method=normal", "--skip-test-db"]
        for attempt in (1, 2):
            try:
                run(argv, output=home / "install.log", timeout=300)
                return
            except TopologyError:
                say(f"mariadb-install-db for {node} failed (try {attempt})")
                shutil.rmtree(home / "data", ignore_errors=True)
                (home / "data").mkdir()
                shutil.chown(home / "data", "mysql", "mysql")
        raise error(f"mariadb-install-db for {node} failed", [home / "install.log", self.log(node)])

    def start_node(self, node: str) -> None:
        if self.running(node):
            return
        home = self.dir(node)
        if not (home / "my.cnf").is_file():
            raise TopologyError(f"no {home / 'my.cnf'}: run destroy + start")
        started = time.monotonic()
        # Not mysqld_safe: it would restart a node that `down` killed on purpose. A session of its
        # own keeps it out of the caller's process group (a Ctrl-C in the test run must not kill it).
        out = home / "mariadbd.out"
        pid = daemon([MARIADBD, f"--defaults-file={home / 'my.cnf'}"], log=out)
        while not self.ping(node):
            if not pid_alive(pid):
                raise error(f"{node} exited during start", [self.log(node), out])
            if time.monotonic() - started > WAIT_SECS:
                raise error(f"{node} did not start within {WAIT_SECS} s", [self.log(node)])
            time.sleep(0.1)
        if not poll(lambda: self.running(node), 10):
            raise error(f"{node} wrote no pid file", [self.log(node)])
        say(f"{node} up on :{self.ports[node]} ({time.monotonic() - started:.1f} s)")

    def stop_node(self, node: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM for a clean stop, SIGKILL for a crash (it catches up by GTID on start)."""
        pid = self.pid(node)
        if pid is None:
            return
        stop_pid(pid, sig=sig, timeout=WAIT_SECS)
        say(f"{node} stopped ({sig.name.removeprefix('SIG')})")

    def start(self) -> float:
        """Build both nodes the first time, start those that are stopped; wait until healthy.
        Returns the seconds taken."""
        started = time.monotonic()
        if not self.initialized:
            self.destroy()
            parallel(lambda: self._init_node(PRIMARY, 1, 0), lambda: self._init_node(REPLICA, 2, 1))
            self.start_node(PRIMARY)
            self._bootstrap_primary()
            self.start_node(REPLICA)
            self._bootstrap_replica()
            (self.state / "mysql.initialized").touch()
            say(f"MariaDB topology initialised ({time.monotonic() - started:.1f} s)")
        self.start_node(PRIMARY)
        self.start_node(REPLICA)
        self.wait_healthy()
        return time.monotonic() - started

    def stop(self) -> None:
        self.stop_node(REPLICA, signal.SIGTERM)
        self.stop_node(PRIMARY, signal.SIGTERM)

    def destroy(self) -> None:
        self.stop_node(REPLICA, signal.SIGKILL)
        self.stop_node(PRIMARY, signal.SIGKILL)
        for node in (PRIMARY, REPLICA):
            shutil.rmtree(self.dir(node), ignore_errors=True)
        (self.state / "mysql.initialized").unlink(missing_ok=True)

    def _bootstrap_primary(self) -> None:
        """Users and databases, created once per fresh node: running this again after a failover
        would write stray transactions on the replica."""
        stmts = "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl';"
        stmts += "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';"
        for user in (f"'{APP_USER}'@'127.0.0.1'", f"'{APP_USER}'@'localhost'"):
            stmts += f"CREATE USER {user} IDENTIFIED BY '{APP_PASSWORD}';"
            stmts += f"GRANT ALL PRIVILEGES ON *.* TO {user};"
            # ALL includes READ_ONLY ADMIN, which would let the app user write to the read_only
            # replica and silently diverge it.
            stmts += f"REVOKE READ_ONLY ADMIN ON *.* FROM {user};"
            # Part of ALL already; spelled out because the tests rely on reading replication status.
            stmts += f"GRANT REPLICATION CLIENT, SLAVE MONITOR, BINLOG MONITOR ON *.* TO {user};"
        stmts += "".join(f"CREATE DATABASE {db};" for db in DATABASES)
        try:
            self.root(PRIMARY, stmts)
        except TopologyError as exc:
            raise error(f"bootstrapping {PRIMARY} failed: {exc}", [self.log(PRIMARY)]) from None

    def _bootstrap_replica(self) -> None:
        # gtid_slave_pos is empty on a fresh node, so the replica replays the primary's binlog from
        # its first event: the users and databases created above arrive by replication.
        sql = (
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={self.ports[PRIMARY]},"
            " MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos,"
            " MASTER_CONNECT_RETRY=1; START SLAVE;"
        )
        try:
            self.root(REPLICA, sql)
        except TopologyError as exc:
            raise error(f"setting up replication on {REPLICA} failed: {exc}", [self.log(REPLICA)]) from None

    # -- health ------------------------------------------------------------------------

    def wait_login(self, node: str) -> None:
        if not poll(lambda: self.login(node), WAIT_SECS):
            raise error(f"{node} does not accept connections as {APP_USER}", [self.log(node)])

    def wait_healthy(self) -> None:
        """The replica's IO and SQL threads run and both nodes accept the application user."""
        if not poll(lambda: self.slave_running(REPLICA), WAIT_SECS):
            status = self.slave_status_or_empty(REPLICA)
            raise error(
                f"{REPLICA} is not replicating (IO={status.get('Slave_IO_Running', '')},"
                f" SQL={status.get('Slave_SQL_Running', '')}): {status.get('Last_Error', '')}",
                [self.log(REPLICA), self.log(PRIMARY)],
            )
        for node in (PRIMARY, REPLICA):
            self.wait_login(node)

    def slave_status_or_empty(self, node: str) -> dict[str, str]:
        try:
            return self.slave_status(node)
        except TopologyError:
            return {}

    # -- faults ------------------------------------------------------------------------

    def delay(self, node: str, seconds: float) -> None:
        """Apply ``seconds`` late (``MASTER_DELAY``, rounded up to whole seconds); 0 removes it."""
        delay = math.ceil(seconds)
        self.root(node, f"STOP SLAVE; CHANGE MASTER TO MASTER_DELAY={delay}; START SLAVE;")
        if not poll(lambda: self.slave_running(node), WAIT_SECS):
            raise error(f"{node} did not restart replication", [self.log(node)])
        say(f"{node}: MASTER_DELAY={delay}")

    def pause(self, node: str) -> None:
        self.root(node, "STOP SLAVE SQL_THREAD")

    def resume(self, node: str) -> None:
        self.root(node, "START SLAVE SQL_THREAD")
        if not poll(lambda: self.slave_running(node), WAIT_SECS):
            raise error(
                f"{node} SQL thread not running: {self.slave_field(node, 'Last_SQL_Error')}", [self.log(node)]
            )

    def up(self, node: str) -> None:
        """Start a node; wait until it serves and the replica's IO thread is connected again."""
        self.start_node(node)
        if not poll(lambda: self.login(node), WAIT_SECS):
            raise error(f"{node} does not accept {APP_USER}", [self.log(node)])
        replicating = self.running(REPLICA) and self.slave_field(REPLICA, "Slave_IO_Running")
        if replicating and self.running(PRIMARY) and not poll(self._io_connected, WAIT_SECS):
            raise error(
                f"{REPLICA} is not connected to {PRIMARY}: {self.slave_field(REPLICA, 'Last_IO_Error')}",
                [self.log(REPLICA)],
            )

    def _io_connected(self) -> bool:
        return self.slave_status(REPLICA).get("Slave_IO_Running") == "Yes"

    def promote(self, node: str) -> None:
        """Only promotes: the old primary keeps running."""
        # Apply everything already received before cutting the replica loose: RESET SLAVE ALL
        # deletes the relay log, and with it any transaction received but not yet applied (with
        # semi-synchronous replication those are commits the old primary acknowledged).
        io_pos = self.slave_field(node, "Gtid_IO_Pos")
        if io_pos and self.root(node, f"SELECT MASTER_GTID_WAIT('{io_pos}', {WAIT_SECS})") != "0":
            raise TopologyError(f"{node} did not apply its relay log up to {io_pos} within {WAIT_SECS} s")
        self.root(node, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0;")

    def wait_sync(self, *, quiet: bool = False) -> None:
        """Wait until the replica applied the primary's binlog position."""
        if not self.running(PRIMARY):
            raise TopologyError(f"wait-sync: {PRIMARY} is down")
        try:
            target = self.root(PRIMARY, "SELECT @@gtid_binlog_pos")
        except TopologyError:
            raise TopologyError(f"wait-sync: {PRIMARY} unreachable") from None
        if not self.running(REPLICA):
            raise TopologyError(f"wait-sync: {REPLICA} is down")
        try:
            result = self.root(REPLICA, f"SELECT MASTER_GTID_WAIT('{target}', {SYNC_SECS})")
        except TopologyError:
            raise TopologyError(f"wait-sync: {REPLICA} unreachable") from None
        if result != "0":
            try:
                have = self.root(REPLICA, "SELECT @@gtid_slave_pos")
            except TopologyError:
                have = "?"
            raise error(
                f"wait-sync: {REPLICA} at '{have}', {PRIMARY} at '{target}' (after {SYNC_SECS} s)",
                [self.log(REPLICA)],
            )
        if not quiet:
            say(f"wait-sync mysql: replica at '{target}'")

    def reset(self) -> None:
        """Back to the original healthy topology: restart what is down, drop the delay, the pause
        and semi-synchronous replication; rebuild from scratch after a promote or when the replica
        does not replicate or catch up."""
        if not self.initialized:
            self.start()
            return
        self.start_node(PRIMARY)
        self.start_node(REPLICA)
        rebuild = self._heal()
        if rebuild:
            say(f"reset mysql: {rebuild}, rebuilding the MariaDB topology")
            self.destroy()
            self.start()
            return
        self.wait_healthy()

    def _heal(self) -> str:
        """The quick path of :meth:`reset`; why a rebuild is needed ("" if it is not)."""
        if not self.slave_field(REPLICA, "Slave_IO_Running"):
            return f"{REPLICA} was promoted"
        if self.root(REPLICA, "SELECT @@read_only") != "1":
            self.root(REPLICA, "SET GLOBAL read_only = 1")
        # Semi-synchronous replication (a test may turn it on) would stall commits while the
        # replica is down.
        self.root(PRIMARY, "SET GLOBAL rpl_semi_sync_master_enabled = OFF")
        self.root(REPLICA, "SET GLOBAL rpl_semi_sync_slave_enabled = OFF")
        if self.slave_field(REPLICA, "SQL_Delay") != "0":
            self.root(REPLICA, "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0")
        broken = self.slave_broken(REPLICA)
        if broken:
            # A diverged replica fails again at once after START SLAVE: do not wait for it.
            return f"{REPLICA} does not replicate: {broken}"
        self.root(REPLICA, "START SLAVE")  # only a note for threads that already run
        if not poll(lambda: self.slave_running(REPLICA), 10):
            return f"{REPLICA} does not replicate: {self.slave_broken(REPLICA) or 'threads not running'}"
        try:
            self.wait_sync(quiet=True)
        except TopologyError:
            return f"{REPLICA} does not catch up"
        return ""

    # -- status ------------------------------------------------------------------------

    def status_rows(self) -> list[tuple[str, str, str, str]]:
        """``(node, state, role, detail)`` per node."""
        rows = []
        for node in (PRIMARY, REPLICA):
            if not self.running(node):
                rows.append((node, "down", "-", "-"))
                continue
            status = self.slave_status_or_empty(node)
            if status.get("Slave_IO_Running"):
                detail = (
                    f"lag={status.get('Seconds_Behind_Master', '')}s io={status['Slave_IO_Running']}"
                    f" sql={status.get('Slave_SQL_Running', '')} delay={status.get('SQL_Delay', '')}s"
                    f" gtid={self._root_or(node, 'SELECT @@gtid_slave_pos', '')}"
                )
                rows.append((node, "up", "replica", detail))
            else:
                gtid = self._root_or(node, "SELECT @@gtid_binlog_pos", "?")
                rows.append((node, "up", "primary", f"gtid={gtid}"))
        return rows

    def _root_or(self, node: str, sql: str, default: str) -> str:
        try:
            return self.root(node, sql)
        except TopologyError:
            return default
