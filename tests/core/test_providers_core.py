"""``Manager.from_provider`` and ``TopologyFollower`` on fake servers, with a scripted provider:
each snapshot change becomes the manager's own runtime change, a provider error changes nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from aiopeewee_dist import (
    ConfigurationError,
    Manager,
    Member,
    NodeUnavailable,
    TopologyProvider,
    TopologySnapshot,
)
from aiopeewee_dist._providers import TopologyFollower, named_url
from aiopeewee_dist.testing import FakeCluster, FakeServer
from core.fakes import QUIET, Item


class ScriptedProvider:
    """A provider whose answer the test sets: ``snapshot``, or ``error`` raised by ``fetch``."""

    def __init__(self, snapshot: TopologySnapshot) -> None:
        self.snapshot = snapshot
        self.error: Exception | None = None
        self.fetches = 0
        self.closed = False

    async def fetch(self) -> TopologySnapshot:
        self.fetches += 1
        if self.error is not None:
            raise self.error
        return self.snapshot

    async def close(self) -> None:
        self.closed = True


def member(name: str, server: FakeServer) -> Member:
    return Member(name, server.url, "streaming")


def snapshot(primary: Member | None, *replicas: Member) -> TopologySnapshot:
    return TopologySnapshot(primary, tuple(replicas))


async def until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not callable(predicate) or not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with FakeCluster(replicas=2) as cluster:
        yield cluster


@pytest.fixture
def provider(cluster: FakeCluster) -> ScriptedProvider:
    p, (r1, r2) = cluster.primary, cluster.replicas
    return ScriptedProvider(snapshot(member("pg1", p), member("pg2", r1), member("pg3", r2)))


@pytest.fixture
async def managed(provider: ScriptedProvider) -> AsyncIterator[Manager]:
    manager = await Manager.from_provider(provider, refresh_interval=60.0, **QUIET)
    await manager.create_tables([Item])
    await manager.count(Item.select())  # the first read starts the follower: it refreshes at once
    await until(lambda: follower(manager).refreshes == 1, 5.0, "the follower's first refresh")
    yield manager
    await manager.close()


def names(manager: Manager) -> tuple[str, list[str]]:
    return manager.primary_node.name, sorted(node.name for node in manager.replicas)


def follower(manager: Manager) -> TopologyFollower:
    assert manager.follower is not None
    return manager.follower


async def test_manager_is_built_from_the_first_snapshot(provider: ScriptedProvider) -> None:
    assert isinstance(provider, TopologyProvider)
    manager = await Manager.from_provider(provider, refresh_interval=60.0, **QUIET)
    try:
        assert names(manager) == ("pg1", ["pg2", "pg3"])
        assert manager.auto_failover is False  # the provider, not the health monitor, names the primary
        assert provider.fetches == 1
        assert not follower(manager).running  # started on first use, like the health monitor
    finally:
        await manager.close()
    assert provider.closed


async def test_no_leader_at_start_is_node_unavailable(provider: ScriptedProvider) -> None:
    provider.snapshot = snapshot(None)
    with pytest.raises(NodeUnavailable, match="names no primary"):
        await Manager.from_provider(provider, **QUIET)


@pytest.mark.parametrize("interval", [0.0, 61.0])
async def test_refresh_interval_is_bounded(provider: ScriptedProvider, interval: float) -> None:
    with pytest.raises(ConfigurationError, match="refresh_interval"):
        await Manager.from_provider(provider, refresh_interval=interval, **QUIET)
    assert provider.fetches == 0  # rejected before asking the provider


async def test_leader_change_to_a_replica_replaces_the_primary(
    managed: Manager, provider: ScriptedProvider, cluster: FakeCluster
) -> None:
    old, new = cluster.primary, cluster.replicas[0]
    cluster.failover(new, keep_old=True)
    provider.snapshot = snapshot(member("pg2", new), member("pg1", old), member("pg3", cluster.replicas[0]))
    assert await follower(managed).refresh() is True
    assert names(managed) == ("pg2", ["pg1", "pg3"])
    start = len(new.statements)
    await managed.create(Item, name="after-failover")
    assert any("INSERT" in s.sql for s in list(new.statements)[start:])
    assert follower(managed).changes == 1
    assert await follower(managed).refresh() is False  # same snapshot again: nothing to do


async def test_leader_change_to_an_unknown_member_connects_to_it(
    managed: Manager, provider: ScriptedProvider, cluster: FakeCluster
) -> None:
    with cluster.primary.replica(f"{cluster.name}-new") as newcomer:
        cluster.primary.down()
        newcomer.promote()
        r1, r2 = cluster.replicas
        provider.snapshot = snapshot(member("pg4", newcomer), member("pg2", r1), member("pg3", r2))
        assert await follower(managed).refresh() is True
        assert names(managed)[0] == "pg4"
        assert "pg1" not in names(managed)[1]
        await managed.create(Item, name="on-newcomer")
        assert await managed.count(Item.select(), node="pg4") == 1
        await managed.close()


async def test_replicas_leave_and_join(
    managed: Manager, provider: ScriptedProvider, cluster: FakeCluster
) -> None:
    p, (r1, r2) = cluster.primary, cluster.replicas
    provider.snapshot = snapshot(member("pg1", p), member("pg2", r1))
    assert await follower(managed).refresh() is True
    assert names(managed) == ("pg1", ["pg2"])
    # The leader listed among the replicas too is not read from twice.
    provider.snapshot = snapshot(member("pg1", p), member("pg1", p), member("pg2", r1), member("pg3", r2))
    assert await follower(managed).refresh() is True
    assert names(managed) == ("pg1", ["pg2", "pg3"])
    assert await managed.count(Item.select(), node="pg3") == 0  # the node joined works
    assert follower(managed).refreshes == 3


async def test_provider_error_or_no_leader_changes_nothing(
    managed: Manager, provider: ScriptedProvider
) -> None:
    before = names(managed)
    provider.error = ConnectionError("etcd unreachable")
    assert await follower(managed).refresh() is False
    assert names(managed) == before
    assert follower(managed).last_error == "ConnectionError: etcd unreachable"
    assert follower(managed).refreshes == 1  # only the first, successful one
    provider.error = None
    provider.snapshot = snapshot(None)  # an election is running
    assert await follower(managed).refresh() is False
    assert names(managed) == before
    assert follower(managed).last_error is None  # the provider answered again


async def test_follower_runs_in_the_background_and_stops_cleanly(
    provider: ScriptedProvider, cluster: FakeCluster
) -> None:
    manager = await Manager.from_provider(provider, refresh_interval=0.05, **QUIET)
    async with manager:
        assert follower(manager).running
        provider.snapshot = snapshot(provider.snapshot.primary, provider.snapshot.replicas[0])
        await until(lambda: names(manager) == ("pg1", ["pg2"]), 5.0, "pg3 to leave the rotation")
        provider.error = RuntimeError("flaky")
        await until(lambda: follower(manager).last_error is not None, 5.0, "a failed refresh")
        assert follower(manager).running  # an error does not stop the follower
    assert not follower(manager).running
    assert provider.closed
    fetches = provider.fetches
    await asyncio.sleep(0.15)
    assert provider.fetches == fetches  # nothing asks the provider after close


def test_named_url_sets_the_node_name() -> None:
    assert named_url("fake://x", "pg1") == "fake://x?name=pg1"
    assert named_url("postgresql://u@h/db?name=old&sslmode=require", "pg2") == (
        "postgresql://u@h/db?sslmode=require&name=pg2"
    )
