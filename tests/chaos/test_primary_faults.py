"""The primary restarted, and the primary lost for good with a standby promoted, under load.

During the outage writes fail fast, with an error of our hierarchy that is also a
``peewee.OperationalError``; reads keep being served by the replicas. Afterwards writes recover
with no manual step, and every acknowledged write is there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import cluster
import peewee
import pytest
from cluster import run_cluster, until

from aiopeewee_dist import AioPeeweeDistError, Manager
from chaos.invariants import chaos_topology
from chaos.scenario import PRIMARY_NODE, REPLICA_NODE, SCALE, under_load, verdict
from chaos.workload import ChaosRow, Load

pytestmark = pytest.mark.cluster

CONNECT_TIMEOUT = 1.0  # chaos_manager's; a failing write must not take much longer


async def first_write_after(manager: Manager, bound: float) -> float:
    """Seconds until a write through the manager succeeds again (fails the test past ``bound``)."""
    started = time.monotonic()
    while True:
        try:
            await manager.create(ChaosRow, id=-time.monotonic_ns(), amount=0)
            return time.monotonic() - started
        except peewee.OperationalError:
            if time.monotonic() - started > bound:
                raise
            await asyncio.sleep(0.05)


def check_outage_failures(load: Load) -> None:
    """Only writes failed, all clearly and fast, all inside the outage window."""
    failed = [o for o in load.outcomes if not o.ok]
    for o in failed:
        assert o.error is not None and issubclass(o.error, AioPeeweeDistError), o
        assert issubclass(o.error, peewee.OperationalError), o
        assert o.took < CONNECT_TIMEOUT + 2.0, f"a failing operation took {o.took:.2f}s"
    assert not any(o.kind == "read" for o in failed), [o for o in failed if o.kind == "read"][:5]
    assert not load.failures_outside_outage(grace=0.5), load.failures_outside_outage(grace=0.5)[:5]


async def test_primary_restarted(cluster_backend: str, tmp_path: Path) -> None:
    topology = chaos_topology(cluster_backend, tmp_path)
    async with under_load(topology) as (manager, load):
        with load.outage():
            await run_cluster("down", PRIMARY_NODE[topology.kind])
            await asyncio.sleep(SCALE.fault)
            await run_cluster("up", PRIMARY_NODE[topology.kind])
        recovery = await first_write_after(manager, bound=10)
        figures = await verdict("primary restarted", manager, topology, load, recovery_s=round(recovery, 2))
    check_outage_failures(load)
    assert figures["failed_writes"] > 0, "the outage was not observed"


async def test_failover_with_promotion(cluster_backend: str, tmp_path: Path) -> None:
    """The primary killed, a replica promoted: the manager switches by itself.

    Replication is made synchronous first (PostgreSQL ``synchronous_standby_names``, MariaDB
    semi-synchronous replication): with asynchronous replication a failover may drop commits
    the old primary acknowledged, which no client library can prevent.
    """
    if cluster_backend == "aiopg":
        pytest.skip("psycopg covers PostgreSQL promotion; aiopg shares the manager's code path")
    topology = chaos_topology(cluster_backend, tmp_path)
    async with under_load(topology) as (manager, load):  # its reset turns synchronous off again
        await make_replication_synchronous(topology.kind)
        await topology.wait_replicated()  # what was acknowledged before is on the replica too
        with load.outage():
            await run_cluster("down", PRIMARY_NODE[topology.kind])
            await asyncio.sleep(SCALE.fault)
            await run_cluster("promote", REPLICA_NODE[topology.kind])
            await until(lambda: manager.primary_node.name == "replica-1", 15, "automatic switch to replica-1")
        recovery = await first_write_after(manager, bound=10)
        figures = await verdict(
            "failover with promotion", manager, topology, load, recovery_s=round(recovery, 2)
        )
    check_outage_failures(load)
    assert figures["failed_writes"] > 0, "the outage was not observed"


async def make_replication_synchronous(kind: str) -> None:
    """Commits wait until the replica to be promoted has them (bounded wait until it does)."""
    if kind == "pg":
        su = f"postgresql://postgres@127.0.0.1:{cluster.PORTS['pg-primary']}/postgres"
        await cluster.pg_rows(su, "ALTER SYSTEM SET synchronous_standby_names = '\"pg-replica-1\"'")
        await cluster.pg_rows(su, "SELECT pg_reload_conf()")
        sync_sql = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
        await until(lambda: cluster.pg_scalar(su, sync_sql), 10, "pg-replica-1 synchronous")
        return
    primary = f"mysql://root@127.0.0.1:{cluster.PORTS['my-primary']}/mysql"
    replica = f"mysql://root@127.0.0.1:{cluster.PORTS['my-replica']}/mysql"
    # A timeout far beyond the scenario: the primary must never fall back to asynchronous.
    await cluster.my_rows(primary, "SET GLOBAL rpl_semi_sync_master_timeout = 600000")
    await cluster.my_rows(primary, "SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'")
    await cluster.my_rows(primary, "SET GLOBAL rpl_semi_sync_master_enabled = ON")
    await cluster.my_rows(replica, "SET GLOBAL rpl_semi_sync_slave_enabled = ON")
    await cluster.my_rows(replica, "STOP SLAVE IO_THREAD")
    await cluster.my_rows(replica, "START SLAVE IO_THREAD")
    clients_sql = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
    clients_sql += " WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'"

    async def semi_sync() -> bool:
        return int(await cluster.my_scalar(primary, clients_sql) or 0) == 1

    await until(semi_sync, 10, "my-replica semi-synchronous")
