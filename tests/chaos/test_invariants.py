"""The chaos checks themselves catch what they look for: a stray session, a session idle in a
transaction, a lost write, a row nobody wrote, and a read older than ``max_lag``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cluster
import pytest
from cluster import run_cluster, until

from aiopeewee_dist import QueryTimeout
from chaos.invariants import chaos_topology, check_invariants
from chaos.scenario import REPLICA_NODE, fresh_table, restore
from chaos.workload import ChaosRow, Ledger, Load

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("cluster_backend", ["psycopg", "mysql"])
async def test_invariants_catch_violations(cluster_backend: str, tmp_path: Path) -> None:
    topology = chaos_topology(cluster_backend, tmp_path)
    await fresh_table(topology)
    manager = topology.manager()
    ledger = Ledger()
    await ledger.insert(manager)
    ledger.ack({10**9: 1})  # "acknowledged" but never written
    await manager.create(ChaosRow, id=10**9 + 1, amount=1)  # written but never attempted
    # A session no pool knows of, idle inside a transaction.
    stray = await _open_stray_transaction(topology.kind, topology.primary)
    try:
        with pytest.raises(AssertionError) as excinfo:
            await check_invariants("self-test", manager, topology, ledger=ledger, settle=0.5, report=False)
    finally:
        await stray()
        await manager.close()
    message = str(excinfo.value)
    for problem in ("no pool knows of", "idle in transaction", "lost writes [1000000000]", "never attempted"):
        assert problem in message, message


async def _open_stray_transaction(kind: str, url: str) -> object:
    """Open a connection outside the manager, start a transaction, return its closer."""
    if kind == "pg":
        import psycopg

        conn = await psycopg.AsyncConnection.connect(url)
        await conn.execute("SELECT 1")  # psycopg opens a transaction: idle in transaction

        async def close_pg() -> None:
            await conn.close()

        return close_pg
    import aiomysql

    kwargs = cluster._mysql_kwargs(url)
    kwargs["autocommit"] = False
    my = await aiomysql.connect(**kwargs)
    async with my.cursor() as cur:
        # A write: INNODB_TRX may leave out a transaction that has only read.
        await cur.execute("INSERT INTO chaos_row (id, amount) VALUES (-1, 0)")

    async def close_my() -> None:
        my.close()

    return close_my


async def test_stale_reads_are_counted(tmp_path: Path) -> None:
    """Without ``max_lag`` the router keeps reading a paused replica: the load must notice."""
    topology = chaos_topology("psycopg", tmp_path)
    await fresh_table(topology)
    manager = topology.manager()
    ledger = Ledger()
    load = Load(manager, ledger, max_lag=0.3, readers=4)
    try:
        await run_cluster("pause", REPLICA_NODE["pg"])
        load.start()
        await until(lambda: bool(load.stale_reads), 15, "a stale read to be counted")
    finally:
        await load.stop()
        await manager.close()
        await restore("pg")
    await asyncio.sleep(0)
    assert load.stale_reads


async def test_verification_does_not_inherit_the_scenarios_fault_settings(tmp_path: Path) -> None:
    """The ledger is read on a manager of its own: with the scenario's tiny query_timeout, the
    full-table read of a large ledger timed out (seen on a loaded machine with 0.05 s)."""
    topology = chaos_topology("sqlite", tmp_path)
    await fresh_table(topology)
    rows = {i: i % 7 for i in range(1, 60_001)}
    setup = topology.manager()
    try:
        for start in range(1, len(rows) + 1, 5000):
            batch = [{"id": i, "amount": rows[i]} for i in range(start, start + 5000)]
            await setup.insert_many(ChaosRow, batch)
    finally:
        await setup.close()
    ledger = Ledger()
    ledger.ack(rows)
    manager = topology.manager(query_timeout=0.005)
    try:
        # The fault setting really is too tight for the verification read.
        with pytest.raises(QueryTimeout):
            await manager.execute(ChaosRow.select(ChaosRow.id, ChaosRow.amount, ChaosRow.txn).tuples())
        figures = await check_invariants("verifier", manager, topology, ledger=ledger, report=False)
    finally:
        await manager.close()
    assert figures["lost_writes"] == 0 and figures["acknowledged"] == len(rows)
