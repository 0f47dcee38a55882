"""Transactions and cancellation on fake servers: what reaches the server, what is committed,
what happens to the connection when a block is interrupted or its server goes away."""

from __future__ import annotations

import asyncio
import contextlib

import peewee
import pytest

from aiopeewee_dist import Manager, NodeUnavailable, QueryTimeout, TransactionError
from aiopeewee_dist.testing import FakeCluster, FakeServer
from core.fakes import Item, MakeManager


def sent(server: FakeServer, start: int = 0) -> list[str]:
    return [s.sql.split()[0].upper() for s in list(server.statements)[start:]]


async def count(manager: Manager) -> int:
    return int(await manager.count(Item.select(), node="primary"))


async def test_begin_travels_with_the_first_statement(manager: Manager, fake: FakeCluster) -> None:
    start = len(fake.primary.statements)
    async with manager.transaction():
        await manager.create(Item, name="a")
    assert sent(fake.primary, start) == ["BEGIN", "INSERT", "COMMIT"]
    start = len(fake.primary.statements)
    async with manager.transaction():
        pass  # no statement: neither BEGIN nor COMMIT
    assert sent(fake.primary, start) == []


async def test_connection_block_sends_begin_before_handing_out(manager: Manager, fake: FakeCluster) -> None:
    async with manager.transaction(), manager.connection() as conn:
        assert conn.in_transaction
    async with manager.transaction():
        rows = [i async for i in manager.iterate(Item.select())]  # BEGIN sent before streaming
        assert rows == []


async def test_decorator_nesting_and_isolation(manager: Manager, fake: FakeCluster) -> None:
    @manager.transaction()
    async def add(name: str) -> None:
        await manager.create(Item, name=name)

    await add("a")
    await add("b")
    async with manager.transaction():
        with pytest.raises(peewee.IntegrityError):
            async with manager.transaction():  # savepoint
                await manager.create(Item, name="a")
        await manager.create(Item, name="c")
    assert await count(manager) == 3
    async with manager.transaction():
        with pytest.raises(TransactionError, match="outermost"):
            async with manager.transaction(isolation="serializable"):
                pass
    block = manager.transaction()
    async with block:
        with pytest.raises(TransactionError, match="once"):
            await block.__aenter__()


async def test_error_in_block_rolls_back(manager: Manager, fake: FakeCluster) -> None:
    with pytest.raises(KeyError):
        async with manager.transaction():
            await manager.create(Item, name="gone")
            raise KeyError("x")
    assert await count(manager) == 0
    assert manager.stats()["primary"]["acquired"] == 0


async def test_server_gone_before_commit_is_not_reported_as_committed(
    manager: Manager, fake: FakeCluster
) -> None:
    with pytest.raises(NodeUnavailable, match="nothing was committed"):
        async with manager.transaction():
            await manager.create(Item, name="lost")
            fake.primary.drop_connections()
            # The block swallows the error: COMMIT must still not look successful.
            with contextlib.suppress(NodeUnavailable):
                await manager.create(Item, name="lost-too")
    assert await count(manager) == 0


async def test_commit_whose_reply_is_lost(manager: Manager, fake: FakeCluster) -> None:
    fake.primary.drop_next(match="COMMIT", after=True)
    with pytest.raises(NodeUnavailable):
        async with manager.transaction():
            await manager.create(Item, name="in-doubt")
    assert await count(manager) == 1  # committed: the client could not know


async def test_cancelled_transaction_rolls_back_and_frees_its_connection(
    manager: Manager, fake: FakeCluster
) -> None:
    started = asyncio.Event()

    async def block() -> None:
        async with manager.transaction():
            await manager.create(Item, name="cancelled")
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(block())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await count(manager) == 0
    stats = manager.stats()["primary"]
    assert stats["acquired"] == 0


async def test_statement_cancelled_mid_flight_discards_the_connection(
    manager: Manager, fake: FakeCluster
) -> None:
    fake.primary.latency = 0.2
    task = asyncio.create_task(manager.create(Item, name="x"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fake.primary.latency = 0.0
    assert await count(manager) == 0
    stats = manager.stats()["primary"]
    assert stats["acquired"] == 0 and stats["connections_closed"] >= 1


async def test_query_timeout_inside_a_transaction(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(query_timeout=0.1)
    await manager.create_tables([Item])
    with pytest.raises(NodeUnavailable, match="broke before COMMIT"):
        async with manager.transaction():
            await manager.create(Item, name="a")
            fake.primary.hang()
            with pytest.raises(QueryTimeout):
                await manager.create(Item, name="b")
    fake.primary.unhang()
    assert await count(manager) == 0


async def test_tasks_spawned_in_a_transaction_run_outside_it(manager: Manager, fake: FakeCluster) -> None:
    async with manager.transaction():
        await manager.create(Item, name="inside")
        # Another connection: it does not see the uncommitted row.
        assert await asyncio.create_task(manager.count(Item.select(), node="primary")) == 0
    assert await count(manager) == 1


async def test_failed_first_statement_keeps_begin_pending(manager: Manager, fake: FakeCluster) -> None:
    fake.primary.fail_next("scripted", match="INSERT")
    async with manager.transaction():
        with pytest.raises(peewee.OperationalError, match="scripted"):
            await manager.create(Item, name="a")
        await manager.create(Item, name="b")
    assert [i.name for i in await manager.execute(Item.select(), node="primary")] == ["b"]


async def test_read_only_and_replica_transactions(manager: Manager, fake: FakeCluster) -> None:
    await manager.create(Item, name="a")
    async with manager.transaction(read_only=True):
        assert await manager.count(Item.select()) == 1
    with manager.using("replica-1"):
        async with manager.transaction(read_only=True):
            assert await manager.count(Item.select()) == 1
    assert any("core_item" in s.sql for s in fake.replicas[0].statements)
