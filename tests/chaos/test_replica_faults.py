"""A replica killed and restarted, and a replica whose replay is paused, under load.

Neither fault may fail a single operation: reads that hit the dead replica are retried on another
node, the monitor ejects it and readmits it once it is back; a paused replica leaves the rotation
once it is older than ``max_lag`` and no read returns older data.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cluster import run_cluster, until

from chaos.invariants import chaos_topology, check_invariants
from chaos.scenario import REPLICA_NODE, SCALE, chaos_manager, fresh_table, node_up, restore
from chaos.workload import Ledger, Load

pytestmark = pytest.mark.cluster


async def test_replica_killed_and_restarted(cluster_backend: str, tmp_path: Path) -> None:
    topology = chaos_topology(cluster_backend, tmp_path)
    await fresh_table(topology)
    manager = chaos_manager(topology)
    ledger = Ledger()
    load = Load(manager, ledger)
    try:
        await manager.connect()
        load.start()
        await asyncio.sleep(SCALE.steady)
        with load.outage():
            await run_cluster("down", REPLICA_NODE[topology.kind])
            await until(lambda: not manager.stats()["replica-1"]["up"], 10, "replica-1 ejected")
            await asyncio.sleep(SCALE.fault)
            await run_cluster("up", REPLICA_NODE[topology.kind])
            await until(lambda: node_up(manager, "replica-1"), 20, "replica-1 readmitted")
        reads_before = manager.stats()["router"].get("reads:replica-1", 0)
        await asyncio.sleep(SCALE.steady)
        await until(
            lambda: manager.stats()["router"].get("reads:replica-1", 0) > reads_before,
            10,
            "reads served by replica-1 again",
        )
        await load.stop()
        figures = await check_invariants(
            "replica killed+restarted", manager, topology, ledger=ledger, load=load
        )
    finally:
        await load.stop()
        await manager.close()
        await restore(topology.kind)
    assert figures["failed_reads"] == 0 and figures["failed_writes"] == 0, figures


async def test_replica_replay_paused_then_resumed(cluster_backend: str, tmp_path: Path) -> None:
    topology = chaos_topology(cluster_backend, tmp_path)
    await fresh_table(topology)
    max_lag = 1.0
    manager = chaos_manager(topology, max_lag=max_lag)
    ledger = Ledger()
    load = Load(manager, ledger, max_lag=max_lag)

    def lag() -> float:
        return float(manager.stats()["replica-1"]["lag"])

    try:
        await manager.connect()
        load.start()
        await asyncio.sleep(SCALE.steady)
        with load.outage():
            await run_cluster("pause", REPLICA_NODE[topology.kind])
            await until(lambda: lag() > max_lag, 10, "paused replica-1 older than max_lag")
            await asyncio.sleep(SCALE.fault)
            await run_cluster("resume", REPLICA_NODE[topology.kind])
            await until(lambda: lag() < max_lag, 20, "replica-1 fresh again after resume")
        await asyncio.sleep(SCALE.steady)
        await load.stop()
        figures = await check_invariants("replica replay paused", manager, topology, ledger=ledger, load=load)
    finally:
        await load.stop()
        await manager.close()
        await restore(topology.kind)
    assert figures["failed_reads"] == 0 and figures["failed_writes"] == 0, figures
