"""What the HA-engine scenarios share: reaching the Patroni and Galera topologies of
``tests/topology`` (``make ha-up``), managers on them, and the write-outage measure."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import cluster
import pytest
from conftest import REQUIRE_CLUSTER, Topology
from topology import Galera, Patroni

from aiopeewee_dist import Manager, PatroniProvider
from chaos.scenario import SCALE
from chaos.workload import ChaosRow, Ledger, Load

#: Patroni's ttl (the smallest it accepts): a leader lost is replaced within about this.
TTL = 20.0
#: Outage bounds the issue sets: Patroni leader loss ttl + 2 s; Galera writer loss 2 s after
#: the survivors re-formed the cluster.
PATRONI_OUTAGE_BOUND = TTL + 2.0
GALERA_RESUME_BOUND = 2.0

HA_HEALTH: dict[str, Any] = {
    "health_check_interval": 0.2,
    "health_check_timeout": 1.0,
    "eject_after": 2,
    "readmit_after": 2,
    "connect_timeout": 1.0,
    "acquire_timeout": 3.0,
    "read_your_writes": None,
}


def _require(name: str, healthy: bool) -> None:
    if healthy:
        return
    message = f"the {name} topology is not running or not healthy (make ha-up)"
    if REQUIRE_CLUSTER:
        pytest.fail(message)
    pytest.skip(message)


def patroni_topology() -> Patroni:
    patroni = Patroni()
    _require("Patroni", patroni.healthy())
    return patroni


def galera_topology() -> Galera:
    galera = Galera()
    _require("Galera", galera.healthy())
    return galera


def patroni_provider(patroni: Patroni, database: str = "chaos") -> PatroniProvider:
    return PatroniProvider(
        patroni.rest_urls,
        user=cluster.APP_USER,
        password=cluster.APP_PASSWORD,
        database=database,
        timeout=0.5,
    )


async def patroni_manager(patroni: Patroni, **options: Any) -> Manager:
    return await Manager.from_provider(
        patroni_provider(patroni), refresh_interval=0.25, **{**HA_HEALTH, **options}
    )


def as_topology(backend: str, urls: list[str]) -> Topology:
    """A conftest Topology over these URLs (for the chaos invariants' server-side checks)."""
    return Topology(backend, urls[0], urls[1:])


async def fresh_table(manager: Manager) -> None:
    """An empty chaos_row created through ``manager``, present on every replica before the load."""
    await manager.drop_tables([ChaosRow])
    await manager.create_tables([ChaosRow])
    for node in manager.replicas:

        async def present(name: str = node.name) -> bool:
            try:
                await manager.count(ChaosRow.select(), node=name)
            except Exception:
                return False
            return True

        await cluster.until(present, 10, f"chaos_row on {node.name}")


def write_outage(load: Load, since: float) -> float:
    """The longest time after ``since`` with no write acknowledged (the write outage, seconds)."""
    acked = sorted(o.at for o in load.outcomes if o.kind == "write" and o.ok)
    before = [t for t in acked if t <= since]
    after = [t for t in acked if t > since]
    points = [before[-1] if before else since, *after]
    return max((b - a for a, b in itertools.pairwise(points)), default=time.monotonic() - points[0])


def writes_resumed(load: Load, after: float) -> bool:
    """Whether a write of the load was acknowledged after ``after`` (monotonic)."""
    return any(o.kind == "write" and o.ok and o.at > after for o in load.outcomes)


async def wait_for(predicate: Any, timeout: float, what: str) -> float:
    """:func:`cluster.until`, returning the seconds it took."""
    started = time.monotonic()
    await cluster.until(predicate, timeout, what, interval=0.05)
    return time.monotonic() - started


async def in_thread(func: Any, *args: Any) -> Any:
    return await asyncio.to_thread(func, *args)


#: A read must find every row acknowledged this long before it started.
FRESHNESS = 3.0


@asynccontextmanager
async def steady_load(manager: Manager, restore: Callable[[], None]) -> AsyncIterator[Load]:
    """The chaos workload on a fresh table, steady for a while before the scenario's fault;
    afterwards the load stops, the manager closes and ``restore()`` (in a thread) heals the
    topology, whatever the scenario left."""
    load = Load(manager, Ledger(), max_lag=FRESHNESS)
    try:
        await fresh_table(manager)
        load.start()
        await asyncio.sleep(SCALE.steady)
        yield load
    finally:
        await load.stop()
        await manager.close()
        await in_thread(restore)
