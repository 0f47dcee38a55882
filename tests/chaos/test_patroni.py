"""Patroni switchover and leader loss under load, followed by PatroniProvider.

Short in ``make test`` (one switchover, one leader kill), longer phases in ``make chaos``.
What must hold: no acknowledged write lost, no stale read, reads never fail, a write outage of
at most ttl + 2 s, the new leader the manager's primary without a restart, and the old leader
back in the read rotation once it rejoined.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from conftest import reads_on
from topology import Patroni

import aiopeewee_dist
from aiopeewee_dist import AioPeeweeDistError, Manager
from chaos.ha import (
    FRESHNESS,
    PATRONI_OUTAGE_BOUND,
    as_topology,
    in_thread,
    patroni_manager,
    patroni_topology,
    steady_load,
    wait_for,
    write_outage,
    writes_resumed,
)
from chaos.invariants import check_invariants
from chaos.scenario import SCALE
from chaos.workload import Load

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


@asynccontextmanager
async def patroni_load() -> AsyncIterator[tuple[Patroni, Manager, Load]]:
    # The load counts a read stale when it misses a row acknowledged FRESHNESS seconds before
    # it started: the manager's max_lag is that promise (without it, none is made).
    patroni = patroni_topology()
    manager = await patroni_manager(patroni, max_lag=FRESHNESS)
    async with steady_load(manager, lambda: restore(patroni)) as load:
        yield patroni, manager, load


def restore(patroni: Patroni) -> None:
    """Every member running and the cluster healthy again (whatever the scenario left)."""
    for member in patroni.members:
        patroni.start_member(member.name, wait_healthy=False)
    patroni.start_member(patroni.members[0].name, wait_healthy=True)


async def back_in_rotation(manager: Manager, name: str, bound: float) -> float:
    """Seconds until node ``name`` is a healthy replica that the router sends reads to."""

    def eligible() -> bool:
        return any(n.name == name and n.healthy for n in manager.replicas)

    took = await wait_for(eligible, bound, f"{name} back as a replica")
    served = reads_on(manager, name)
    await wait_for(lambda: reads_on(manager, name) > served, 10, f"reads on {name}")
    return took


async def verdict(scenario: str, manager: Manager, patroni: Patroni, load: Load, **figures: object) -> None:
    await asyncio.sleep(SCALE.steady)
    await load.stop()
    urls = [patroni.url(m.name, "chaos") for m in patroni.members]
    result = await check_invariants(
        scenario, manager, as_topology("psycopg", urls), ledger=load.ledger, load=load, **figures
    )
    assert result["failed_reads"] == 0, result
    assert result["stale_reads"] == 0, result
    assert result["lost_writes"] == 0, result
    # A demoted leader's refusal is NotPrimary, a lost connection NodeUnavailable: no driver error.
    ours = [n for n in result["errors"] if issubclass(getattr(aiopeewee_dist, n, type), AioPeeweeDistError)]
    foreign = sorted(set(result["errors"]) - set(ours))
    assert not foreign, result["errors"]


async def test_switchover_under_load() -> None:
    async with patroni_load() as (patroni, manager, load):
        old = manager.primary_node.name
        assert old == patroni.leader()
        started = time.monotonic()
        with load.outage():
            new = await in_thread(patroni.switchover)
            await wait_for(
                lambda: manager.primary_node.name == new, PATRONI_OUTAGE_BOUND, f"{new} as primary"
            )
            switched = time.monotonic()
            await wait_for(lambda: writes_resumed(load, switched), 10, "writes on the new primary")
        outage = write_outage(load, started)
        rejoin = await back_in_rotation(manager, old, 60)
        await verdict(
            "patroni switchover", manager, patroni, load,
            write_outage_s=round(outage, 2), old_leader_back_s=round(rejoin, 2),
        )  # fmt: skip
        assert outage <= PATRONI_OUTAGE_BOUND, outage


async def test_leader_killed_under_load() -> None:
    async with patroni_load() as (patroni, manager, load):
        old = manager.primary_node.name
        started = time.monotonic()
        with load.outage():
            await in_thread(patroni.kill_member, old)
            await wait_for(
                lambda: manager.primary_node.name != old, PATRONI_OUTAGE_BOUND + 10, "a new primary"
            )
            switched = time.monotonic()
            await wait_for(lambda: writes_resumed(load, switched), 10, "writes on the new primary")
        outage = write_outage(load, started)
        await asyncio.sleep(SCALE.fault)
        restarted = time.monotonic()
        await in_thread(lambda: patroni.start_member(old, wait_healthy=False))
        rejoin = await back_in_rotation(manager, old, 90)
        await verdict(
            "patroni leader killed", manager, patroni, load,
            write_outage_s=round(outage, 2), new_primary=manager.primary_node.name,
            old_leader_back_s=round(time.monotonic() - restarted, 2), rejoin_s=round(rejoin, 2),
        )  # fmt: skip
        assert outage <= PATRONI_OUTAGE_BOUND, outage
