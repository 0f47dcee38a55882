"""``manager.database`` behaves as a peewee-async 2.1 database (issue 11 item 2).

Each test is one behaviour of peewee-async's public API that code moved to the manager relies
on, on all four backends and real servers. peewee-async's own suite, run through the manager,
is ``make compat`` (scripts/compat/run.py, docs/peewee-async.md).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import peewee
import peewee_async
import pytest
from conftest import MODELS, Author, Topology
from peewee_async.databases import fetchall
from peewee_async.testing import TransactionTestCase
from test_manager_api import node_stat, primary_answer

from aiopeewee_dist import Manager


def aio_author(database: Any) -> type[peewee_async.AioModel]:
    """peewee-async's ``AioModel`` on ``t_author``, bound to ``database`` as a peewee-async app binds it."""

    class AioAuthor(peewee_async.AioModel):
        name = peewee.CharField(max_length=64, unique=True)
        age = peewee.IntegerField(default=0)

        class Meta:
            table_name = "t_author"

    AioAuthor._meta.database = database
    return AioAuthor


async def primary_names(m: Manager) -> list[str]:
    query = Author.select(Author.name).order_by(Author.name).tuples()
    return [name for (name,) in await m.execute(query, node=m.primary_node)]


async def committed_elsewhere(m: Manager) -> int:
    """Rows another task (its own connection to the primary) can see: committed ones only."""
    return await asyncio.create_task(m.count(Author.select(), node="primary"))


async def test_aio_begin_savepoint_commit_and_rollback_inside_aio_connection(tables: Manager) -> None:
    m = tables
    db = m.database
    AioAuthor = aio_author(db)
    async with db.aio_connection() as conn:
        async with db.aio_connection() as inner:
            assert inner is conn  # nested blocks share the connection
        # Deliberately not written (docs/peewee-async.md): one slot for every database object.
        assert peewee_async.connection_context.get() is None
        tr = await db.aio_begin()
        assert isinstance(tr, peewee_async.Transaction) and not tr.is_savepoint
        await AioAuthor.aio_create(name="kept")
        savepoint = await db.aio_savepoint()
        assert savepoint.is_savepoint
        await AioAuthor.aio_create(name="undone")
        await savepoint.rollback()
        assert await committed_elsewhere(m) == 0  # still uncommitted: a real transaction
        await tr.commit()
    async with db.aio_connection():
        tr = await db.aio_begin()
        await AioAuthor.aio_create(name="rolled-back")
        await tr.rollback()
    assert await primary_names(m) == ["kept"]
    assert set(node_stat(m, "acquired").values()) == {0}
    # As in peewee-async, only inside aio_connection().
    for begin in (db.aio_begin, db.aio_savepoint):
        with pytest.raises(peewee.OperationalError, match="within the aio_connection context manager"):
            await begin()


async def test_nested_aio_transaction_raises_and_rolls_back(tables: Manager) -> None:
    m = tables
    db = m.database
    AioAuthor = aio_author(db)
    for outer in (db.aio_transaction, db.aio_atomic):
        with pytest.raises(peewee.OperationalError, match="Transaction already opened"):
            async with outer():
                await AioAuthor.aio_create(name="outer")
                async with db.aio_transaction():
                    await AioAuthor.aio_create(name="inner")
        assert await primary_names(m) == []
    assert set(node_stat(m, "acquired").values()) == {0}


async def test_nested_aio_atomic_is_a_savepoint(tables: Manager) -> None:
    m = tables
    db = m.database
    AioAuthor = aio_author(db)
    async with db.aio_atomic():
        await AioAuthor.aio_create(name="a")
        with pytest.raises(peewee.IntegrityError):
            async with db.aio_atomic():
                await AioAuthor.aio_create(name="a-twin", age=1)
                await AioAuthor.aio_create(name="a")  # duplicate: only this block rolls back
        async with db.aio_atomic():
            await AioAuthor.aio_create(name="b")
        assert await committed_elsewhere(m) == 0
    assert await primary_names(m) == ["a", "b"]


async def test_manual_transactions_nest_like_aio_atomic(tables: Manager) -> None:
    """Where peewee-async sends a second BEGIN (MariaDB then commits the open transaction)."""
    m = tables
    db = m.database
    AioAuthor = aio_author(db)
    async with db.aio_connection():
        tr = await db.aio_begin()
        with pytest.raises(peewee.OperationalError, match="Transaction already opened"):
            await db.aio_begin()
        await AioAuthor.aio_create(name="outer")
        with pytest.raises(peewee.IntegrityError):
            async with db.aio_atomic():  # a savepoint of the manual transaction
                await AioAuthor.aio_create(name="outer")
        with pytest.raises(peewee.OperationalError, match="Transaction already opened"):
            async with db.aio_transaction():
                pass
        assert await committed_elsewhere(m) == 0
        await tr.commit()
    async with db.aio_atomic():
        with pytest.raises(peewee.OperationalError, match="Transaction already opened"):
            async with db.aio_connection():
                await db.aio_begin()
    assert await primary_names(m) == ["outer"]
    assert set(node_stat(m, "acquired").values()) == {0}


async def test_transaction_test_case_rolls_back_on_the_primary(tables: Manager, topology: Topology) -> None:
    if topology.backend == "asyncpg":
        pytest.skip(
            "peewee-async's TransactionTestCase drives the raw connection's DB-API cursor; asyncpg has none"
        )
    m = tables
    db = m.database
    AioAuthor = aio_author(db)
    async with TransactionTestCase(db):
        await AioAuthor.aio_create(name="temporary")
        assert await AioAuthor.select().aio_exists()
        assert [
            tuple(row) for row in await db.aio_execute_sql(topology.whoami_sql, fetch_results=fetchall)
        ] == [primary_answer(topology)]
        assert node_stat(m, "acquired")["primary"] == 1
        # peewee-async disables transactions inside it; the same here.
        with pytest.raises(ValueError, match="disabled"):
            async with db.aio_atomic():
                pass
    assert await primary_names(m) == []
    assert set(node_stat(m, "acquired").values()) == {0}


async def test_allow_sync_runs_synchronous_peewee_on_the_primary(tables: Manager, topology: Topology) -> None:
    m = tables
    db = m.database
    AioAuthor = aio_author(db)
    with db.allow_sync():
        AioAuthor.create(name="sync")
        assert AioAuthor.select().count() == 1
        assert tuple(db.execute_sql(topology.whoami_sql).fetchone()) == primary_answer(topology)
    assert db.is_closed()  # allow_sync() closes its synchronous connection on exit
    assert await primary_names(m) == ["sync"]
    with pytest.raises(AssertionError, match="sync query is not allowed"):
        AioAuthor.create(name="refused")
    with pytest.raises(peewee.IntegrityError), db.allow_sync():
        AioAuthor.create(name="sync")
    with pytest.raises(AssertionError, match="sync query is not allowed"):
        AioAuthor.create(name="refused")  # the flag was restored after the error
    assert await primary_names(m) == ["sync"]


async def test_is_connected_reflects_open_pools(topology: Topology) -> None:
    m = topology.manager()
    db = m.database
    try:
        assert db.is_connected is False  # nothing has connected yet
        await db.aio_connect()
        assert db.is_connected is True
        await db.aio_close()
        assert db.is_connected is False
        await db.aio_close()  # idempotent
        assert db.is_connected is False
        with pytest.raises(peewee.OperationalError):
            await db.aio_execute_sql("SELECT 1")  # closed until aio_connect(), as in peewee-async
        await db.aio_connect()
        await db.aio_execute_sql("SELECT 1")
        assert db.is_connected is True
    finally:
        await m.close()
    assert db.is_connected is False

    lazy = topology.manager()
    try:
        await lazy.raw_sql("SELECT 1", node="primary")  # a first query opens the pool
        assert lazy.database.is_connected is True
    finally:
        await lazy.close()
    assert lazy.database.is_connected is False


async def test_database_follows_the_primary_after_failover(tmp_path: Path) -> None:
    """Models bound to ``manager.database`` at import time keep writing to the primary."""
    m = Manager(f"sqlite:///{tmp_path / 'first.db'}", health_check_interval=None)
    db = m.database
    AioAuthor = aio_author(db)
    try:
        await m.create_tables([Author])
        await AioAuthor.aio_create(name="on-first")
        await m.replace_primary(f"sqlite:///{tmp_path / 'second.db'}")
        assert m.database is db
        await m.create_tables([Author])
        await AioAuthor.aio_create(name="on-second")
        async with db.aio_atomic():
            await AioAuthor.aio_create(name="in-atomic")
        assert await primary_names(m) == ["in-atomic", "on-second"]
    finally:
        await m.close()


async def test_writes_through_the_database_count_for_read_your_writes(
    cluster_topology: Topology,
) -> None:
    """After an ``AioModel`` write, the manager's reads in that context see it (the default mode:
    with no health monitor to prove a replica caught up, the primary serves them)."""
    topology = cluster_topology
    m = topology.manager(read_your_writes="fresh")
    db = m.database
    AioAuthor = aio_author(db)
    try:
        await m.drop_tables(MODELS)
        await m.create_tables(MODELS)
        await topology.wait_replicated()
        with m.consistency():
            assert (await m.raw_sql(topology.whoami_sql))[0] != primary_answer(topology)  # a replica
            await AioAuthor.aio_create(name="written")
            assert await m.raw_sql(topology.whoami_sql) == [primary_answer(topology)]
        for write in ("atomic", "manual"):
            with m.consistency():
                if write == "atomic":
                    async with db.aio_atomic():
                        await AioAuthor.aio_create(name=write)
                else:
                    async with db.aio_connection():
                        tr = await db.aio_begin()
                        await AioAuthor.aio_create(name=write)
                        await tr.commit()
                assert await m.raw_sql(topology.whoami_sql) == [primary_answer(topology)], write
    finally:
        await m.close()
