"""What every fault scenario shares: its size, a fresh chaos table, and the manager settings."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import cluster
from cluster import until
from conftest import Topology

from aiopeewee_dist import Manager
from chaos.invariants import check_invariants, server_sessions
from chaos.workload import ChaosRow, Ledger, Load

# Health checks fast enough that a scenario sees ejection and readmission within seconds.
FAST_HEALTH: dict[str, Any] = {
    "health_check_interval": 0.1,
    "health_check_timeout": 1.0,
    "eject_after": 2,
    "readmit_after": 2,
    "connect_timeout": 1.0,
    "acquire_timeout": 3.0,
}

#: Script node names of a backend's primary and of the replica the scenarios hurt.
PRIMARY_NODE = {"pg": "pg-primary", "mysql": "my-primary"}
REPLICA_NODE = {"pg": "pg-replica-1", "mysql": "my-replica"}


@dataclass(frozen=True)
class Scale:
    """How long each phase runs: ``make chaos`` sets ``AIOPD_CHAOS=full``; ``make test`` runs short."""

    full: bool
    steady: float  # seconds of load before and after a fault
    fault: float  # seconds a fault lasts (at least)
    storm_ops: int  # operations in the cancellation storm

    @classmethod
    def from_env(cls) -> Scale:
        if os.environ.get("AIOPD_CHAOS") == "full":
            return cls(full=True, steady=3.0, fault=5.0, storm_ops=10_000)
        return cls(full=False, steady=0.5, fault=1.5, storm_ops=3_000)


SCALE = Scale.from_env()


@asynccontextmanager
async def under_load(
    topology: Topology, *, max_lag: float | None = None
) -> AsyncIterator[tuple[Manager, Load]]:
    """A fresh table, a manager with fast health checks, and the load running for
    ``SCALE.steady`` seconds already; afterwards the load is stopped, the manager closed and
    the topology reset whatever happened."""
    await fresh_table(topology)
    manager = chaos_manager(topology, max_lag=max_lag)
    load = Load(manager, Ledger(), max_lag=max_lag)
    try:
        await manager.connect()
        load.start()
        await asyncio.sleep(SCALE.steady)
        yield manager, load
    finally:
        await load.stop()
        await manager.close()
        await restore(topology.kind)


async def verdict(
    scenario: str, manager: Manager, topology: Topology, load: Load, **figures: Any
) -> dict[str, Any]:
    """``SCALE.steady`` more seconds of load after the fault, then the invariants."""
    await asyncio.sleep(SCALE.steady)
    await load.stop()
    return await check_invariants(scenario, manager, topology, ledger=load.ledger, load=load, **figures)


async def fresh_table(topology: Topology) -> None:
    """An empty ``chaos_row`` on the primary, replicated before the scenario starts."""
    setup = topology.manager()
    try:
        await setup.drop_tables([ChaosRow])
        await setup.create_tables([ChaosRow])
    finally:
        await setup.close()
    await topology.wait_replicated()
    if topology.kind != "sqlite":
        # The setup sessions end on the server a moment after close(): the scenario's counts of
        # server sessions must not see them.
        async def gone() -> bool:
            urls = [topology.primary, *topology.replicas]
            return not any([await server_sessions(topology, url) for url in urls])

        await until(gone, 10, "the setup sessions to end on the servers")


def chaos_manager(topology: Topology, **options: Any) -> Manager:
    return topology.manager(**{**FAST_HEALTH, **options})


async def restore(kind: str) -> None:
    """Back to the healthy topology whatever the scenario left behind."""
    await cluster.run_cluster("reset", kind)
