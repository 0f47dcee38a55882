"""``Manager.from_provider`` and ``TopologyFollower`` on fake servers, with a scripted provider:
each snapshot change becomes the manager's own runtime change, a provider error changes nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import peewee
import pytest

from aiopeewee_dist import (
    ConfigurationError,
    Manager,
    Member,
    NodeUnavailable,
    NotPrimary,
    TopologyProvider,
    TopologySnapshot,
)
from aiopeewee_dist._providers import TopologyFollower, named_url
from aiopeewee_dist.testing import FakeCluster, FakeServer
from aiopeewee_dist.testing._session import FakeReadOnly
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


async def test_a_demoted_primary_refusing_a_write_is_not_primary_and_retries_reach_the_new_one(
    managed: Manager, provider: ScriptedProvider, cluster: FakeCluster
) -> None:
    # A switchover the follower has not seen yet: the old leader is up, read-only.
    old, new = cluster.primary, cluster.replicas[0]
    cluster.failover(new, keep_old=True)
    with pytest.raises(NodeUnavailable, match="connection lost"):  # it restarted as a replica
        await managed.create(Item, name="lost")
    with pytest.raises(NotPrimary, match="'pg1' refused a write: it is read-only, no longer the") as caught:
        await managed.create(Item, name="refused")
    assert isinstance(caught.value, NodeUnavailable) and isinstance(caught.value, peewee.OperationalError)
    assert "nothing was committed" in str(caught.value)

    attempts = 0

    @managed.transaction(retries=5)
    async def write() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:  # the provider catches up while the first attempt fails
            provider.snapshot = snapshot(
                member("pg2", new), member("pg1", old), member("pg3", cluster.replicas[0])
            )
            asyncio.get_running_loop().create_task(follower(managed).refresh())
        await managed.create(Item, name="retried")

    await write()
    assert attempts >= 2 and managed.primary_node.name == "pg2"
    assert await managed.count(Item.select().where(Item.name == "retried"), node=managed.primary_node) == 1
    assert await managed.count(Item.select().where(Item.name == "refused"), node=managed.primary_node) == 0


async def test_a_read_only_transaction_on_the_primary_keeps_the_servers_refusal(
    managed: Manager, cluster: FakeCluster
) -> None:
    # There the session refuses writes by request: the primary is still the primary.
    refusal = FakeReadOnly("cannot execute SELECT in a read-only transaction")
    cluster.primary.fail_next(refusal, match="SELECT 42")
    with pytest.raises(peewee.OperationalError, match="read-only transaction") as caught:
        async with managed.transaction(node=managed.primary_node, read_only=True):
            await managed.raw_sql("SELECT 42")
    assert not isinstance(caught.value, NodeUnavailable)
    cluster.primary.fail_next(refusal, match="SELECT 42")
    with pytest.raises(NotPrimary):
        await managed.raw_sql("SELECT 42", node=managed.primary_node)
