"""Helpers for tests that run against the local replication topology (``tests/topology``, whose
CLI is ``scripts/cluster.sh``).

The topology (each port plus ``AIOPD_PORT_OFFSET`` when set)::

    pg-primary :55432  -> pg-replica-1 :55433, pg-replica-2 :55434 (streaming)
    pgbouncer  :56432  -> pg-primary (transaction pooling)
    my-primary :53306  -> my-replica :53307 (GTID, read_only)

The URLs default to those ports and the application user's password, so the tests work without
sourcing ``scripts/cluster.sh env``; the ``AIOPD_*`` environment variables override them.
Faults go through :func:`cluster` / :func:`run_cluster` (the verbs of ``scripts/cluster.sh``), or
through the :class:`topology.Replication` object of :func:`replication`, in this process.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql
import psycopg
import pytest
from topology import Replication, TopologyError
from topology.procs import APP_PASSWORD as APP_PASSWORD
from topology.procs import APP_USER as APP_USER

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "cluster.sh"


@functools.cache
def replication() -> Replication:
    """The replication topology of this checkout (``AIOPD_PORT_OFFSET``, ``AIOPD_CLUSTER_DIR``)."""
    return Replication()


#: Node name (as the fault verbs take it) -> port.
PORTS: dict[str, int] = dict(replication().ports)

_ENV_VARS: dict[str, str] = {
    "pg-primary": "AIOPD_PG_PRIMARY",
    "pg-replica-1": "AIOPD_PG_REPLICA_1",
    "pg-replica-2": "AIOPD_PG_REPLICA_2",
    "pgbouncer": "AIOPD_PGBOUNCER",
    "my-primary": "AIOPD_MY_PRIMARY",
    "my-replica": "AIOPD_MY_REPLICA",
}

#: Node name (as the fault verbs take it) -> URL of database ``aiopd`` as the app user.
URLS: dict[str, str] = {
    node: os.environ.get(var) or replication().url(node) for node, var in _ENV_VARS.items()
}

PG_PRIMARY = URLS["pg-primary"]
PG_REPLICAS = [URLS["pg-replica-1"], URLS["pg-replica-2"]]
PGBOUNCER = URLS["pgbouncer"]
MY_PRIMARY = URLS["my-primary"]
MY_REPLICA = URLS["my-replica"]

_POLL = 0.01


class _QuietCursor(aiomysql.Cursor):  # type: ignore[misc]  # aiomysql is untyped
    """Does not turn server notes (e.g. of ``DROP TABLE IF EXISTS``) into Python warnings,
    which pytest's ``filterwarnings = error`` would raise."""

    async def _show_warnings(self, conn: Any) -> None:
        return None


class ClusterError(TopologyError):
    """A verb of the replication topology failed; the message says why (with the tail of the
    server log that tells)."""


def cluster(*args: str, timeout: float = 120) -> str:
    """Run one verb of ``scripts/cluster.sh`` (``cluster("delay", "pg-replica-1", "2")``) in this
    process; what the script would print on stdout. Raises ClusterError when it fails.

    ``timeout`` is kept for callers: every wait inside a verb is bounded already (60 s for a node
    to come up, 30 s for wait-sync, 300 s for the lock of another caller).
    """
    del timeout
    try:
        return replication().command(args)
    except TopologyError as exc:
        raise ClusterError(f"cluster {' '.join(args)}: {exc}") from exc


async def run_cluster(*args: str, timeout: float = 120) -> str:
    """:func:`cluster` in a worker thread, without blocking the event loop."""
    return await asyncio.to_thread(cluster, *args, timeout=timeout)


async def until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, *, interval: float = 0.02
) -> None:
    """Poll ``predicate`` (sync or async) every ``interval`` s; fail naming ``what`` if it is not
    true within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 0


def cluster_available(kind: str) -> bool:
    """Quick TCP check that the primary of ``kind`` ("pg", "mysql" or "pgbouncer") listens."""
    node = {"pg": "pg-primary", "mysql": "my-primary", "pgbouncer": "pgbouncer"}.get(kind)
    if node is None:
        raise ValueError(f"kind must be 'pg', 'mysql' or 'pgbouncer', not {kind!r}")
    try:
        with socket.create_connection(_host_port(URLS[node]), timeout=0.5):
            return True
    except OSError:
        return False


def needs_cluster(kind: str) -> pytest.MarkDecorator:
    """``@needs_cluster("pg")``: skip the test when that part of the topology is not listening."""
    return pytest.mark.skipif(
        not cluster_available(kind), reason=f"{kind} topology not running (scripts/cluster.sh start)"
    )


def _mysql_kwargs(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ValueError(f"not a mysql:// URL: {url!r}")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "db": unquote(parts.path.lstrip("/")) or None,
        "autocommit": True,
        "connect_timeout": 5,
    }


def libpq_url(url: str) -> str:
    """``url`` as libpq reads it: the library's driver schemes (``postgresql+aiopg://``,
    ``postgresql+asyncpg://``) are plain ``postgresql://`` to psycopg."""
    return re.sub(r"^postgres(ql)?\+[a-z0-9]+://", "postgresql://", url)


async def pg_rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """All rows of ``sql`` on a fresh autocommit connection to ``url`` ([] without a result set)."""
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        cur = await conn.execute(sql, params or None)
        if cur.description is None:  # a statement without a result set (DDL, INSERT, ...)
            return []
        return list(await cur.fetchall())


async def pg_scalar(url: str, sql: str) -> Any:
    """First column of the first row of ``sql`` on ``url`` (None when there is no row)."""
    rows = await pg_rows(url, sql)
    return rows[0][0] if rows else None


async def my_rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """All rows of ``sql`` on a fresh autocommit aiomysql connection to ``url``."""
    conn = await aiomysql.connect(**_mysql_kwargs(url))
    try:
        async with conn.cursor(_QuietCursor) as cur:
            await cur.execute(sql, params or None)
            return list(await cur.fetchall())
    finally:
        conn.close()


async def my_scalar(url: str, sql: str) -> Any:
    """First column of the first row of ``sql`` on ``url`` (None when there is no row)."""
    rows = await my_rows(url, sql)
    return rows[0][0] if rows else None


async def wait_pg_replayed(primary_url: str, replica_urls: list[str], timeout: float = 10.0) -> None:
    """Wait until every replica replayed the primary's current WAL position.

    Uses the primary's flush position: every committed transaction is flushed (synchronous_commit
    is on) and standbys can only receive flushed WAL.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    target = await pg_scalar(primary_url, "SELECT pg_current_wal_flush_lsn()::text")
    for url in replica_urls:
        async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
            while True:
                cur = await conn.execute(
                    "SELECT pg_last_wal_replay_lsn()::text,"
                    " coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)",
                    (target,),
                )
                row = await cur.fetchone()
                assert row is not None
                if row[1]:
                    break
                if loop.time() >= deadline:
                    raise TimeoutError(
                        f"{_host_port(url)} replayed up to {row[0]}, primary is at {target}"
                        f" (after {timeout} s)"
                    )
                await asyncio.sleep(_POLL)


def _gtid_seqs(pos: str) -> dict[int, int]:
    """'0-1-42,1-2-7' -> {0: 42, 1: 7} (domain -> sequence number)."""
    seqs: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in pos.split(","))):
        domain, _server, seq = part.split("-")
        seqs[int(domain)] = int(seq)
    return seqs


async def wait_mysql_replayed(primary_url: str, replica_url: str, timeout: float = 10.0) -> None:
    """Wait until the replica's @@gtid_slave_pos covers the primary's @@gtid_binlog_pos."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    target = str(await my_scalar(primary_url, "SELECT @@gtid_binlog_pos") or "")
    want = _gtid_seqs(target)
    conn = await aiomysql.connect(**_mysql_kwargs(replica_url))
    try:
        while True:
            async with conn.cursor() as cur:
                await cur.execute("SELECT @@gtid_slave_pos")
                row = await cur.fetchone()
            have_pos = str(row[0] or "") if row else ""
            have = _gtid_seqs(have_pos)
            if all(have.get(domain, -1) >= seq for domain, seq in want.items()):
                return
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"{_host_port(replica_url)} gtid_slave_pos={have_pos!r}, primary gtid_binlog_pos="
                    f"{target!r} (after {timeout} s)"
                )
            await asyncio.sleep(_POLL)
    finally:
        conn.close()
