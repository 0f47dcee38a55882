"""Replica intelligence against real servers and real faults.

Faults are injected with ``scripts/cluster.sh`` (a replica killed with ``pg_ctl stop -m
immediate`` / SIGKILL, replay delay, promotion) and always undone in ``finally``.
Waits are bounded polls on observable state, never sleeps that hope for replication.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import cluster
import peewee
import pytest
from cluster import run_cluster, until
from conftest import Topology

from aiopeewee_dist import Manager, NoHealthyReplica

pytestmark = pytest.mark.cluster

REPLICA_NODE = {"pg": "pg-replica-1", "mysql": "my-replica"}
FAST = {"health_check_interval": 0.1, "health_check_timeout": 1.0, "eject_after": 2, "readmit_after": 2}


class Ledger(peewee.Model):
    value = peewee.IntegerField(index=True)

    class Meta:
        table_name = "t_ledger"


async def whoami(manager: Manager, topology: Topology, **kw: Any) -> tuple[int, bool]:
    (port, is_replica), *_ = await manager.raw_sql(topology.whoami_sql, **kw)
    return int(port), bool(int(is_replica))


@pytest.fixture
async def ledger(cluster_topology: Topology) -> Any:
    setup = cluster_topology.manager()
    try:
        await setup.drop_tables([Ledger])
        await setup.create_tables([Ledger])
        await cluster_topology.wait_replicated()
    finally:
        await setup.close()
    return Ledger


async def test_killed_replica_loses_no_read_and_comes_back(cluster_topology: Topology, ledger: Any) -> None:
    victim = REPLICA_NODE[cluster_topology.kind]
    manager = cluster_topology.manager(**FAST, max_size=4)
    node = manager.node("replica-1")
    failures: list[BaseException] = []
    done = 0
    stop = asyncio.Event()

    async def reader() -> None:
        nonlocal done
        while not stop.is_set():
            try:
                await manager.raw_sql("SELECT 1")
                done += 1
            except Exception as exc:  # every failed read is a test failure, collected
                failures.append(exc)

    readers = [asyncio.create_task(reader()) for _ in range(8)]
    try:
        await until(
            lambda: manager.stats()["router"].get("reads:replica-1", 0) > 20, 10, "reads on replica-1"
        )
        await run_cluster("down", victim)
        await until(lambda: not node.healthy, 10, "replica-1 to be ejected")
        during_outage = done
        await until(lambda: done > during_outage + 50, 10, "reads to go on during the outage")
        await run_cluster("up", victim)
        await until(lambda: node.healthy, 20, "replica-1 to be readmitted")
        served = manager.stats()["router"].get("reads:replica-1", 0)
        await until(
            lambda: manager.stats()["router"].get("reads:replica-1", 0) > served + 20,
            10,
            "reads on replica-1 again",
        )
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await manager.close()
        await run_cluster("up", victim)
    retries = manager.stats()["router"].get("retries", 0)
    print(f"\n[kill {victim}] reads={done} failed={len(failures)} retried={retries}")
    assert failures == []
    assert retries >= 1


async def test_lagging_replica_leaves_rotation_and_reads_meet_max_lag(
    cluster_topology: Topology, ledger: Any
) -> None:
    """Every read returns all writes acknowledged more than max_lag before it started."""
    max_lag = 1.0
    victim = REPLICA_NODE[cluster_topology.kind]
    manager = cluster_topology.manager(**FAST, max_lag=max_lag)
    writer_manager = cluster_topology.manager()
    acked: list[tuple[float, int]] = []  # (monotonic time of the acknowledgement, value)
    observed: list[tuple[float, int, int]] = []  # (read start, max value seen, port)
    stop = asyncio.Event()
    select = Ledger.select(peewee.fn.COALESCE(peewee.fn.MAX(Ledger.value), 0)).tuples()

    async def writer() -> None:
        value = 0
        while not stop.is_set():
            value += 1
            await writer_manager.create(Ledger, value=value)
            acked.append((time.monotonic(), value))
            await asyncio.sleep(0.02)

    async def reader() -> None:
        while not stop.is_set():
            started = time.monotonic()
            (seen,) = (await manager.execute(select))[0]
            port, _ = await whoami(manager, cluster_topology)
            observed.append((started, int(seen), port))

    await run_cluster("delay", victim, "2")
    tasks = [asyncio.create_task(writer()), *(asyncio.create_task(reader()) for _ in range(4))]
    try:
        replica = manager.node("replica-1")
        await until(lambda: len(acked) > 10, 10, "writes to start")
        await until(
            lambda: replica not in manager._router.eligible_replicas(), 10, "replica-1 to leave rotation"
        )
        await until(lambda: len(acked) > 100, 10, "more writes while it lags")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await manager.close()
        await writer_manager.close()
        await run_cluster("delay", victim, "0")
    violations = []
    for started, seen, port in observed:
        required = max((value for at, value in acked if at <= started - max_lag), default=0)
        if seen < required:
            violations.append((round(started, 3), seen, required, port))
    on_victim = sum(1 for *_, port in observed if port == cluster.PORTS[victim])
    print(
        f"\n[lag {victim}] reads={len(observed)} writes={len(acked)} "
        f"on_lagging={on_victim} late={len(violations)}"
    )
    assert len(observed) > 50
    assert violations == [], f"reads older than max_lag: {violations[:5]}"


async def test_read_your_writes_sticky_with_delayed_replicas(cluster_topology: Topology, ledger: Any) -> None:
    replicas = ["pg-replica-1", "pg-replica-2"] if cluster_topology.kind == "pg" else ["my-replica"]
    with pytest.warns(DeprecationWarning, match="sticky"):
        manager = cluster_topology.manager(read_your_writes="sticky", sticky_seconds=2.0)
    for name in replicas:
        await run_cluster("delay", name, "1")
    try:
        with manager.consistency():
            await manager.create(Ledger, value=4242)
            found = await manager.get_or_none(Ledger, Ledger.value == 4242)
            assert found is not None and found.value == 4242
            assert (await whoami(manager, cluster_topology))[1] is False  # served by the primary
        with manager.consistency():  # a context that wrote nothing reads from a lagging replica
            assert (await whoami(manager, cluster_topology))[1] is True
            assert await manager.get_or_none(Ledger, Ledger.value == 4242) is None
    finally:
        await manager.close()
        for name in replicas:
            await run_cluster("delay", name, "0")


async def test_read_your_writes_causal_uses_replica_once_caught_up(
    cluster_topology: Topology, ledger: Any
) -> None:
    replicas = ["pg-replica-1", "pg-replica-2"] if cluster_topology.kind == "pg" else ["my-replica"]
    manager = cluster_topology.manager(read_your_writes="causal", health_check_interval=0.05)
    for name in replicas:
        await run_cluster("delay", name, "1")
    try:
        with manager.consistency() as session:
            await manager.connect()
            await manager.create(Ledger, value=777)
            assert session.position is not None
            found = await manager.get_or_none(Ledger, Ledger.value == 777)
            assert found is not None
            assert (await whoami(manager, cluster_topology))[1] is False  # not replayed yet: primary
            assert manager.stats()["router"].get("causal_primary_reads", 0) >= 1
            token = session.token()
        await cluster_topology.wait_replicated(timeout=15)
        needed = session.position

        def caught_up() -> bool:
            return any(n.health.position and n.health.position.covers(needed) for n in manager.replicas)

        await until(caught_up, 10, "the monitor to see a replica replay the write")
        with manager.consistency(token):  # the token carries the position to a new context
            _, is_replica = await whoami(manager, cluster_topology)
            assert is_replica is True
            assert await manager.get_or_none(Ledger, Ledger.value == 777) is not None
    finally:
        await manager.close()
        for name in replicas:
            await run_cluster("delay", name, "0")


async def test_causal_wait_waits_for_a_replica(cluster_topology: Topology, ledger: Any) -> None:
    manager = cluster_topology.manager(read_your_writes="causal", causal_wait=5.0, health_check_interval=0.05)
    try:
        await manager.connect()
        with manager.consistency():
            await manager.create(Ledger, value=31337)
            _, is_replica = await whoami(manager, cluster_topology)
            assert is_replica is True  # waited (bounded) for a replica to replay the write
            assert await manager.get_or_none(Ledger, Ledger.value == 31337) is not None
    finally:
        await manager.close()


async def test_fallback_raise_and_primary(cluster_topology: Topology) -> None:
    primary_port = cluster.PORTS["pg-primary" if cluster_topology.kind == "pg" else "my-primary"]
    dead = cluster_topology.primary.replace(f":{primary_port}/", ":1/", 1)  # nothing listens there
    # The short connect timeout for the dead replica only: connect() verifies the primary, which
    # a loaded machine may not connect to within 1 s.
    dead += "&" if "?" in dead else "?"
    dead += "connect_timeout=1.0"
    for fallback in ("raise", "primary"):
        manager = Manager(
            cluster_topology.primary,
            [dead],
            fallback=fallback,
            read_your_writes=None,
            **{**FAST, "eject_after": 1},
        )
        try:
            await manager.connect()
            await until(
                lambda m=manager: not m.node("replica-1").healthy, 10, "the dead replica to be ejected"
            )
            if fallback == "raise":
                with pytest.raises(NoHealthyReplica, match="replica-1: down"):
                    await manager.raw_sql("SELECT 1")
            else:
                assert (await whoami(manager, cluster_topology))[1] is False
                assert manager.stats()["router"]["replica_fallbacks"] >= 1
        finally:
            await manager.close()


async def test_runtime_topology_add_remove_weight(cluster_topology: Topology) -> None:
    if cluster_topology.kind != "pg":
        pytest.skip("needs two replicas")
    manager = Manager(
        cluster_topology.primary,
        cluster_topology.replicas[:1],
        strategy="weighted",
        health_check_interval=None,
        read_your_writes=None,
    )
    try:
        added = await manager.add_replica(cluster_topology.replicas[1], name="late")
        ports = {(await whoami(manager, cluster_topology))[0] for _ in range(40)}
        assert ports == {cluster.PORTS["pg-replica-1"], cluster.PORTS["pg-replica-2"]}
        manager.set_weight("late", 0)
        ports = {(await whoami(manager, cluster_topology))[0] for _ in range(20)}
        assert ports == {cluster.PORTS["pg-replica-1"]}
        # Removal drains: a read in flight on the replica finishes, then its pool closes.
        slow = asyncio.create_task(manager.raw_sql("SELECT pg_sleep(0.3), 1", node="late"))
        await until(lambda: added.busy == 1, 5, "the slow read to start")
        await manager.remove_replica("late")
        assert (await slow)[0][1] == 1
        assert added.closed and added.busy == 0
        assert added not in manager.replicas
    finally:
        await manager.close()


async def test_stats_have_latency_percentiles_and_router_counters(cluster_topology: Topology) -> None:
    manager = cluster_topology.manager()
    try:
        for _ in range(10):
            await manager.raw_sql("SELECT 1")
        stats = manager.stats()
        replica = stats["replica-1"]
        assert replica["queries"] >= 1 and replica["latency_p50_ms"] is not None
        assert replica["latency_p50_ms"] <= replica["latency_p99_ms"]
        assert stats["router"]["reads"] == 10
        assert sum(v for k, v in stats["router"].items() if k.startswith("reads:")) == 10
    finally:
        await manager.close()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiopeewee_dist", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_status_cli_table_json_and_primary_down() -> None:
    if not cluster.cluster_available("pg"):
        pytest.skip("pg cluster not running")
    env = {"DATABASE_URL": cluster.PG_PRIMARY, "DATABASE_REPLICA_URLS": ",".join(cluster.PG_REPLICAS)}
    ok = run_cli(env=env)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].split()[:4] == ["node", "role", "up", "lag"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["primary", "primary", "yes"],
        ["replica-1", "replica", "yes"],
        ["replica-2", "replica", "yes"],
    ]
    as_json = run_cli("--json", env=env)
    assert as_json.returncode == 0 and '"replica-2"' in as_json.stdout
    down = run_cli(
        "--primary",
        cluster.PG_PRIMARY.replace(f":{cluster.PORTS['pg-primary']}/", ":1/"),
        "--timeout",
        "1",
        env=env,
    )
    assert down.returncode == 1
    assert "NO" in down.stdout.splitlines()[1]
    assert cluster.APP_PASSWORD not in down.stdout + down.stderr


async def test_failover_drill_promotes_and_keeps_every_acknowledged_write(cluster_topology: Topology) -> None:
    """Primary killed, a standby promoted by hand: the manager follows with no restart."""
    if cluster_topology.backend != "psycopg":
        pytest.skip("one PostgreSQL drill is enough; MariaDB and aiopg share the same code path")
    setup = cluster_topology.manager()
    await setup.drop_tables([Ledger])
    await setup.create_tables([Ledger])
    await setup.close()
    await cluster_topology.wait_replicated()
    manager = cluster_topology.manager(**FAST, connect_timeout=1.0)
    acknowledged: list[int] = []
    outage_errors: list[BaseException] = []
    try:
        await manager.connect()
        for value in range(1, 51):
            await manager.create(Ledger, value=value)
            acknowledged.append(value)
        await cluster_topology.wait_replicated()
        await run_cluster("down", "pg-primary")
        try:
            await manager.create(Ledger, value=-1)
        except Exception as exc:  # the outage: the write fails fast and clearly
            outage_errors.append(exc)
        cli = run_cli("--primary", cluster.PG_PRIMARY, "--timeout", "1")
        assert cli.returncode == 1
        await run_cluster("promote", "pg-replica-1")
        await until(lambda: manager.primary_node.name == "replica-1", 15, "automatic promotion of replica-1")
        for value in range(51, 101):
            await manager.create(Ledger, value=value)
            acknowledged.append(value)
        with manager.primary():
            values = [row.value for row in await manager.execute(Ledger.select().order_by(Ledger.value))]
    finally:
        await manager.close()
        await run_cluster("reset")
    print(
        f"\n[failover] acknowledged={len(acknowledged)} present={len(values)} "
        f"outage_error={outage_errors!r:.120}"
    )
    assert len(outage_errors) == 1 and isinstance(outage_errors[0], peewee.OperationalError)
    assert values == acknowledged
