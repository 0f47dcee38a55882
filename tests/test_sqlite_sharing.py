"""SQLite's writer connection shared by autocommit statements (aiopeewee_dist/_sharing.py).

Statements outside a transaction queue on the one writer connection together, as tasks sharing
one raw aiosqlite connection do; a transaction (or any block that pins the connection) still
gets it alone, and one statement's cancellation or failure touches no other statement.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import peewee
import pytest

from aiopeewee_dist import Manager, PoolTimeout

# Counts to 5M inside SQLite: about a second of the worker thread, whatever the machine.
SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) SELECT count(*) FROM c"
)


class Row(peewee.Model):
    who = peewee.CharField()

    class Meta:
        table_name = "sharing_row"


@pytest.fixture
async def manager(tmp_path: Path) -> Any:
    manager = Manager(f"sqlite:///{tmp_path / 'sharing.db'}", health_check_interval=None, acquire_timeout=30)
    await manager.create_tables([Row])
    yield manager
    await manager.close()


def writer_acquires(manager: Manager) -> int:
    return int(manager.primary_node.pool.get_stats()["acquires"])


async def until_queued(manager: Manager, waiting: int) -> None:
    """Wait (bounded) until ``waiting`` callers are queued for the writer connection."""
    async with asyncio.timeout(10):
        while manager.primary_node.pool.waiting < waiting:  # noqa: ASYNC110 (a counter, no event)
            await asyncio.sleep(0.001)


async def test_concurrent_autocommit_writes_share_the_writer_connection(manager: Manager) -> None:
    before = writer_acquires(manager)

    async def writer(n: int) -> list[int]:
        return [(await manager.create(Row, who=f"w{n}")).id for _ in range(20)]

    ids = [pk for batch in await asyncio.gather(*(writer(n) for n in range(32))) for pk in batch]

    assert len(set(ids)) == 640
    assert await manager.count(Row.select()) == 640
    # One checkout per group of statements in flight, not one per statement.
    assert writer_acquires(manager) - before < 640 / 4


async def test_a_transaction_runs_alone_while_statements_share_the_connection(manager: Manager) -> None:
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        while not stop.is_set():
            await manager.create(Row, who=f"w{n}")

    writers = [asyncio.create_task(writer(n)) for n in range(16)]
    try:
        async with asyncio.timeout(30):
            while await manager.count(Row.select()) < 200:
                pass
            async with manager.transaction():
                for i in range(3):
                    await manager.create(Row, who=f"txn{i}")
                    await until_queued(manager, 1)  # the writers wait for the connection meanwhile
            # The writers go on after the commit.
            after = await manager.count(Row.select())
            while await manager.count(Row.select()) < after + 200:
                pass
    finally:
        stop.set()
        await asyncio.gather(*writers)
    rows = [row.who for row in await manager.execute(Row.select().order_by(Row.id))]
    first = rows.index("txn0")
    # No other task's statement ran on the connection inside the transaction.
    assert rows[first : first + 3] == ["txn0", "txn1", "txn2"]
    assert first >= 200 and len(rows) - first - 3 >= 200


async def test_a_cancelled_statement_does_not_interrupt_the_one_running_before_it(manager: Manager) -> None:
    node = manager.primary_node
    await node.run_sql("SELECT 1")  # an idle connection: the next statements share it at once
    slow = asyncio.create_task(node.run_sql(SLOW))
    queued = asyncio.create_task(node.run_sql("INSERT INTO sharing_row (who) VALUES ('cancelled')"))
    for _ in range(3):  # each task reaches the connection's queue in its first step
        await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued

    assert (await slow).rows == [(5000000,)]
    # The cancelled statement never ran.
    assert await manager.count(Row.select()) == 0


async def test_cancelling_the_running_statement_interrupts_it_and_spares_the_next(manager: Manager) -> None:
    node = manager.primary_node
    await node.run_sql("SELECT 1")
    slow = asyncio.create_task(node.run_sql(SLOW))
    after = asyncio.create_task(manager.create(Row, who="after"))
    for _ in range(3):
        await asyncio.sleep(0)
    slow.cancel()
    async with asyncio.timeout(10):
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert (await after).who == "after"
    assert [r.who for r in await manager.execute(Row.select())] == ["after"]


async def test_statements_waiting_behind_a_transaction_time_out_together_and_leak_nothing(
    tmp_path: Path,
) -> None:
    manager = Manager(f"sqlite:///{tmp_path / 'timeout.db'}", health_check_interval=None, acquire_timeout=0.5)
    try:
        await manager.create_tables([Row])
        async with manager.transaction():
            await manager.create(Row, who="held")
            results = await asyncio.gather(
                *(manager.create(Row, who=f"late{n}") for n in range(5)), return_exceptions=True
            )
            assert all(isinstance(r, PoolTimeout) for r in results), results
        assert manager.primary_node.pool.in_use == 0
        assert (await manager.create(Row, who="next")).who == "next"
    finally:
        await manager.close()


async def test_statements_cancelled_while_waiting_leak_nothing(manager: Manager) -> None:
    async with manager.transaction():
        await manager.create(Row, who="held")
        waiting = [asyncio.create_task(manager.create(Row, who=f"w{n}")) for n in range(5)]
        await until_queued(manager, 1)
        for task in waiting[:3]:
            task.cancel()
    async with asyncio.timeout(10):
        done = await asyncio.gather(*waiting, return_exceptions=True)
    assert [isinstance(r, asyncio.CancelledError) for r in done] == [True] * 3 + [False] * 2
    assert sorted(r.who for r in await manager.execute(Row.select())) == ["held", "w3", "w4"]
    assert manager.primary_node.pool.in_use == 0


def test_shared_statements_work_across_event_loops(tmp_path: Path) -> None:
    manager = Manager(f"sqlite:///{tmp_path / 'loops.db'}", health_check_interval=None)

    async def burst(tag: str) -> int:
        await manager.create_tables([Row])
        await asyncio.gather(*(manager.create(Row, who=tag) for _ in range(20)))
        return int(await manager.count(Row.select().where(Row.who == tag)))

    try:
        assert asyncio.run(burst("first")) == 20
        assert asyncio.run(burst("second")) == 20
    finally:
        asyncio.run(manager.close())


async def test_max_size_bounds_the_statements_in_flight_and_acquire_timeout_their_wait(
    tmp_path: Path,
) -> None:
    manager = Manager(
        f"sqlite:///{tmp_path / 'limit.db'}", health_check_interval=None, max_size=2, acquire_timeout=0.3
    )
    node = manager.primary_node
    try:
        await node.run_sql("SELECT 1")
        # Two slow statements fill max_size=2; the third waits for a turn and gives up in time.
        slow = [asyncio.create_task(node.run_sql(SLOW)) for _ in range(2)]
        for _ in range(3):
            await asyncio.sleep(0)
        with pytest.raises(PoolTimeout, match="max_size=2 statements in flight"):
            await node.run_sql("SELECT 2")
        assert [(await task).rows for task in slow] == [[(5000000,)]] * 2
        assert (await node.run_sql("SELECT 3")).rows == [(3,)]
        assert node.pool.get_stats()["timeouts"] == 1
    finally:
        await manager.close()
