"""The router on fake servers: which node each query reaches, by the documented precedence."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from aiopeewee_dist import (
    ConfigurationError,
    Manager,
    NodeUnavailable,
    NoHealthyReplica,
    ReadOnlyError,
    RoutingError,
)
from aiopeewee_dist._node import Node
from aiopeewee_dist.testing import FakeCluster, FakeServer
from core.fakes import Item, MakeManager


def ran(server: FakeServer, text: str = "core_item") -> int:
    """Statements containing ``text`` that reached ``server``."""
    return sum(text in s.sql for s in server.statements)


async def test_writes_to_primary_reads_round_robin(manager: Manager, fake: FakeCluster) -> None:
    await manager.create(Item, name="a")
    before = [ran(r) for r in fake.replicas]
    for _ in range(4):
        await manager.execute(Item.select())
    assert [ran(r) - b for r, b in zip(fake.replicas, before, strict=True)] == [2, 2]
    assert manager.stats()["router"]["writes"] >= 1


async def test_precedence_of_overrides(manager: Manager, fake: FakeCluster) -> None:
    r1, r2 = fake.replicas
    with manager.using("replica-2"):
        await manager.execute(Item.select())
        await manager.execute(Item.select(), node="replica-1")  # node= beats using()
    assert (ran(r1), ran(r2)) == (1, 1)
    with manager.primary():
        await manager.execute(Item.select())
    assert ran(fake.primary, "SELECT") >= 1
    with manager.read_only(), pytest.raises(ReadOnlyError):
        await manager.create(Item, name="nope")
    with manager.using("replica-1"), pytest.raises(RoutingError, match="replica"):
        await manager.create(Item, name="a write never reaches a replica")
    with pytest.raises(RoutingError):
        await manager.execute(Item.insert(name="x"), node="replica-1")
    with pytest.raises(RoutingError):
        await manager.execute(Item.select(), node="no-such-node")


async def test_transaction_pins_reads_to_its_node(manager: Manager, fake: FakeCluster) -> None:
    async with manager.transaction():
        await manager.execute(Item.select())
        with manager.using("replica-1"):
            await manager.execute(Item.select())
    assert ran(fake.replicas[0]) == 0
    async with manager.transaction(read_only=True):
        await manager.execute(Item.select())
        with pytest.raises(ReadOnlyError):
            await manager.create(Item, name="x")


@pytest.mark.parametrize("strategy", ["random", "weighted", "least_busy"])
async def test_strategies_use_every_replica(
    make_manager: MakeManager, fake: FakeCluster, strategy: str
) -> None:
    manager = make_manager(strategy=strategy)
    await manager.create_tables([Item])
    for _ in range(40):
        await manager.execute(Item.select())
    assert all(ran(r) > 0 for r in fake.replicas)


async def test_weights_and_a_callable_strategy(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(strategy="weighted")
    await manager.create_tables([Item])
    manager.set_weight("replica-1", 0)
    for _ in range(20):
        await manager.execute(Item.select())
    assert ran(fake.replicas[0]) == 0
    manager.set_weight("replica-2", 0)  # all zero: any replica
    await manager.execute(Item.select())

    def last(nodes: Sequence[Node]) -> Node:
        return nodes[-1]

    chosen = make_manager(strategy=last)
    await chosen.execute(Item.select())
    assert ran(fake.replicas[1]) >= 1
    with pytest.raises(ConfigurationError, match="strategy"):
        make_manager(strategy="fastest")


async def test_least_busy_avoids_a_busy_replica(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(strategy="least_busy")
    await manager.create_tables([Item])
    async with manager.connection(node="replica-1", write=False):
        for _ in range(4):
            # Another task: this one's pinned connection would capture its own reads.
            await asyncio.create_task(manager.execute(Item.select()))
    assert ran(fake.replicas[0]) == 0 and ran(fake.replicas[1]) == 4


async def test_sticky_reads_after_a_write(make_manager: MakeManager, fake: FakeCluster) -> None:
    with pytest.warns(DeprecationWarning, match="sticky"):
        manager = make_manager(read_your_writes="sticky", sticky_seconds=30)
    await manager.create_tables([Item])
    await manager.create(Item, name="a")
    await manager.get(Item, name="a")
    assert manager.stats()["router"]["sticky_hits"] >= 1
    assert ran(fake.replicas[0]) + ran(fake.replicas[1]) == 0

    async def elsewhere() -> None:  # a new context has no session: replicas
        await manager.execute(Item.select())

    await asyncio.create_task(elsewhere())


async def test_causal_reads_avoid_a_replica_that_has_not_replayed(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    manager = make_manager(read_your_writes="causal", health_check_interval=0.05)
    await manager.create_tables([Item])
    await manager.check_connections()
    fake.replicas[0].pause()
    fake.replicas[1].pause()
    await manager.create(Item, name="a")
    await manager.check_connections()
    assert await manager.get(Item, name="a")  # no replica has it: the primary answers
    assert manager.stats()["router"]["causal_primary_reads"] >= 1
    token = manager.consistency_token()
    assert token is not None
    fake.replicas[1].resume()
    await manager.check_connections()

    async def reader() -> None:
        with manager.consistency(token):
            assert await manager.get(Item, name="a")

    await asyncio.create_task(reader())
    assert ran(fake.replicas[1]) >= 1 and ran(fake.replicas[0]) == 0


async def test_max_lag_leaves_a_stale_replica_out(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(max_lag=0.2, health_check_interval=0.05, fallback="raise")
    await manager.create_tables([Item])
    await manager.check_connections()
    fake.replicas[0].pause()
    fake.replicas[1].pause()
    await manager.create(Item, name="a")
    await asyncio.sleep(0.3)  # longer than max_lag: both replicas are now too stale
    await manager.check_connections()
    with pytest.raises(NoHealthyReplica):
        await manager.execute(Item.select())
    fake.replicas[1].resume()
    await manager.check_connections()
    await manager.execute(Item.select())
    assert ran(fake.replicas[1]) == 1


async def test_fallback_to_primary_when_no_replica_is_up(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    manager = make_manager(health_check_interval=0.05, eject_after=1)
    await manager.create_tables([Item])
    for replica in fake.replicas:
        replica.down()
    await manager.check_connections()
    assert await manager.execute(Item.select()) == []
    assert manager.stats()["router"]["replica_fallbacks"] >= 1


async def test_read_retried_once_on_another_replica(make_manager: MakeManager, fake: FakeCluster) -> None:
    manager = make_manager(health_check_interval=30.0)
    await manager.create_tables([Item])
    await manager.execute(Item.select())
    fake.replicas[1].down()  # the next round-robin pick
    assert await manager.execute(Item.select()) == []
    stats = manager.stats()
    assert stats["router"]["retries"] == 1
    assert stats["replica-2"]["up"] is False  # ejected at once by the failed query


async def test_a_replica_not_ready_for_statements_is_skipped_like_an_unreachable_one(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    # A Galera node joining, or cut off in a non-primary component, refuses every statement
    # unrun (MariaDB error 1047): the read goes to another node, the node leaves the rotation.
    pymysql = pytest.importorskip("pymysql")
    manager = make_manager(health_check_interval=30.0, read_your_writes=None)
    await manager.create_tables([Item])
    await manager.create(Item, name="a")
    await manager.check_connections()

    def refuse(server: FakeServer) -> None:
        message = "WSREP has not yet prepared node for application use"
        server.fail_next(pymysql.err.OperationalError(1047, message), match="core_item")

    refuse(fake.replicas[0])
    for _ in range(2):  # one of them reaches replica-1
        assert [i.name for i in await manager.execute(Item.select())] == ["a"]
    assert not manager.node("replica-1").healthy and manager.node("replica-2").healthy
    # Asked by name, the node is not replaced: the caller learns it is unavailable.
    refuse(fake.replicas[1])
    with pytest.raises(NodeUnavailable, match="not ready for statements"):
        await manager.execute(Item.select(), node="replica-2")
