"""aiopeewee_dist.testing: one rolled-back transaction per test, simulated replica trouble.

On all four backends (real servers): every query of the manager, from any task, joins one
transaction on the primary that nothing outside sees and that is rolled back at the end;
the test's own transaction blocks are savepoints; a failed statement does not spoil the
test's transaction; a lagging replica sees none of the test's writes; a dead one is routed
around; a failover moves writes to the promoted replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import peewee
import pytest
from conftest import Author, Book, Topology

from aiopeewee_dist import Manager, NodeUnavailable, NoHealthyReplica
from aiopeewee_dist.testing import RolledBack, rolled_back, simulated_manager


async def outside_count(outside: Manager) -> int:
    """Authors committed on the primary, seen on a connection of another manager."""
    return int(await outside.count(Author.select(), node="primary"))


@pytest.fixture
async def sim(tables: Manager, topology: Topology) -> AsyncIterator[RolledBack]:
    manager = simulated_manager(topology.primary, read_your_writes=None, acquire_timeout=5.0)
    try:
        async with rolled_back(manager) as db:
            yield db
    finally:
        await manager.close()


async def test_everything_joins_one_rolled_back_transaction(tables: Manager, topology: Topology) -> None:
    manager = simulated_manager(topology.primary, read_your_writes=None, acquire_timeout=5.0)
    try:
        async with rolled_back(manager):
            ada = await manager.create(Author, name="ada")
            await manager.create(Book, author=ada, title="notes")
            # Reads go to the (simulated) replicas and still see the uncommitted rows.
            assert (await manager.get(Author, name="ada")).id == ada.id
            assert manager.stats()["router"].get("reads:replica-1", 0) >= 1
            with pytest.raises(peewee.IntegrityError):
                await manager.create(Author, name="ada")  # fails alone: the test goes on
            async with manager.transaction():  # a savepoint
                await manager.create(Author, name="bob")
                with pytest.raises(peewee.IntegrityError):
                    async with manager.transaction():
                        await manager.create(Author, name="cy")
                        await manager.create(Author, name="bob")
            async with manager.transaction(isolation="SERIALIZABLE"):  # accepted, as in the app
                await manager.create(Author, name="dee")
            names = [a.name for a in await manager.execute(Author.select().order_by(Author.name))]
            assert names == ["ada", "bob", "dee"]
            assert await outside_count(tables) == 0  # nothing committed
        assert await outside_count(tables) == 0  # rolled back
    finally:
        await manager.close()


async def test_tasks_of_the_test_share_the_transaction(sim: RolledBack, tables: Manager) -> None:
    manager = sim.manager

    async def add(i: int) -> int:
        return int((await manager.create(Author, name=f"a{i}")).id)

    ids = await asyncio.gather(*(asyncio.create_task(add(i)) for i in range(8)))
    counts = await asyncio.gather(*(manager.count(Author.select()) for _ in range(8)))
    assert len(set(ids)) == 8 and counts == [8] * 8
    async with manager.iterate(Author.select().order_by(Author.id), chunk_size=3) as rows:
        streamed = [row.id async for row in rows]
    assert streamed == sorted(ids)
    assert await outside_count(tables) == 0


async def test_a_lagging_replica_sees_none_of_the_tests_writes(sim: RolledBack, topology: Topology) -> None:
    manager = sim.manager
    await manager.create(Author, name="ada")
    sim.lag("replica-1", 30.0)
    assert await manager.execute(Author.select(), node="replica-1") == []
    assert len(await manager.execute(Author.select(), node="replica-2")) == 1
    assert manager._router.eligible_replicas() == manager.replicas  # no max_lag: still takes reads
    manager._router.max_lag = 5.0
    assert [n.name for n in manager._router.eligible_replicas()] == ["replica-2"]
    sim.catch_up("replica-1")
    assert len(await manager.execute(Author.select(), node="replica-1")) == 1
    assert len(manager._router.eligible_replicas()) == 2


async def test_a_dead_replica_is_routed_around(sim: RolledBack) -> None:
    manager = sim.manager
    await manager.create(Author, name="ada")
    sim.down("replica-1", detected=False)  # not noticed yet: reads landing there are retried
    for _ in range(4):
        assert await manager.count(Author.select()) == 1
    assert manager.stats()["router"]["retries"] >= 1
    with pytest.raises(NodeUnavailable):
        await manager.execute(Author.select(), node="replica-1")
    sim.down("replica-2")  # ejected: no reads go there
    manager._router.fallback = "raise"
    manager._router.replicas[0].health.up = False
    with pytest.raises(NoHealthyReplica):
        await manager.execute(Author.select())
    sim.up("replica-1")
    sim.up("replica-2")
    assert await manager.count(Author.select()) == 1


async def test_fail_over_moves_writes_to_the_promoted_replica(sim: RolledBack, tables: Manager) -> None:
    manager = sim.manager
    await manager.create(Author, name="ada")
    new = await sim.fail_over("replica-2")
    assert manager.primary_node is new and new.name == "replica-2"
    await manager.create(Author, name="bob")  # on the new primary, in the test's transaction
    assert {a.name for a in await manager.execute(Author.select())} == {"ada", "bob"}
    assert await outside_count(tables) == 0


async def test_down_primary_refuses_writes(sim: RolledBack) -> None:
    sim.down("primary")
    with pytest.raises(NodeUnavailable):
        await sim.manager.create(Author, name="ada")
    sim.up("primary")
    await sim.manager.create(Author, name="ada")
