"""Transactions against real servers, on every backend: commit, rollback, savepoints, the
decorator form, isolation and read-only transactions, one transaction per task, cancellation
(also in the middle of a long query) and the documented behaviour of tasks spawned inside one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import peewee
import pytest
from cluster import my_scalar, pg_scalar, until
from conftest import Topology

from aiopeewee_dist import (
    ConfigurationError,
    Manager,
    NodeUnavailable,
    QueryTimeout,
    ReadOnlyError,
    TransactionError,
)


class _AuthorMeta:
    table_name = f"t_tx_author_{os.getpid()}"


# conftest's Author on a table of this process's own: other test runs may share the cluster at
# the same time and must not see (or drop) these rows. The class name carries the pid too:
# peewee names the unique index after it, and PostgreSQL index names are per schema.
Author: Any = type(
    f"TxAuthor{os.getpid()}",
    (peewee.Model,),
    {
        "__module__": __name__,
        "name": peewee.CharField(max_length=64, unique=True),
        "age": peewee.IntegerField(default=0),
        "Meta": _AuthorMeta,
    },
)
TABLE = Author._meta.table_name


@pytest.fixture
async def tables(manager: Manager, topology: Topology) -> AsyncIterator[Manager]:
    """Overrides conftest's: a fresh table of our own, replicated before the test starts."""
    await manager.drop_tables([Author])
    await manager.create_tables([Author])
    await topology.wait_replicated()
    yield manager
    await manager.drop_tables([Author])


# How long server-side cleanup (a rollback in the background, a backend exiting) may take.
CLEANUP_BOUND = 3.0


# -- helpers ----------------------------------------------------------------------------


def with_params(url: str, **params: str) -> str:
    """``url`` with query parameters appended."""
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def pid_sql(topology: Topology) -> str:
    return "SELECT pg_backend_pid()" if topology.kind == "pg" else "SELECT CONNECTION_ID()"


async def server_scalar(topology: Topology, sql: str) -> Any:
    """Ask the primary server directly, outside the library."""
    if topology.kind == "pg":
        return await pg_scalar(topology.primary.replace("postgresql+aiopg://", "postgresql://", 1), sql)
    return await my_scalar(topology.primary, sql)


async def no_connection_acquired(manager: Manager, node: str | None = None) -> None:
    """Wait (bounded) until the pools of ``node`` (default: every node) have nothing checked out.

    Polled rather than read once: background work (a rollback on return, a health probe when
    the monitor is on) may hold a connection for a moment."""

    def acquired() -> int:
        stats = manager.stats()
        nodes = [node] if node else [n.name for n in manager.nodes]
        return sum(stats[name]["acquired"] for name in nodes)

    async def idle() -> bool:
        return acquired() == 0

    await until(idle, CLEANUP_BOUND, f"no connection acquired (acquired={acquired()})")


async def names(manager: Manager) -> set[str]:
    """Author names committed on the primary."""
    with manager.primary():
        return {a.name for a in await manager.execute(Author.select())}


def sqlite_path(topology: Topology) -> str:
    return topology.primary[len("sqlite:///") :]


def sqlite_write_lock_free(topology: Topology) -> bool:
    """True if no connection holds SQLite's write lock (a raw connection can take it at once)."""
    conn = sqlite3.connect(sqlite_path(topology), timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


async def kill_backend(topology: Topology, pid: int) -> None:
    """Test hygiene: end a server session left running (e.g. a sleep whose client went away),
    so that it does not hold locks on the tables the next test drops."""
    if topology.kind == "pg":
        await server_scalar(topology, f"SELECT pg_terminate_backend({int(pid)})")
    elif topology.kind == "mysql":
        alive = await server_scalar(
            topology, f"SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = {int(pid)}"
        )
        if alive:
            with contextlib.suppress(Exception):  # gone in between
                await server_scalar(topology, f"KILL {int(pid)}")


def tagged(topology: Topology, app: str) -> Topology:
    """The same topology with ``application_name=app`` on every PostgreSQL URL, so that
    server-side counts see only this test's sessions (other test runs may share the cluster)."""
    if topology.kind != "pg":
        return topology
    return Topology(
        topology.backend,
        with_params(topology.primary, application_name=app),
        [with_params(u, application_name=app) for u in topology.replicas],
    )


@pytest.fixture
async def app_manager(tables: Manager, topology: Topology) -> AsyncIterator[Manager]:
    app = f"aiopd_tx_{uuid.uuid4().hex[:12]}"
    m = tagged(topology, app).manager(acquire_timeout=5.0)
    m.app_name = app  # type: ignore[attr-defined]
    try:
        yield m
    finally:
        await m.close()


# -- commit, rollback, savepoints ---------------------------------------------------------


async def test_commit(tables: Manager) -> None:
    manager = tables
    async with manager.transaction() as tx:
        assert tx.node is manager.primary_node
        await manager.create(Author, name="a1")
        await manager.create(Author, name="a2")
        # Inside, the transaction's own connection sees its rows.
        assert await manager.count(Author.select()) == 2
    assert await names(manager) == {"a1", "a2"}


async def test_uncommitted_rows_are_invisible_to_other_connections(tables: Manager) -> None:
    manager = tables
    seen_outside: list[int] = []

    async def outsider() -> None:
        with manager.primary():
            seen_outside.append(await manager.count(Author.select()))

    async with manager.transaction():
        await manager.create(Author, name="hidden")
        await asyncio.create_task(outsider())  # another task: another connection
    assert seen_outside == [0]
    assert await names(manager) == {"hidden"}


async def test_rollback_on_exception(tables: Manager) -> None:
    manager = tables

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with manager.transaction():
            await manager.create(Author, name="gone1")
            await manager.create(Author, name="gone2")
            raise Boom
    assert await names(manager) == set()
    await no_connection_acquired(manager)


async def test_nested_block_is_a_savepoint(tables: Manager) -> None:
    manager = tables
    async with manager.transaction():
        await manager.create(Author, name="outer-before")
        with pytest.raises(ZeroDivisionError):
            async with manager.transaction():
                await manager.create(Author, name="inner-failed")
                assert await manager.count(Author.select()) == 2
                1 / 0  # noqa: B018
        # Only the inner block's rows are gone; the outer transaction goes on.
        assert {a.name for a in await manager.execute(Author.select())} == {"outer-before"}
        async with manager.transaction():
            await manager.create(Author, name="inner-ok")
        await manager.create(Author, name="outer-after")
    assert await names(manager) == {"outer-before", "inner-ok", "outer-after"}


async def test_outer_rollback_undoes_released_savepoints(tables: Manager) -> None:
    manager = tables
    with pytest.raises(RuntimeError):
        async with manager.transaction():
            async with manager.transaction():
                await manager.create(Author, name="inner")
            raise RuntimeError("outer fails")
    assert await names(manager) == set()


async def test_decorator_runs_each_call_in_its_own_transaction(tables: Manager) -> None:
    manager = tables

    @manager.transaction()
    async def add(*new: str, fail: bool = False) -> int:
        for name in new:
            await manager.create(Author, name=name)
        if fail:
            raise ValueError("rolled back")
        return len(new)

    assert await add("d1", "d2") == 2
    with pytest.raises(ValueError, match="rolled back"):
        await add("d3", "d4", fail=True)
    # The same decorated function in parallel: one Transaction object per call, not one shared.
    assert await asyncio.gather(add("p1"), add("p2")) == [1, 1]
    assert await names(manager) == {"d1", "d2", "p1", "p2"}


# -- isolation and read-only transactions --------------------------------------------------


async def test_isolation_serializable(tables: Manager, topology: Topology) -> None:
    manager = tables
    async with manager.transaction(isolation="serializable"):
        await manager.create(Author, name="iso")
        if topology.kind == "pg":
            assert await manager.raw_sql("SHOW transaction_isolation") == [("serializable",)]
        elif topology.kind == "mysql":
            rows = await manager.raw_sql(
                "SELECT trx_isolation_level FROM information_schema.innodb_trx"
                " WHERE trx_mysql_thread_id = CONNECTION_ID()"
            )
            assert rows == [("SERIALIZABLE",)]
    assert await names(manager) == {"iso"}


@pytest.mark.parametrize("level", ["bogus", "READ COMMITTED; DROP TABLE t_x", ""])
async def test_bad_isolation_is_a_configuration_error(tables: Manager, level: str) -> None:
    with pytest.raises(ConfigurationError, match="isolation must be one of"):
        tables.transaction(isolation=level)


async def test_isolation_on_a_nested_block_is_refused(tables: Manager) -> None:
    manager = tables
    async with manager.transaction():
        await manager.create(Author, name="kept")
        with pytest.raises(TransactionError, match="outermost"):
            async with manager.transaction(isolation="serializable"):
                pass
    assert await names(manager) == {"kept"}


async def test_write_inside_read_only_transaction_raises_read_only_error(tables: Manager) -> None:
    manager = tables
    with pytest.raises(ReadOnlyError):
        async with manager.transaction(read_only=True):
            await manager.create(Author, name="nope")
    with pytest.raises(ReadOnlyError):
        async with manager.transaction(read_only=True):
            await manager.raw_sql(f"INSERT INTO {TABLE} (name, age) VALUES ('raw', 1)")
    # Also when the read-only transaction is pinned to the primary.
    with pytest.raises(ReadOnlyError):
        async with manager.transaction(read_only=True, node="primary"):
            await manager.execute(Author.insert(name="nope2"))
    assert await names(manager) == set()
    await no_connection_acquired(manager)


async def test_read_only_transaction_runs_on_a_replica(tables: Manager, topology: Topology) -> None:
    manager = tables
    # Written behind the manager's back: a write through it would make this context's reads
    # stick to the primary for a while (read-your-writes).
    if topology.kind == "sqlite":
        await manager.create(Author, name="replicated")
    else:
        await server_scalar(topology, f"INSERT INTO {TABLE} (name, age) VALUES ('replicated', 1)")
    await topology.wait_replicated()
    async with manager.transaction(read_only=True) as tx:
        rows = await manager.raw_sql(topology.whoami_sql)
        assert [a.name for a in await manager.execute(Author.select())] == ["replicated"]
    if topology.kind == "sqlite":
        # No replicas: it runs on one of the read-only reader connections.
        assert tx.node is manager.primary_node
        assert rows == [(1,)]
    else:
        assert tx.node is not None and tx.node.role == "replica"
        (_port, is_replica) = rows[0]
        assert bool(int(is_replica)) is True, rows  # pg_is_in_recovery() / @@read_only


# -- the BEGIN sent with the first statement (psycopg) -------------------------------------
# psycopg sends a transaction's BEGIN in one message with the block's first statement; these
# pin down that nothing observable changes, on every backend.


def pg_only(topology: Topology) -> None:
    if topology.kind != "pg":
        pytest.skip("PostgreSQL settings and error states")


async def test_first_statement_sees_isolation_and_read_only(tables: Manager, topology: Topology) -> None:
    pg_only(topology)
    manager = tables
    async with manager.transaction(isolation="repeatable read", node="primary"):
        assert await manager.raw_sql("SHOW transaction_isolation") == [("repeatable read",)]
    async with manager.transaction(read_only=True, node="primary"):
        assert await manager.raw_sql("SHOW transaction_read_only") == [("on",)]
    async with manager.transaction(node="primary"):
        assert await manager.raw_sql("SHOW transaction_read_only") == [("off",)]


async def test_first_statement_failing_on_the_server_leaves_the_transaction_aborted(
    tables: Manager, topology: Topology
) -> None:
    pg_only(topology)
    manager = tables
    with pytest.raises(peewee.InternalError, match="aborted"):
        async with manager.transaction():
            with pytest.raises(peewee.ProgrammingError):
                await manager.raw_sql("SELECT * FROM no_such_table_aiopd")
            # The BEGIN ran with it: the transaction is open and failed, as with a separate BEGIN.
            await manager.create(Author, name="after-failure")
    assert await names(manager) == set()
    async with manager.transaction():
        await manager.create(Author, name="next")
    assert await names(manager) == {"next"}
    await no_connection_acquired(manager)


async def test_first_statement_failing_before_sending_keeps_the_transaction(
    tables: Manager, topology: Topology
) -> None:
    if topology.backend != "psycopg":
        pytest.skip("a parameter psycopg cannot adapt fails before anything is sent")
    manager = tables

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with manager.transaction():
            with pytest.raises(peewee.ProgrammingError, match="cannot adapt"):
                await manager.raw_sql("SELECT %s", (object(),))
            await manager.create(Author, name="rolled-back")
            raise Boom
    assert await names(manager) == set()
    await no_connection_acquired(manager)


async def test_empty_transaction_blocks(tables: Manager, topology: Topology) -> None:
    manager = tables
    async with manager.transaction():
        pass
    with pytest.raises(ZeroDivisionError):
        async with manager.transaction():
            1 / 0  # noqa: B018
    async with manager.transaction(), manager.transaction():
        pass
    await no_connection_acquired(manager)
    async with manager.connection() as conn:
        assert not manager.primary_node.driver.in_transaction(conn)
    async with manager.transaction():
        await manager.create(Author, name="after-empty")
    assert await names(manager) == {"after-empty"}


async def test_statement_count_includes_the_begin(tables: Manager, topology: Topology) -> None:
    if topology.backend != "psycopg":
        pytest.skip("other drivers send the BEGIN statements on their own")
    manager = tables
    before = manager.stats()["primary"]["queries"]
    async with manager.transaction():
        await manager.create(Author, name="counted")
    assert manager.stats()["primary"]["queries"] == before + 3  # BEGIN, INSERT, COMMIT


async def test_raw_connection_inside_a_transaction_is_in_it(tables: Manager, topology: Topology) -> None:
    manager = tables
    driver = manager.primary_node.driver
    async with manager.transaction(), manager.connection() as conn:
        assert driver.in_transaction(conn)
    # A transaction opened inside connection() is open as soon as the block starts, too.
    async with manager.connection() as conn:
        async with manager.transaction():
            assert driver.in_transaction(conn)
        assert not driver.in_transaction(conn)


async def test_stream_as_first_statement_stays_in_the_transaction(
    tables: Manager, topology: Topology
) -> None:
    manager = tables
    await manager.create(Author, name="before")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with manager.transaction():
            async with manager.iterate(Author.select()) as rows:
                assert [row.name async for row in rows] == ["before"]
            await manager.create(Author, name="rolled-back")
            raise Boom
    assert await names(manager) == {"before"}
    async with manager.transaction():
        async with manager.iterate(Author.select()) as rows:
            assert [row.name async for row in rows] == ["before"]
        await manager.create(Author, name="committed")
    assert await names(manager) == {"before", "committed"}
    if topology.kind != "sqlite":
        # The stream took the transaction's snapshot: a row committed afterwards stays unseen.
        async with manager.transaction(isolation="repeatable read"):
            async with manager.iterate(Author.select()) as rows:
                assert {row.name async for row in rows} == {"before", "committed"}
            await server_scalar(topology, f"INSERT INTO {TABLE} (name, age) VALUES ('outsider', 1)")
            assert {a.name for a in await manager.execute(Author.select())} == {"before", "committed"}
    await no_connection_acquired(manager)


async def test_savepoint_as_first_statement(tables: Manager) -> None:
    manager = tables
    async with manager.transaction():
        with pytest.raises(ZeroDivisionError):
            async with manager.transaction():
                await manager.create(Author, name="inner")
                1 / 0  # noqa: B018
        await manager.create(Author, name="outer")
    assert await names(manager) == {"outer"}


# -- one transaction per task ----------------------------------------------------------------


async def test_concurrent_tasks_get_their_own_transactions(tables: Manager, topology: Topology) -> None:
    manager = tables
    pids: dict[str, Any] = {}
    both_open = asyncio.Barrier(2) if topology.kind != "sqlite" else None

    async def worker(tag: str, fail: bool) -> None:
        async with manager.transaction():
            await manager.create(Author, name=f"{tag}1")
            if topology.kind != "sqlite":
                pids[tag] = (await manager.raw_sql(pid_sql(topology)))[0][0]
            await manager.create(Author, name=f"{tag}2")
            own = {f"{tag}1", f"{tag}2"}
            seen = {a.name for a in await manager.execute(Author.select())}
            if both_open is not None:
                # Nobody has committed yet: each transaction sees exactly its own rows.
                assert seen == own
                # Both transactions are open at once here (SQLite serialises writers instead).
                await asyncio.wait_for(both_open.wait(), 5)
            else:
                # SQLite ran the other one before or after this one: at most its committed rows.
                assert own <= seen and seen - own <= {"ok1", "ok2"}
            if fail:
                raise LookupError(tag)

    results = await asyncio.gather(worker("rb", True), worker("ok", False), return_exceptions=True)
    assert isinstance(results[0], LookupError) and results[1] is None, results
    assert await names(manager) == {"ok1", "ok2"}
    if topology.kind != "sqlite":
        assert pids["rb"] != pids["ok"]


async def test_spawned_task_runs_outside_the_transaction(tables: Manager, topology: Topology) -> None:
    """Documented in _context: a task spawned inside a transaction does not join it."""
    manager = tables
    child_saw: dict[str, Any] = {}

    async def child() -> None:
        with manager.primary():
            child_saw["count"] = await manager.count(Author.select().where(Author.name == "parent"))
            async with manager.connection(write=False) as conn:
                child_saw["conn"] = conn
                if topology.kind != "sqlite":
                    child_saw["pid"] = (await manager.raw_sql(pid_sql(topology)))[0][0]

    async with manager.transaction():
        await manager.create(Author, name="parent")
        async with manager.connection() as parent_conn:  # the transaction's pinned connection
            pass
        parent_pid = None
        if topology.kind != "sqlite":
            parent_pid = (await manager.raw_sql(pid_sql(topology)))[0][0]
        await asyncio.create_task(child())
        # The parent transaction is unaffected and still sees its own row.
        assert await manager.count(Author.select().where(Author.name == "parent")) == 1

    assert child_saw["count"] == 0  # the uncommitted row is invisible to the child
    assert child_saw["conn"] is not parent_conn
    if topology.kind != "sqlite":
        assert child_saw["pid"] != parent_pid
    assert await names(manager) == {"parent"}  # and the parent still committed


async def test_reusing_an_open_transaction_object_raises(tables: Manager) -> None:
    manager = tables
    tx = manager.transaction()
    async with tx:
        await manager.create(Author, name="first")
        with pytest.raises(TransactionError, match="entered once at a time"):
            async with tx:
                pass
        await manager.create(Author, name="second")
    assert await names(manager) == {"first", "second"}
    # Once closed, the same object may open a new transaction.
    with pytest.raises(KeyError):
        async with tx:
            await manager.create(Author, name="third")
            raise KeyError("rollback")
    assert await names(manager) == {"first", "second"}


# -- cancellation ------------------------------------------------------------------------


async def open_transactions(topology: Topology, manager: Manager, session: Any) -> int:
    """Open transactions the server reports for this manager's sessions (PG: its
    application_name; MariaDB: the session id ``session``)."""
    if topology.kind == "pg":
        app = manager.app_name  # type: ignore[attr-defined]
        return int(
            await server_scalar(
                topology,
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'aiopd'"
                f" AND application_name = '{app}' AND state LIKE 'idle in transaction%'",
            )
        )
    return int(
        await server_scalar(
            topology,
            f"SELECT count(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = {int(session)}",
        )
    )


async def test_cancellation_inside_transaction_rolls_back_and_cleans_the_connection(
    app_manager: Manager, topology: Topology
) -> None:
    manager = app_manager
    inside = asyncio.Event()
    session: dict[str, Any] = {}

    async def victim() -> None:
        async with manager.transaction():
            await manager.create(Author, name="cancelled1")
            await manager.create(Author, name="cancelled2")
            if topology.kind != "sqlite":
                session["pid"] = (await manager.raw_sql(pid_sql(topology)))[0][0]
            inside.set()
            await asyncio.Event().wait()  # idle inside the transaction until cancelled

    # InnoDB refreshes information_schema.innodb_trx only when it was not read for 100 ms:
    # polling it faster would keep reading the same stale snapshot.
    interval = 0.2 if topology.kind == "mysql" else 0.02
    task = asyncio.create_task(victim())
    await asyncio.wait_for(inside.wait(), 5)
    # The server sees the open transaction (so the check below can see it go away) ...
    if topology.kind == "sqlite":
        assert not sqlite_write_lock_free(topology)
    else:

        async def open_one() -> bool:
            return await open_transactions(topology, manager, session.get("pid")) == 1

        await until(open_one, CLEANUP_BOUND, "the server reports the open transaction", interval=interval)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # ... and after the cancellation none is left (cleanup may finish in the background).
    if topology.kind == "sqlite":

        async def clean() -> bool:
            return sqlite_write_lock_free(topology)
    else:

        async def clean() -> bool:
            return await open_transactions(topology, manager, session.get("pid")) == 0

    await until(clean, CLEANUP_BOUND, "no open transaction left on the server", interval=interval)
    assert await names(manager) == set()
    await no_connection_acquired(manager, "primary")
    # The connection (or its replacement) is usable: a new transaction commits.
    async with manager.transaction():
        await manager.create(Author, name="after")
    assert await names(manager) == {"after"}


def long_query(topology: Topology) -> str:
    if topology.kind == "pg":
        return "SELECT pg_sleep(5)"
    if topology.kind == "mysql":
        return "SELECT SLEEP(5)"
    # Many seconds of CPU in SQLite's VDBE (a billion-step recursive CTE).
    return (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000)"
        " SELECT sum(x) FROM c"
    )


async def query_running(topology: Topology, pid: Any) -> bool:
    if topology.kind == "pg":
        return bool(
            await server_scalar(
                topology,
                f"SELECT count(*) FROM pg_stat_activity WHERE pid = {int(pid)}"
                " AND state = 'active' AND query LIKE 'SELECT pg_sleep%'",
            )
        )
    return bool(
        await server_scalar(
            topology,
            f"SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = {int(pid)}"
            " AND INFO LIKE 'SELECT SLEEP%'",
        )
    )


async def test_cancellation_during_a_long_query_in_a_transaction(
    app_manager: Manager, topology: Topology
) -> None:
    manager = app_manager
    inside = asyncio.Event()
    session: dict[str, Any] = {}

    async def victim() -> None:
        async with manager.transaction():
            await manager.create(Author, name="doomed")
            if topology.kind != "sqlite":
                session["pid"] = (await manager.raw_sql(pid_sql(topology)))[0][0]
            inside.set()
            await manager.raw_sql(long_query(topology))

    task = asyncio.create_task(victim())
    try:
        await asyncio.wait_for(inside.wait(), 5)
        if topology.kind == "sqlite":
            await asyncio.sleep(0.2)  # no server to ask: give the statement time to start
        else:

            async def running() -> bool:
                return await query_running(topology, session["pid"])

            await until(running, CLEANUP_BOUND, "the long query is running on the server")
        loop = asyncio.get_running_loop()
        start = loop.time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.time() - start < 2.0, "cancellation waited for the query to finish"

        await no_connection_acquired(manager, "primary")
        assert await names(manager) == set()
        # Still usable, and writes are not blocked by the interrupted transaction.
        async with manager.transaction():
            await manager.create(Author, name="survivor")
        assert await names(manager) == {"survivor"}
        assert await manager.raw_sql("SELECT 1") == [(1,)]
        await no_connection_acquired(manager)
    finally:
        if not task.done():
            task.cancel()
        if "pid" in session:
            await kill_backend(topology, session["pid"])


async def test_failed_statement_inside_transaction_rolls_back(tables: Manager) -> None:
    manager = tables
    with pytest.raises(peewee.IntegrityError):
        async with manager.transaction():
            await manager.create(Author, name="dup")
            await manager.create(Author, name="dup")
    assert await names(manager) == set()
    async with manager.transaction():
        await manager.create(Author, name="dup")
    assert await names(manager) == {"dup"}


async def test_block_that_swallowed_an_interrupted_statement_does_not_claim_a_commit(
    tables: Manager, topology: Topology
) -> None:
    """The block caught a QueryTimeout and ended normally: its connection was discarded, so
    COMMIT cannot be sent. Leaving quietly would report the insert before it as committed."""
    manager = topology.manager(query_timeout=0.3)
    try:
        with pytest.raises(NodeUnavailable, match="before COMMIT"):
            async with manager.transaction():
                await manager.create(Author, name="never committed")
                with contextlib.suppress(QueryTimeout):
                    await manager.raw_sql(long_query(topology))
        assert await names(manager) == set()
        async with manager.transaction():  # and the manager goes on
            await manager.create(Author, name="committed")
        assert await names(manager) == {"committed"}
    finally:
        await manager.close()
