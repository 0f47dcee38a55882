"""Ten times more tasks than connections.

With a patient ``acquire_timeout`` every operation completes and no pool ever holds more than
``max_size`` connections (as the pool and as the server count them). With an impatient one the
surplus fails fast with ``PoolTimeout`` (an ``OperationalError``), and the pool is intact afterwards.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import peewee
from conftest import sleep_sql

from aiopeewee_dist import Manager, PoolTimeout
from chaos.invariants import chaos_topology, check_invariants, server_sessions
from chaos.scenario import fresh_table
from chaos.workload import Ledger

MAX_SIZE = 4
TASKS = 10 * MAX_SIZE
OPS_PER_TASK = 15


async def test_pool_exhaustion(backend: str, tmp_path: Path) -> None:
    topology = chaos_topology(backend, tmp_path)
    await fresh_table(topology)
    manager = topology.manager(max_size=MAX_SIZE, acquire_timeout=60.0)
    ledger = Ledger()
    latencies: list[float] = []
    peak = {"pool_size": 0, "waiting": 0, "server_sessions": 0}
    done = asyncio.Event()

    async def worker(n: int) -> None:
        for i in range(OPS_PER_TASK):
            started = time.monotonic()
            if (n + i) % 3 == 0:
                await ledger.insert(manager)
            elif (n + i) % 3 == 1:
                await ledger.transfer(manager)
            else:
                await manager.raw_sql(sleep_sql(topology.kind, 0.005))
            latencies.append(time.monotonic() - started)

    async def watch() -> None:
        urls = [topology.primary, *topology.replicas]
        while not done.is_set():
            for name, s in manager.stats().items():
                if name != "router":
                    peak["pool_size"] = max(peak["pool_size"], s["size"])
                    peak["waiting"] = max(peak["waiting"], s["waiting"])
            if topology.kind != "sqlite":
                for url in urls:
                    peak["server_sessions"] = max(
                        peak["server_sessions"], len(await server_sessions(topology, url))
                    )
            await asyncio.sleep(0.01)

    try:
        watcher = asyncio.create_task(watch())
        await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(TASKS))), 120)
        done.set()
        await watcher
        impatient = await _impatient_phase(
            topology.manager(max_size=MAX_SIZE, acquire_timeout=0.1), topology.kind
        )
        await check_invariants(
            "pool exhaustion",
            manager,
            topology,
            ledger=ledger,
            tasks=TASKS,
            max_size=MAX_SIZE,
            ops=len(latencies),
            p50_ms=round(statistics.median(latencies) * 1000, 1),
            p99_ms=round(statistics.quantiles(latencies, n=100)[98] * 1000, 1),
            **{f"peak_{k}": v for k, v in peak.items()},
            **impatient,
        )
    finally:
        done.set()
        await manager.close()
    assert len(latencies) == TASKS * OPS_PER_TASK
    assert peak["pool_size"] <= MAX_SIZE and peak["server_sessions"] <= MAX_SIZE, peak
    assert peak["waiting"] >= TASKS // 2, f"the pool was never exhausted: {peak}"


async def _impatient_phase(manager: Manager, kind: str) -> dict[str, float]:
    """40 tasks hold a connection 0.3 s each through a pool of 4 with acquire_timeout=0.1 s."""

    async def hold() -> float:
        started = time.monotonic()
        try:
            await manager.raw_sql(sleep_sql(kind, 0.3))
        except PoolTimeout:
            return time.monotonic() - started
        return -1.0

    try:
        waits = await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(TASKS))), 60)
        stats = manager.stats()["primary"]
        # The pool is intact: its connections came back and it serves again.
        assert stats["acquired"] == 0 and stats["waiting"] == 0, stats
        await manager.raw_sql("SELECT 1")
    finally:
        await manager.close()
    timeouts = [w for w in waits if w >= 0]
    assert len(timeouts) >= TASKS - 2 * MAX_SIZE, f"only {len(timeouts)} PoolTimeouts"
    assert issubclass(PoolTimeout, peewee.OperationalError)
    assert max(timeouts) < 0.1 + 1.0, f"a PoolTimeout took {max(timeouts):.2f}s"
    return {"impatient_pool_timeouts": len(timeouts), "slowest_pool_timeout_s": round(max(timeouts), 2)}
