"""Replicas joining the read rotation while the manager runs prove first that they have caught up.

A replica added at runtime, or kept across a change of primary, takes reads only once a health
check has seen it hold every commit acknowledged before it joined; and a check that could not
read the primary's position dates no replica.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aiopeewee_dist import NodeUnavailable
from aiopeewee_dist.testing import FakeCluster
from core.fakes import Item, MakeManager


async def test_a_replica_added_behind_takes_reads_only_once_it_has_caught_up(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    manager = make_manager(health_check_interval=30.0)
    await manager.create_tables([Item])
    third = fake.primary.replica("third")
    third.pause()
    await manager.create(Item, name="before it joined")  # on the primary, not on third
    node = await manager.add_replica(third.url, name="third")
    assert not node.healthy  # nothing proven yet
    await manager.check_connections()
    assert not node.healthy  # up, but behind what was acknowledged before it joined
    for _ in range(20):
        await manager.count(Item.select())
    assert manager.stats()["router"].get("reads:third", 0) == 0
    third.resume()
    await manager.check_connections()
    assert node.healthy
    for _ in range(20):
        await manager.count(Item.select())
    assert manager.stats()["router"]["reads:third"] > 0
    third.close()


async def test_replicas_kept_across_a_new_primary_prove_they_follow_it(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    manager = make_manager(health_check_interval=30.0)
    await manager.create_tables([Item])
    await manager.create(Item, name="a")
    await manager.check_connections()
    follower, slow = manager.node("replica-2"), fake.replicas[1]
    assert follower.healthy
    slow.pause()  # it will follow the new primary, but slowly
    fake.failover(fake.replicas[0])
    await manager.replace_primary("replica-1")
    # At once, before any check: its freshness was measured against the old primary's stream.
    assert not follower.healthy
    assert await manager.count(Item.select()) == 1  # read on the new primary
    assert manager.stats()["router"].get("reads:replica-2", 0) == 0
    await manager.create(Item, name="b")
    await manager.check_connections()
    assert not follower.healthy
    assert await manager.count(Item.select()) == 2
    slow.resume()
    await manager.check_connections()
    assert follower.healthy


async def test_a_busy_primary_check_dates_no_replica(make_manager: MakeManager, fake: FakeCluster) -> None:
    # Its last known position, taken as current, would make a replica that stopped there
    # look fresh as of now.
    manager = make_manager(health_check_interval=30.0, health_check_timeout=0.05, max_size=1, max_lag=60.0)
    await manager.create_tables([Item])
    await manager.check_connections()
    fresh_before = manager.node("replica-1").health.fresh_as_of
    fake.replicas[0].pause()
    async with manager.transaction():  # holds the primary's only connection
        await manager.create(Item, name="a")
        await asyncio.sleep(0.01)
        await manager.check_connections()
    assert manager.node("replica-1").health.fresh_as_of == fresh_before


async def test_while_the_primary_is_down_replicas_are_dated_against_the_most_advanced_one(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    # A dead primary commits nothing more: a replica holding all it shipped stays fresh and
    # keeps taking reads, while max_lag keeps them off a replica it left behind.
    manager = make_manager(health_check_interval=0.05, max_lag=0.3, eject_after=1)
    await manager.create_tables([Item])
    ahead, behind = manager.node("replica-1"), manager.node("replica-2")
    await manager.check_connections()
    assert behind.health.fresh_as_of is not None
    fake.replicas[1].pause()
    await manager.create(Item, name="a")  # replayed by replica-1 only
    await manager.check_connections()
    fake.primary.down()
    deadline = time.monotonic() + 10.0
    while behind.health.fresh_as_of > time.monotonic() - 0.5:
        assert time.monotonic() < deadline, "replica-2 never became stale"
        await asyncio.sleep(0.05)
        await manager.check_connections()
    assert not manager.primary_node.health.up
    assert ahead.health.fresh_as_of is not None and ahead.health.fresh_as_of > time.monotonic() - 0.3
    before = manager.stats()["router"].get("reads:replica-2", 0)
    for _ in range(20):
        assert await manager.count(Item.select()) == 1
    assert manager.stats()["router"].get("reads:replica-2", 0) == before


async def test_while_the_primary_is_down_a_silent_replica_leaves_the_others_undated(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    # The silent one may hold commits the others lack (it may be the one a failover promotes):
    # dated against those that answered, a replica behind it would look fresh without them.
    manager = make_manager(health_check_interval=30.0, max_lag=60.0, eject_after=1)
    await manager.create_tables([Item])
    behind = manager.node("replica-2")
    fake.replicas[1].pause()
    await manager.create(Item, name="a")  # replayed by replica-1 only
    await manager.check_connections()
    dated = behind.health.fresh_as_of
    fake.replicas[0].down()
    fake.primary.down()
    for _ in range(3):
        await manager.check_connections()
    assert not manager.primary_node.health.up
    assert behind.health.fresh_as_of == dated


async def test_while_the_primary_is_down_commits_received_but_not_replayed_count(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    # A synchronous standby acknowledges commits it has flushed and not yet replayed: a replica
    # that replayed more than the standby did still lacks them.
    manager = make_manager(health_check_interval=0.1, max_lag=0.3, eject_after=1)
    await manager.create_tables([Item])
    standby, other = fake.replicas
    await manager.create(Item, name="a")
    await manager.check_connections()  # both dated, as of a
    standby.pause()  # replayed a
    await manager.create(Item, name="b")
    other.pause()  # replayed a and b
    await manager.create(Item, name="c")  # received by both, replayed by neither
    await manager.check_connections()
    fake.primary.down()
    down_at = time.monotonic()
    for _ in range(3):
        await manager.check_connections()
    assert not manager.primary_node.health.up
    assert all(node.health.fresh_as_of < down_at for node in manager.replicas)
    await asyncio.sleep(0.35)  # every replica is now older than max_lag
    with pytest.raises(NodeUnavailable):
        await manager.count(Item.select())
    standby.resume()
    await manager.check_connections()
    assert manager.node("replica-1").health.fresh_as_of > down_at
    for _ in range(20):
        assert await manager.count(Item.select()) == 3
    assert manager.stats()["router"].get("reads:replica-2", 0) == 0


async def test_an_old_primary_back_before_it_was_rewound_is_not_taken_as_caught_up(
    make_manager: MakeManager, fake: FakeCluster
) -> None:
    # Restarted as a standby before pg_rewind, a failed-over primary replays its own WAL past the
    # fork: its position is ahead of the new primary's, yet it lacks every commit since. What
    # tells it apart is that its stream never delivered what it replayed.
    manager = make_manager(health_check_interval=30.0, max_lag=60.0)
    await manager.create_tables([Item])
    successor = fake.replicas[0]
    successor.pause()
    for name in ("lost-1", "lost-2", "lost-3"):
        await manager.create(Item, name=name)  # not on the successor
    old = fake.failover(successor, keep_old=True)
    await manager.replace_primary("replica-1")
    await manager.create(Item, name="after the failover")
    node = await manager.add_replica(old.url, name="old-primary")
    for _ in range(3):
        await manager.check_connections()
    assert not node.healthy
    for _ in range(10):
        assert "after the failover" in {item.name for item in await manager.execute(Item.select())}
