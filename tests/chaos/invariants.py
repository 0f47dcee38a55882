"""What must hold after every chaos scenario, checked against the servers' own view.

The scenarios' managers use the ``chaos`` database only, and the checks connect to ``aiopd``, so
``pg_stat_activity`` / ``information_schema.PROCESSLIST`` rows in ``chaos`` are exactly the
manager's connections.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import cluster
import peewee
import psycopg
import pymysql
from conftest import Topology, topology_for

from aiopeewee_dist import Manager, QueryTimeout
from chaos.workload import ChaosRow, Ledger, Load

CHAOS_DB = "chaos"
BOUND = 10.0  # seconds the servers get to notice a closed connection / finished transaction

FIGURES: list[dict[str, Any]] = []


def record(scenario: str, backend: str, **figures: Any) -> None:
    """Keep a scenario's figures for the end-of-run summary (and print them under ``-s``)."""
    entry = {"scenario": scenario, "backend": backend, **figures}
    FIGURES.append(entry)
    print(f"\n[chaos] {entry}")


def _in_chaos_db(url: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{CHAOS_DB}"


def chaos_topology(backend: str, tmp_path: Any) -> Topology:
    """The cluster topology of ``backend`` with every URL on the ``chaos`` database."""
    base = topology_for(backend, tmp_path)
    if base.kind == "sqlite":
        return base
    return Topology(backend, _in_chaos_db(base.primary), [_in_chaos_db(u) for u in base.replicas])


def ensure_chaos_databases() -> None:
    """Create ``chaos`` where a cluster that predates it lacks it; wait until replicas have it."""

    async def run() -> None:
        if cluster.cluster_available("pg"):
            su = f"postgresql://postgres@127.0.0.1:{cluster.PORTS['pg-primary']}/postgres"  # trusted
            exists = await cluster.pg_scalar(su, f"SELECT 1 FROM pg_database WHERE datname = '{CHAOS_DB}'")
            if not exists:
                await cluster.pg_rows(su, f"CREATE DATABASE {CHAOS_DB} OWNER {cluster.APP_USER}")
                await cluster.wait_pg_replayed(cluster.PG_PRIMARY, cluster.PG_REPLICAS)
        if cluster.cluster_available("mysql"):
            await cluster.my_rows(cluster.MY_PRIMARY, f"CREATE DATABASE IF NOT EXISTS {CHAOS_DB}")
            await cluster.wait_mysql_replayed(cluster.MY_PRIMARY, cluster.MY_REPLICA)

    asyncio.run(run())


# -- the servers' view -----------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    id: int
    state: str
    in_transaction: bool  # idle (no statement running) inside an open transaction


_PG_SESSIONS = """
    SELECT pid, coalesce(state, ''), coalesce(state LIKE 'idle in transaction%%', false)
    FROM pg_stat_activity
    WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""
_MY_SESSIONS = """
    SELECT p.ID, p.COMMAND, p.COMMAND = 'Sleep' AND t.trx_id IS NOT NULL
    FROM information_schema.PROCESSLIST p
    LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
    WHERE p.DB = %s AND p.USER = %s AND p.ID <> CONNECTION_ID()
"""


#: What losing the checks' own (admin) connection looks like: on a loaded machine a connect or a
#: read of it can fail or time out; the session list is read-only, so it is read again.
_ADMIN_ERRORS = (psycopg.OperationalError, pymysql.err.OperationalError, OSError, asyncio.TimeoutError)


async def server_sessions(topology: Topology, url: str) -> list[Session]:
    """The server's sessions in the chaos database, for the server behind ``url`` (retried
    within ``BOUND`` when the admin connection itself fails)."""
    deadline = time.monotonic() + BOUND
    while True:
        try:
            return await asyncio.wait_for(_server_sessions(topology, url), BOUND)
        except _ADMIN_ERRORS:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _server_sessions(topology: Topology, url: str) -> list[Session]:
    admin = url.rpartition("/")[0] + "/aiopd"
    if topology.kind == "pg":
        admin = admin.replace("postgresql+aiopg://", "postgresql://", 1)
        rows = await cluster.pg_rows(admin, _PG_SESSIONS, (CHAOS_DB,))
    else:
        # The user excludes the replica's SQL thread ("system user"), which shows the
        # database of the event it applies.
        rows = await cluster.my_rows(admin, _MY_SESSIONS, (CHAOS_DB, cluster.APP_USER))
    return [Session(int(pid), str(state), bool(txn)) for pid, state, txn in rows]


def _node_urls(manager: Manager, topology: Topology) -> dict[str, str]:
    """Node name -> the URL the topology knows for its server (matched by port)."""
    by_port = {urlsplit(u).port: u for u in [topology.primary, *topology.replicas]}
    return {n.name: by_port[n.url.port] for n in manager.nodes if n.url.port in by_port}


async def _settle(check: Any, bound: float) -> Any:
    """Poll ``check()`` (returning (ok, value)) until ok or ``bound`` seconds; the last value."""
    deadline = time.monotonic() + bound
    while True:
        ok, value = await check()
        if ok or time.monotonic() > deadline:
            return value
        # Not faster: MariaDB refreshes its INNODB_TRX cache only when it was not read for
        # 0.1 s, so polling more often would keep showing the state of the first poll.
        await asyncio.sleep(0.15)


# -- the invariants ----------------------------------------------------------------------------


async def check_invariants(
    scenario: str,
    manager: Manager,
    topology: Topology,
    *,
    ledger: Ledger | None = None,
    load: Load | None = None,
    settle: float = BOUND,
    report: bool = True,
    **figures: Any,
) -> dict[str, Any]:
    """Every invariant of the chaos suite, then ``manager.close()``; records and returns figures.

    - the pools are back to rest (nothing acquired, nobody waiting);
    - the servers hold no connection the pools do not know of, none idle in a transaction,
      and none at all once the manager is closed;
    - every acknowledged write is on the primary with its amount, no transaction is torn, and
      nothing is there that was never attempted;
    - no read was older than ``max_lag``;
    - the manager still works (a write and a read).

    ``settle``: how long the servers get to reach that state; ``report``: record the figures.
    """
    problems: list[str] = []
    result: dict[str, Any] = dict(figures)
    if load is not None:
        result.update(load.figures())
        if load.max_lag is not None and load.stale_reads:
            problems.append(f"{len(load.stale_reads)} reads older than max_lag={load.max_lag}")

    # The monitor's probes check connections out at any moment; what must be at rest is what
    # the load did. (The next query through the manager starts the monitor again.)
    await manager._monitor.stop()

    async def pools_at_rest() -> tuple[bool, dict[str, tuple[int, int]]]:
        busy = {
            name: (s["acquired"], s["waiting"])
            for name, s in manager.stats().items()
            if name != "router" and (s["acquired"] or s["waiting"])
        }
        return not busy, busy

    busy = await _settle(pools_at_rest, settle)
    if busy:
        problems.append(f"pools not at rest (acquired, waiting): {busy}")

    if topology.kind != "sqlite":
        leaked, idle_in_txn = await _server_view(manager, topology, settle)
        result["leaked_connections"] = leaked
        result["idle_in_transaction"] = idle_in_txn
        if leaked:
            problems.append(f"{leaked} server sessions no pool knows of")
        if idle_in_txn:
            problems.append(f"{idle_in_txn} sessions idle in transaction")

    await _still_works(manager, settle)
    await manager.close()
    if topology.kind != "sqlite":
        after_close = await _sessions_after_close(manager, topology, settle)
        result["left_after_close"] = after_close
        if after_close:
            problems.append(f"{after_close} server sessions left after close()")

    if ledger is not None:
        # On a manager of its own with no fault settings: the scenario's (a 0.05 s
        # query_timeout, say) would fail a full-table read on a loaded machine.
        # On the scenario's primary now (after a failover, the promoted replica's URL).
        primary_url = _node_urls(manager, topology)[manager.primary_node.name]
        verifier = Manager(
            primary_url,
            health_check_interval=None,
            read_your_writes=None,
            acquire_timeout=30.0,
            connect_timeout=30.0,
        )
        try:
            verified = await ledger.verify(verifier)
        finally:
            await verifier.close()
        result.update(
            acknowledged=verified.acknowledged,
            in_doubt=verified.in_doubt,
            lost_writes=len(verified.lost),
            phantom_rows=len(verified.phantom),
            torn_transactions=len(verified.torn),
        )
        if verified.lost or verified.wrong_amount or not verified.checksum_ok:
            problems.append(f"lost writes {verified.lost[:10]}, wrong amounts {verified.wrong_amount[:10]}")
        if verified.phantom:
            problems.append(f"rows never attempted: {verified.phantom[:10]}")
        if verified.torn:
            problems.append(f"torn transactions: {verified.torn[:10]}")

    if report:
        record(scenario, topology.backend, **result)
    assert not problems, f"{scenario} [{topology.backend}]: " + "; ".join(problems)
    return result


async def _still_works(manager: Manager, bound: float) -> None:
    """A write, a read of it, and a read through the router, on the scenario's own manager.

    A ``QueryTimeout`` is the scenario's fault setting at work on a busy machine, not a broken
    manager: those statements are retried until ``bound``; any other error fails at once.
    """
    probe_id = -time.monotonic_ns()
    deadline = time.monotonic() + bound

    async def read_back() -> None:
        with manager.primary():  # whichever node that is now (a failover renames nothing)
            await manager.get(ChaosRow, id=probe_id)

    steps = [
        lambda: manager.create(ChaosRow, id=probe_id, amount=0),
        read_back,
        lambda: manager.exists(ChaosRow.select().where(ChaosRow.id == probe_id)),
    ]
    for step in steps:
        while True:
            try:
                await step()
                break
            except QueryTimeout:
                if time.monotonic() > deadline:
                    raise
            except peewee.IntegrityError:
                break  # the create timed out after it committed: the row is there


async def _server_view(manager: Manager, topology: Topology, settle: float) -> tuple[int, int]:
    """(sessions beyond what the pools hold, sessions idle in a transaction), once settled."""
    urls = _node_urls(manager, topology)

    async def view() -> tuple[bool, tuple[int, int]]:
        stats = manager.stats()
        leaked = idle = 0
        for name, url in urls.items():
            sessions = await server_sessions(topology, url)
            leaked += max(0, len(sessions) - stats[name]["size"])
            idle += sum(s.in_transaction for s in sessions)
        return not (leaked or idle), (leaked, idle)

    result: tuple[int, int] = await _settle(view, settle)
    return result


async def _sessions_after_close(manager: Manager, topology: Topology, settle: float) -> int:
    urls = list(_node_urls(manager, topology).values())

    async def view() -> tuple[bool, int]:
        left = 0
        for url in urls:
            left += len(await server_sessions(topology, url))
        return left == 0, left

    result: int = await _settle(view, settle)
    return result
