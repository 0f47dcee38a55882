"""PostgreSQL 15: pg-primary with the streaming standbys pg-replica-1 and pg-replica-2, and the
PgBouncer in front of the primary (the PostgreSQL part of the replication topology).

Each node lives in ``$AIOPD_CLUSTER_DIR/NODE`` (data in ``data/``, log ``postgres.log``) and runs
as ``postgres``; clients connect over TCP on 127.0.0.1 (``pg_hba.conf`` trusts ``postgres``
there, the application user's password is really checked). ``pg.initialized`` marks a finished
first start: without it the data is thrown away and built again.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from .pgbouncer import PgBouncer
from .procs import (
    APP_PASSWORD,
    APP_USER,
    PG_BIN,
    TopologyError,
    as_postgres,
    client_env,
    error,
    parallel,
    poll,
    run,
    say,
)

__all__ = ["DATABASES", "NODES", "PRIMARY", "REPLICAS", "Postgres"]

PRIMARY = "pg-primary"
REPLICAS = ("pg-replica-1", "pg-replica-2")
NODES = (PRIMARY, *REPLICAS)
DATABASES = ("aiopd", "shard1", "shard2", "shard3", "chaos")
WAIT_SECS = 60  # until a node accepts connections / streams
SYNC_SECS = 30  # wait-sync

PRIMARY_CONF = """
# ---- aiopeewee_dist test topology (tests/topology/postgres.py) ----
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 32MB
# Test data is disposable; synchronous_commit stays ON: with it off WAL is streamed only after
# the WAL writer flushes, which adds up to 200 ms of replication lag.
fsync = off
full_page_writes = off
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
# pg_basebackup -C -S reserves WAL only once its slot exists; right after the databases are
# created a checkpoint could recycle a segment the backup still needs ("requested WAL segment
# ... has already been removed"). Keeping recent WAL closes that window.
wal_keep_size = 256MB
wal_log_hints = on
hot_standby = on
hot_standby_feedback = on
# A standby whose primary was down retries every 5 s by default: too slow for `up pg-primary`.
wal_retrieve_retry_interval = 200ms
password_encryption = scram-sha-256
log_line_prefix = '%m [%p] %q%u@%d '
include_if_exists = 'node.conf'
"""

PG_HBA = """# TYPE  DATABASE     USER      ADDRESS        METHOD
local   all          all                      trust
host    replication  all       127.0.0.1/32   trust
host    all          postgres  127.0.0.1/32   trust
# The application user's password is really checked.
host    all          all       127.0.0.1/32   scram-sha-256
"""

# One status row per node: whether it is in recovery, then the detail (lag behind the primary's
# position PRIMARY_LSN, replay state, delay, receiver; or the primary's streaming standbys).
STATUS_SQL = """SELECT pg_is_in_recovery(),
  CASE WHEN pg_is_in_recovery() THEN
    CASE WHEN '{lsn}' = '' THEN '?'
      ELSE greatest(0, pg_wal_lsn_diff(nullif('{lsn}', '')::pg_lsn, pg_last_wal_replay_lsn()))::text
        || 'B' END
    || ' replay=' || replace(pg_get_wal_replay_pause_state(), 'not paused', 'running')
    || ' delay=' || current_setting('recovery_min_apply_delay')
    || ' receiver=' || coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')
  ELSE 'streaming=' || (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming') END"""


class Postgres:
    """The PostgreSQL nodes and their PgBouncer: build, start, stop, faults, status."""

    def __init__(self, state: Path, ports: Mapping[str, int]) -> None:
        self.state = state
        self.ports = ports
        self.bouncer = PgBouncer(state, ports["pgbouncer"], ports[PRIMARY])

    # -- paths and clients -------------------------------------------------------------

    def dir(self, node: str) -> Path:
        return self.state / node

    def data(self, node: str) -> Path:
        return self.state / node / "data"

    def log(self, node: str) -> Path:
        return self.state / node / "postgres.log"

    def psql(self, node: str, *statements: str) -> str:
        """Each statement as its own ``-c`` (so ALTER SYSTEM is not inside an implicit
        transaction), as superuser over TCP; the output, unaligned."""
        argv: list[str | Path] = [PG_BIN / "psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"]
        argv += ["-p", str(self.ports[node]), "-U", "postgres", "-d", "postgres"]
        for statement in statements:
            argv += ["-c", statement]
        return run(argv, timeout=WAIT_SECS + 30)

    def login(self, port: int) -> bool:
        """Whether the application user can run a query through ``port`` (a node or PgBouncer)."""
        argv = [PG_BIN / "psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port)]
        argv += ["-U", APP_USER, "-d", "aiopd", "-c", "SELECT 1"]
        env = client_env(PGPASSWORD=APP_PASSWORD, PGCONNECT_TIMEOUT="3")
        return run(argv, timeout=30, env=env) == "1"

    def pg_ctl(self, node: str, *args: str) -> None:
        run(as_postgres(PG_BIN / "pg_ctl", *args, "-D", self.data(node)), timeout=WAIT_SECS + 30)

    # -- node state --------------------------------------------------------------------

    def running(self, node: str) -> bool:
        if not (self.data(node) / "PG_VERSION").is_file():
            return False
        try:
            self.pg_ctl(node, "status")
        except TopologyError:
            return False
        return True

    def is_replica_conf(self, node: str) -> bool:
        """Whether the node is configured as a standby (``promote`` removes the signal file)."""
        return (self.data(node) / "standby.signal").is_file()

    @property
    def initialized(self) -> bool:
        return (self.state / "pg.initialized").is_file()

    def streaming_count(self) -> int:
        return int(self.psql(PRIMARY, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))

    def all_streaming(self) -> bool:
        return self.streaming_count() == len(REPLICAS)

    def receiver_streaming(self, node: str) -> bool:
        return self.psql(node, "SELECT status FROM pg_stat_wal_receiver") == "streaming"

    def delay_is(self, node: str, ms: int) -> bool:
        setting = "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'"
        return self.psql(node, setting) == str(ms)

    def replay_state_is(self, node: str, state: str) -> bool:
        return self.psql(node, "SELECT pg_get_wal_replay_pause_state()") == state

    # -- start / stop ------------------------------------------------------------------

    def start_node(self, node: str) -> None:
        if self.running(node):
            return
        started = time.monotonic()
        try:
            self.pg_ctl(node, "start", "-w", "-t", str(WAIT_SECS), "-l", str(self.log(node)))
        except TopologyError as exc:
            raise error(f"{node} did not start: {exc}", [self.log(node)]) from None
        say(f"{node} up on :{self.ports[node]} ({time.monotonic() - started:.1f} s)")

    def stop_node(self, node: str, mode: str = "fast") -> None:
        """``fast`` for a clean stop, ``immediate`` for a crash (it recovers from WAL on start)."""
        if not self.running(node):
            return
        try:
            self.pg_ctl(node, "stop", "-w", "-t", str(WAIT_SECS), "-m", mode)
        except TopologyError as exc:
            raise error(f"{node} did not stop: {exc}", [self.log(node)]) from None
        say(f"{node} stopped ({mode})")

    def start(self) -> float:
        """Build the nodes the first time, start those that are stopped; wait until healthy.
        Returns the seconds taken."""
        started = time.monotonic()
        if not self.initialized:
            # Data without the marker means an init that died half-way: start over.
            self.destroy()
            self._init_primary()
            # The base backups are mostly kernel time spent writing files: two at once save a second.
            parallel(*(lambda r=r: self._init_replica(r) for r in REPLICAS))
            self.bouncer.init()
            (self.state / "pg.initialized").touch()
            say(f"PostgreSQL topology initialised ({time.monotonic() - started:.1f} s)")
        for node in NODES:
            self.start_node(node)
        self.bouncer.start()
        self.wait_healthy()
        return time.monotonic() - started

    def stop(self) -> None:
        self.bouncer.stop(signal.SIGTERM)
        # Standbys first: a primary waits for its walsenders to finish on a fast shutdown.
        for node in (*REPLICAS, PRIMARY):
            self.stop_node(node, "fast")

    def destroy(self) -> None:
        self.bouncer.stop(signal.SIGKILL)
        for node in (*REPLICAS, PRIMARY):
            self.stop_node(node, "immediate")
        for node in (*NODES, "pgbouncer"):
            shutil.rmtree(self.state / node, ignore_errors=True)
        (self.state / "pg.initialized").unlink(missing_ok=True)

    def _make_dir(self, node: str) -> Path:
        path = self.dir(node)
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, "postgres", "postgres")
        return path

    def _write_node_conf(self, node: str) -> None:
        path = self.data(node) / "node.conf"
        path.write_text(
            "# Per-node settings; the shared ones are in postgresql.conf (copied to standbys by"
            " pg_basebackup).\n"
            f"port = {self.ports[node]}\n"
            f"unix_socket_directories = '{self.dir(node)}'\n"
            f"cluster_name = '{node}'\n"
        )
        shutil.chown(path, "postgres", "postgres")

    def _init_primary(self) -> None:
        node, home, data = PRIMARY, self._make_dir(PRIMARY), self.data(PRIMARY)
        initdb = [PG_BIN / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"]
        try:
            run(as_postgres(*initdb, "--encoding=UTF8", "--locale=C.UTF-8"), output=home / "initdb.log")
        except TopologyError:
            raise error("initdb failed", [home / "initdb.log"]) from None
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(PRIMARY_CONF)
        (data / "pg_hba.conf").write_text(PG_HBA)
        self._write_node_conf(node)
        self.start_node(node)
        sql = [f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'", f"GRANT pg_monitor TO {APP_USER}"]
        sql += [f"CREATE DATABASE {db} OWNER {APP_USER}" for db in DATABASES]
        try:
            self.psql(node, *sql)
        except TopologyError as exc:
            raise error(f"creating the application user/databases failed: {exc}", [self.log(node)]) from None

    def _init_replica(self, node: str) -> None:
        home = self._make_dir(node)
        slot = node.replace("-", "_")  # pg-replica-1 -> slot pg_replica_1
        argv = [PG_BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.ports[PRIMARY]), "-U", "postgres"]
        argv += [
            "-D",
            self.data(node),
            "-R",
            "-X",
            "stream",
            "-C",
            "-S",
            slot,
            "--checkpoint=fast",
            "--no-sync",
        ]
        try:
            run(as_postgres(*argv), output=home / "basebackup.log", timeout=300)
        except TopologyError:
            raise error(
                f"pg_basebackup for {node} failed", [home / "basebackup.log", self.log(PRIMARY)]
            ) from None
        self._write_node_conf(node)
        self.start_node(node)

    # -- health ------------------------------------------------------------------------

    def wait_login(self, node: str) -> None:
        if not poll(lambda: self.login(self.ports[node]), WAIT_SECS):
            raise error(f"{node} does not accept connections as {APP_USER}", [self.log(node)])

    def wait_bouncer_login(self) -> None:
        if not poll(lambda: self.login(self.bouncer.port), WAIT_SECS):
            raise error(f"pgbouncer does not accept {APP_USER}", [self.bouncer.log, self.log(PRIMARY)])

    def wait_replica_streaming(self, node: str) -> None:
        if not poll(lambda: self.receiver_streaming(node), WAIT_SECS):
            raise error(f"{node} is not streaming from {PRIMARY}", [self.log(node), self.log(PRIMARY)])

    def wait_healthy(self) -> None:
        """Every node accepts the application user, the primary streams to every standby, and
        PgBouncer lets the application user in."""
        for node in NODES:
            self.wait_login(node)
        if not poll(self.all_streaming, WAIT_SECS):
            try:
                count: int | str = self.streaming_count()
            except TopologyError:
                count = "?"
            raise error(
                f"pg_stat_replication shows {count} streaming standbys, want {len(REPLICAS)}",
                [self.log(node) for node in NODES],
            )
        self.wait_bouncer_login()

    # -- faults ------------------------------------------------------------------------

    def delay(self, node: str, seconds: float) -> None:
        """Replay ``seconds`` late (``recovery_min_apply_delay``, in whole ms); 0 removes it."""
        ms = int(seconds * 1000 + 0.5)
        if ms == 0:
            self.psql(node, "ALTER SYSTEM RESET recovery_min_apply_delay", "SELECT pg_reload_conf()")
        else:
            self.psql(
                node, f"ALTER SYSTEM SET recovery_min_apply_delay = '{ms}ms'", "SELECT pg_reload_conf()"
            )
        # The reload is asynchronous: return only once new sessions see the new value.
        if not poll(lambda: self.delay_is(node, ms), 5):
            raise TopologyError(f"{node} did not take recovery_min_apply_delay={ms}ms")
        say(f"{node}: recovery_min_apply_delay={ms}ms")

    def pause(self, node: str) -> None:
        self.psql(node, "SELECT pg_wal_replay_pause()")
        # Pausing is only requested by the call; wait until the startup process really stopped.
        if not poll(lambda: self.replay_state_is(node, "paused"), 10):
            raise error(f"{node} did not pause replay", [self.log(node)])

    def resume(self, node: str) -> None:
        self.psql(node, "SELECT pg_wal_replay_resume()")
        if not poll(lambda: self.replay_state_is(node, "not paused"), 10):
            raise error(f"{node} did not resume replay", [self.log(node)])

    def up(self, node: str) -> None:
        """Start a node; wait until it serves and (standby) streams, or (primary) until the
        running standbys stream from it again."""
        self.start_node(node)
        self.wait_login(node)
        if self.is_replica_conf(node):
            if self.running(PRIMARY):
                self.wait_replica_streaming(node)
            return
        # Standbys that are running reconnect after wal_retrieve_retry_interval.
        for replica in REPLICAS:
            if self.running(replica) and self.is_replica_conf(replica):
                self.wait_replica_streaming(replica)

    def up_bouncer(self) -> None:
        primary_up = self.running(PRIMARY)
        if not primary_up:
            say(f"warning: {PRIMARY} is down, pgbouncer will fail server logins")
        self.bouncer.start()
        if primary_up:
            self.wait_bouncer_login()

    def promote(self, node: str) -> None:
        """Only promotes: the old primary keeps running."""
        if not self.is_replica_conf(node):
            raise TopologyError(f"{node} is already promoted")
        try:
            self.pg_ctl(node, "promote", "-w", "-t", str(WAIT_SECS))
        except TopologyError as exc:
            raise error(f"promoting {node} failed: {exc}", [self.log(node)]) from None
        # Without an immediate checkpoint pg_rewind later says "no rewind required" and a node
        # rejoined to the new timeline fails.
        self.psql(node, "CHECKPOINT")

    def replayed(self, node: str, lsn: str) -> bool:
        return self.psql(node, f"SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)") == "t"

    def wait_sync(self, *, quiet: bool = False) -> None:
        """Wait until every standby replayed the primary's flush position."""
        if not self.running(PRIMARY):
            raise TopologyError(f"wait-sync: {PRIMARY} is down")
        # The flush position, not pg_current_wal_lsn(): every commit is flushed (synchronous_commit
        # is on), standbys only ever receive flushed WAL, and WAL that is written but not yet
        # flushed (hint bit records, ...) would make us wait for the WAL writer for nothing.
        try:
            target = self.psql(PRIMARY, "SELECT pg_current_wal_flush_lsn()")
        except TopologyError:
            raise TopologyError(f"wait-sync: {PRIMARY} unreachable") from None
        for replica in REPLICAS:
            if not self.running(replica):
                raise TopologyError(f"wait-sync: {replica} is down")
            if not poll(lambda r=replica: self.replayed(r, target), SYNC_SECS):
                try:
                    have = self.psql(replica, "SELECT pg_last_wal_replay_lsn()")
                except TopologyError:
                    have = "?"
                raise error(
                    f"wait-sync: {replica} replayed {have}, {PRIMARY} is at {target} (after {SYNC_SECS} s)",
                    [self.log(replica)],
                )
        if not quiet:
            say(f"wait-sync pg: replicas at {target}")

    def reset(self) -> None:
        """Back to the original healthy topology. Quick path: restart what is down, drop delays,
        pauses and synchronous replication. Roles changed (a promote) or a standby that does not
        catch up: rebuilding from scratch is faster and more robust than rewinding."""
        if not self.initialized:
            self.start()
            return
        rebuild = next((f"{r} was promoted" for r in REPLICAS if not self.is_replica_conf(r)), "")
        if not rebuild:
            rebuild = self._heal()
        if rebuild:
            say(f"reset pg: {rebuild}, rebuilding the PostgreSQL topology")
            self.destroy()
            self.start()
            return
        self.wait_healthy()

    def _heal(self) -> str:
        """The quick path of :meth:`reset`; why a rebuild is needed ("" if it is not)."""
        self.start_node(PRIMARY)
        # Synchronous replication (a test may turn it on) would block every commit while a
        # standby is down.
        self.psql(PRIMARY, "ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()")
        for replica in REPLICAS:
            self.start_node(replica)
            self.psql(
                replica,
                "ALTER SYSTEM RESET recovery_min_apply_delay",
                "SELECT pg_reload_conf()",
                "SELECT pg_wal_replay_resume()",
            )
        self.bouncer.start()
        rebuild = ""
        for replica in REPLICAS:
            if not poll(lambda r=replica: self.delay_is(r, 0), 10):
                rebuild = f"{replica} keeps a replay delay"
        if not rebuild and not poll(self.all_streaming, 10):
            rebuild = "standbys are not streaming"
        if not rebuild:
            try:
                self.wait_sync(quiet=True)
            except TopologyError:
                rebuild = "standbys do not catch up"
        return rebuild

    # -- status ------------------------------------------------------------------------

    def status_rows(self) -> list[tuple[str, str, str, str]]:
        """``(node, state, role, detail)`` per node."""
        primary_lsn = ""
        if self.running(PRIMARY):
            with contextlib.suppress(TopologyError):
                primary_lsn = self.psql(
                    PRIMARY, "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END"
                )
        rows = []
        for node in NODES:
            if not self.running(node):
                rows.append((node, "down", "-", "-"))
                continue
            try:
                row = self.psql(node, STATUS_SQL.format(lsn=primary_lsn)).replace("|", " ")
            except TopologyError:
                row = "? unreachable"
            in_recovery, _, detail = row.partition(" ")
            if in_recovery == "t":
                rows.append((node, "up", "replica", f"lag={detail}"))
            elif in_recovery == "f":
                rows.append((node, "up", "primary", detail))
            else:
                rows.append((node, "up", "?", detail))
        return rows
