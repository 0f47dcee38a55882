"""What every fault scenario shares: its size, a fresh chaos table, and the manager settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import cluster
from conftest import Topology

from aiopeewee_dist import Manager
from chaos.workload import ChaosRow

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


async def fresh_table(topology: Topology) -> None:
    """An empty ``chaos_row`` on the primary, replicated before the scenario starts."""
    setup = topology.manager()
    try:
        await setup.drop_tables([ChaosRow])
        await setup.create_tables([ChaosRow])
    finally:
        await setup.close()
    await topology.wait_replicated()


def slow_sql(kind: str, seconds: float) -> str:
    """A statement that keeps the server busy for about ``seconds``."""
    if kind == "pg":
        return f"SELECT pg_sleep({seconds})"
    if kind == "mysql":
        return f"SELECT SLEEP({seconds})"
    rows = int(seconds * 2_000_000)  # SQLite has no sleep: count through a recursive CTE
    return (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
        f" WHERE x < {rows}) SELECT count(*) FROM c"
    )


def chaos_manager(topology: Topology, **options: Any) -> Manager:
    return topology.manager(**{**FAST_HEALTH, **options})


async def node_up(manager: Manager, name: str) -> bool:
    return bool(manager.stats()[name]["up"])


async def restore(kind: str) -> None:
    """Back to the healthy topology whatever the scenario left behind."""
    await cluster.run_cluster("reset", kind)
