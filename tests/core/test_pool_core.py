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


@pytest.fixture
def wait_for_as_in_312(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.12's wait_for: asyncio.timeout underneath. A result that arrives in the same loop
    step as the waiter's timeout or cancellation is dropped (3.11's returns it instead)."""

    async def wait_for(fut: asyncio.Future[object], timeout: float) -> object:
        async with asyncio.timeout(timeout):
            return await fut

    monkeypatch.setattr(asyncio, "wait_for", wait_for)


@pytest.mark.usefixtures("wait_for_as_in_312")
async def test_a_connection_handed_over_as_its_waiter_times_out_goes_to_the_next(
    make_manager: MakeManager,
) -> None:
    # The release and the waiter's timeout fall due in one loop step (the loop was blocked past
    # both), the release first.
    manager = make_manager(max_size=1, acquire_timeout=0.2)
    node = manager.node("primary")
    held = await node.pool.acquire()
    loop = asyncio.get_running_loop()
    start = loop.time()
    waiter = asyncio.create_task(node.pool.acquire())
    await asyncio.sleep(0)  # the waiter's timeout is due at start + 0.2 or a little later
    loop.call_at(start + 0.1, time.sleep, 0.2)  # blocks the loop past both
    loop.call_at(start + 0.15, node.pool.release, held)
    with pytest.raises(PoolTimeout):
        await waiter
    again = await asyncio.wait_for(node.pool.acquire(), 1.0)  # not lost with the waiter
    node.pool.release(again)
    assert (pool(manager)["acquired"], pool(manager)["size"]) == (0, 1)


@pytest.mark.usefixtures("wait_for_as_in_312")
async def test_room_handed_to_a_waiter_that_gives_up_goes_to_the_next(make_manager: MakeManager) -> None:
    manager = make_manager(max_size=1, acquire_timeout=5.0)
    node = manager.node("primary")
    held = await node.pool.acquire()
    first, second = (asyncio.create_task(node.pool.acquire()) for _ in range(2))
    await asyncio.sleep(0.01)
    node.pool.release(held, broken=True)  # room to open one: handed to the first waiter
    first.cancel()  # which gives up before it could use it
    pc = await asyncio.wait_for(second, 1.0)
    node.pool.release(pc)
    assert first.cancelled()
