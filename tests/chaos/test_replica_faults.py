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
from conftest import reads_on

from chaos.invariants import chaos_topology
from chaos.scenario import REPLICA_NODE, SCALE, under_load, verdict

pytestmark = pytest.mark.cluster


async def test_replica_killed_and_restarted(cluster_backend: str, tmp_path: Path) -> None:
    topology = chaos_topology(cluster_backend, tmp_path)
    async with under_load(topology) as (manager, load):
        with load.outage():
            await run_cluster("down", REPLICA_NODE[topology.kind])
            await until(lambda: not manager.stats()["replica-1"]["up"], 10, "replica-1 ejected")
            await asyncio.sleep(SCALE.fault)
            await run_cluster("up", REPLICA_NODE[topology.kind])
            await until(lambda: manager.stats()["replica-1"]["up"], 20, "replica-1 readmitted")
        reads_before = reads_on(manager, "replica-1")
        await until(lambda: reads_on(manager, "replica-1") > reads_before, 10, "reads on replica-1 again")
        figures = await verdict("replica killed+restarted", manager, topology, load)
    assert figures["failed_reads"] == 0 and figures["failed_writes"] == 0, figures


async def test_replica_replay_paused_then_resumed(cluster_backend: str, tmp_path: Path) -> None:
    topology = chaos_topology(cluster_backend, tmp_path)
    max_lag = 1.0
    async with under_load(topology, max_lag=max_lag) as (manager, load):

        def lag() -> float:
            return float(manager.stats()["replica-1"]["lag"])

        with load.outage():
            await run_cluster("pause", REPLICA_NODE[topology.kind])
            await until(lambda: lag() > max_lag, 10, "paused replica-1 older than max_lag")
            await asyncio.sleep(SCALE.fault)
            await run_cluster("resume", REPLICA_NODE[topology.kind])
            await until(lambda: lag() < max_lag, 20, "replica-1 fresh again after resume")
        figures = await verdict("replica replay paused", manager, topology, load)
    assert figures["failed_reads"] == 0 and figures["failed_writes"] == 0, figures
