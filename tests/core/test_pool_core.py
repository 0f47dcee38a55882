"""The pool on fake servers: bounds, fairness, timeouts, broken and expired connections, loops."""

from __future__ import annotations

import asyncio
import time

import pytest

from aiopeewee_dist import Manager, NodeUnavailable, PoolClosed, PoolTimeout, QueryTimeout
from aiopeewee_dist.testing import FakeCluster, FakeServer
from core.fakes import QUIET, Item, MakeManager


def pool(manager: Manager, name: str = "primary") -> dict[str, int]:
    return dict(manager.stats()[name])


async def test_exhausted_pool_times_out_then_serves_in_order(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    manager = make_manager(max_size=1, acquire_timeout=0.2)
    fake.primary.latency = 0.0
    order: list[int] = []
    async with manager.connection():
        with pytest.raises(PoolTimeout, match="max_size=1"):
            await asyncio.create_task(manager.raw_sql("SELECT 1", node="primary"))

        async def query(i: int) -> None:
            await manager.raw_sql("SELECT 1", node="primary")
            order.append(i)

        manager_waiters = [asyncio.create_task(query(i)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert pool(manager)["waiting"] == 3
    await asyncio.gather(*manager_waiters)
    assert order == [0, 1, 2]
    stats = pool(manager)
    assert (stats["size"], stats["acquired"], stats["timeouts"]) == (1, 0, 1)
    assert len(fake.primary.sessions) == 1


async def test_max_size_bounds_server_sessions(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(max_size=3)
    fake.primary.latency = 0.01
    await asyncio.gather(*(manager.raw_sql("SELECT 1", node="primary") for _ in range(20)))
    assert fake.primary.connections_opened == 3
    assert pool(manager)["size"] == 3


async def test_min_size_opens_on_connect_and_close_closes(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    manager = make_manager(min_size=2)
    await manager.connect()
    assert len(fake.primary.sessions) == 2
    await manager.close()
    assert not fake.primary.sessions
    with pytest.raises(PoolClosed):
        await manager.node("primary").pool.acquire()


async def test_dropped_connection_fails_one_statement_then_pool_recovers(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    manager = make_manager(ping_after_idle=None)
    await manager.raw_sql("SELECT 1", node="primary")
    fake.primary.drop_connections()
    with pytest.raises(NodeUnavailable, match="connection lost"):
        await manager.raw_sql("SELECT 1", node="primary")
    assert await manager.raw_sql("SELECT 1", node="primary") == [(1,)]


async def test_ping_on_checkout_discards_dead_idle_connections(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    manager = make_manager(ping_after_idle=0)
    await manager.raw_sql("SELECT 1", node="primary")
    fake.primary.drop_connections()
    assert await manager.raw_sql("SELECT 1", node="primary") == [(1,)]
    assert pool(manager)["pings_failed"] == 1


async def test_connect_refused_and_connect_timeout(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(connect_timeout=0.1)
    fake.primary.down()
    with pytest.raises(NodeUnavailable, match="is down"):
        await manager.raw_sql("SELECT 1", node="primary")
    fake.primary.up()
    fake.primary.hang()
    start = time.monotonic()
    with pytest.raises(NodeUnavailable, match="timed out"):
        await manager.raw_sql("SELECT 1", node="primary")
    assert time.monotonic() - start < 2.0
    fake.primary.unhang()
    assert pool(manager)["connections_failed"] == 2
    assert await manager.raw_sql("SELECT 1", node="primary") == [(1,)]


async def test_query_timeout_discards_the_connection(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(query_timeout=0.1)
    await manager.raw_sql("SELECT 1", node="primary")
    fake.primary.hang()
    with pytest.raises(QueryTimeout):
        await manager.raw_sql("SELECT 1", node="primary")
    fake.primary.unhang()
    await manager.raw_sql("SELECT 1", node="primary")
    assert pool(manager)["connections_closed"] >= 1
    assert pool(manager)["errors"] == 1


async def test_cancelled_callers_leak_nothing(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(max_size=2, acquire_timeout=5.0)
    fake.primary.latency = 0.02
    tasks = [asyncio.create_task(manager.raw_sql("SELECT 1", node="primary")) for _ in range(30)]
    await asyncio.sleep(0.03)
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert any(isinstance(r, asyncio.CancelledError) for r in results)
    assert all(r == [(1,)] for r in results if not isinstance(r, BaseException))
    stats = pool(manager)
    assert stats["acquired"] == 0 and stats["waiting"] == 0 and stats["size"] <= 2
    assert len(fake.primary.sessions) <= 2


async def test_connection_returned_in_a_transaction_is_rolled_back(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    manager = make_manager(max_size=1)
    async with manager.connection() as conn:
        await fake.primary.execute(conn, "BEGIN", ())
    assert await manager.raw_sql("SELECT 1", node="primary") == [(1,)]
    assert pool(manager)["returns_bad"] == 1


async def test_lifetime_and_idle_limits(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(max_lifetime=0.05, max_idle=0.05)
    await manager.raw_sql("SELECT 1", node="primary")
    await asyncio.sleep(0.1)  # both limits elapse
    await manager.raw_sql("SELECT 1", node="primary")
    assert fake.primary.connections_opened == 2
    assert pool(manager)["connections_closed"] >= 1


def test_one_manager_across_event_loops() -> None:
    with FakeServer() as server:
        manager = Manager(server.url, **QUIET)
        assert asyncio.run(manager.raw_sql("SELECT 1")) == [(1,)]
        assert asyncio.run(manager.raw_sql("SELECT 2")) == [(2,)]
        asyncio.run(manager.close())
        assert not server.sessions


async def test_expire_on_failure_and_stats(manager: Manager, fake: FakeCluster) -> None:
    await asyncio.gather(*(manager.create(Item, name=f"i{i}") for i in range(3)))
    stats = manager.stats()
    assert stats["primary"]["queries"] >= 3
    assert stats["primary"]["latency_p50_ms"] is not None
    assert repr(manager.node("primary").pool).startswith("<ConnectionPool 'primary'")
