"""Topology providers on the real HA topologies (``make ha-up``), without faults: who is the
primary, who gets reads, an unreachable member, a desynced Galera node, causal reads, bad input."""

from __future__ import annotations

import time

import cluster
import pytest
from chaos.ha import galera_topology, patroni_provider, patroni_topology
from conftest import reads_on

from aiopeewee_dist import ConfigurationError, GaleraProvider, Manager, PatroniProvider

pytestmark = pytest.mark.cluster


async def test_patroni_leader_is_the_primary_and_replicas_take_reads() -> None:
    patroni = patroni_topology()
    manager = await Manager.from_provider(patroni_provider(patroni, "aiopd"), read_your_writes=None)
    async with manager:
        assert manager.primary_node.name == patroni.leader()
        assert {n.name for n in manager.replicas} == {m.name for m in patroni.members} - {patroni.leader()}
        assert await manager.raw_sql("SELECT pg_is_in_recovery()", node=manager.primary_node.name) == [
            (False,)
        ]
        for _ in range(4):
            assert await manager.raw_sql("SELECT pg_is_in_recovery()") == [(True,)]
        assert all(reads_on(manager, n.name) for n in manager.replicas)
        assert manager.follower is not None and manager.follower.running


async def test_patroni_provider_skips_an_unreachable_member() -> None:
    """One REST API down (here: nothing listens) costs one timeout at most, once."""
    patroni = patroni_topology()
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    provider = PatroniProvider(
        [dead, *patroni.rest_urls], user=cluster.APP_USER, password=cluster.APP_PASSWORD, timeout=0.5
    )
    try:
        started = time.monotonic()
        first = await provider.fetch()
        assert time.monotonic() - started < 0.5 + 1.0
        assert first.primary is not None and first.primary.name == patroni.leader()
        started = time.monotonic()
        await provider.fetch()  # starts with the member that answered last
        assert time.monotonic() - started < 0.4
    finally:
        await provider.close()


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rest_urls": []}, "rest_urls"),
        ({"rest_urls": "http://a:8008"}, "rest_urls"),
        ({"rest_urls": ["a:8008"]}, "http"),
        ({"rest_urls": ["http://a:8008"], "scheme": "mysql"}, "scheme"),
        ({"rest_urls": ["http://a:8008"], "timeout": 0}, "timeout"),
        ({"rest_urls": ["http://a:8008"], "max_lag_bytes": -1}, "max_lag_bytes"),
    ],
)
def test_patroni_provider_bad_input(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        PatroniProvider(user="app", **kwargs)  # type: ignore[arg-type]


def test_patroni_snapshot_rules() -> None:
    """From a ``/cluster`` document: the leader, replicas by state, timeline and lag."""
    provider = PatroniProvider(
        ["http://a:8008"], user="app", password="p@ss", database="db", max_lag_bytes=100
    )
    member = {"host": "10.0.0.1", "timeline": 2, "state": "streaming", "lag": 0}
    data = {
        "members": [
            {**member, "name": "a", "role": "leader", "state": "running", "port": 1},
            {**member, "name": "b", "role": "sync_standby", "port": 2},
            {**member, "name": "c", "role": "replica", "port": 3, "lag": 1000},  # too far behind
            {**member, "name": "d", "role": "replica", "port": 4, "timeline": 1},  # old timeline
            {**member, "name": "e", "role": "replica", "port": 5, "state": "starting"},
        ]
    }
    snapshot = provider.snapshot(data)
    assert snapshot.primary is not None and snapshot.primary.name == "a"
    assert snapshot.primary.url == "postgresql://app:p%40ss@10.0.0.1:1/db"
    assert [m.name for m in snapshot.replicas] == ["b"]
    stopping = {"members": [{**data["members"][0], "state": "stopping"}, data["members"][1]]}
    assert provider.snapshot(stopping).primary is None  # mid-switchover: keep the nodes as they are


async def test_galera_single_writer_and_desynced_node_leaves_rotation() -> None:
    galera = galera_topology()
    names = [n.name for n in galera.nodes]
    provider = GaleraProvider({n: galera.url(n) for n in names}, causal_reads=True)
    manager = await Manager.from_provider(provider, refresh_interval=0.1, read_your_writes=None)
    async with manager:
        assert manager.primary_node.name == names[0]
        assert sorted(n.name for n in manager.replicas) == names[1:]
        victim = names[2]
        try:
            galera.sql(victim, "SET GLOBAL wsrep_desync = ON")
            await cluster.until(lambda: victim not in {n.name for n in manager.replicas}, 10, f"{victim} out")
        finally:
            galera.sql(victim, "SET GLOBAL wsrep_desync = OFF")
        await cluster.until(lambda: victim in {n.name for n in manager.replicas}, 10, f"{victim} back")
        assert manager.primary_node.name == names[0]


async def test_galera_causal_reads_see_the_write_just_made() -> None:
    """``causal_reads=True``: a read on another node right after a write finds it (wsrep_sync_wait)."""
    galera = galera_topology()
    names = [n.name for n in galera.nodes]
    provider = GaleraProvider({n: galera.url(n) for n in names}, causal_reads=True)
    manager = await Manager.from_provider(provider, read_your_writes=None, health_check_interval=None)
    async with manager:
        await manager.raw_sql("DROP TABLE IF EXISTS t_causal")
        await manager.raw_sql("CREATE TABLE t_causal (id INT PRIMARY KEY, v INT)")
        for i in range(100):
            await manager.raw_sql("INSERT INTO t_causal VALUES (%s, %s)", (i, i))
            rows = await manager.raw_sql("SELECT v FROM t_causal WHERE id = %s", (i,))
            assert rows == [(i,)], f"read {i} was stale"
        assert all(reads_on(manager, name) > 0 for name in names[1:])
        await manager.raw_sql("DROP TABLE t_causal")


def test_galera_provider_bad_input() -> None:
    with pytest.raises(ConfigurationError, match="urls"):
        GaleraProvider([])
    with pytest.raises(ConfigurationError, match="not a MySQL"):
        GaleraProvider(["postgresql://u@h/db"])
    with pytest.raises(ConfigurationError, match="timeout"):
        GaleraProvider(["mysql://u@h/db"], timeout=100)
