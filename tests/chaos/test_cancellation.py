"""A storm of cancellations and timeouts in the middle of queries and transactions.

Operations (inserts, 3-statement transactions, reads, slow statements) run with 50 at a time;
each is cancelled at a random moment, cut by ``asyncio.wait_for``, stopped by ``query_timeout``,
or left alone. Afterwards no connection is leaked or left in a transaction, every acknowledged
write is there, no transaction is half there, and the manager works.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from conftest import Topology, sleep_sql

from aiopeewee_dist import Manager, QueryTimeout
from chaos.invariants import chaos_topology, check_invariants
from chaos.scenario import SCALE, fresh_table
from chaos.workload import Ledger

CONCURRENCY = 50
QUERY_TIMEOUT = 0.05


def operations(manager: Manager, ledger: Ledger, kind: str) -> list[Callable[[], Awaitable[object]]]:
    async def slow_in_transaction() -> None:
        await ledger.insert(manager, then=lambda: manager.raw_sql(sleep_sql(kind, 0.01)))

    return [
        lambda: ledger.insert(manager),
        lambda: ledger.transfer(manager),
        lambda: manager.raw_sql(sleep_sql(kind, 0.01)),
        lambda: manager.raw_sql(sleep_sql(kind, 0.2)),  # beyond query_timeout
        slow_in_transaction,
    ]


async def storm(manager: Manager, ledger: Ledger, topology: Topology, total: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    ops = operations(manager, ledger, topology.kind)
    rng = random.Random(7)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        op = rng.choice(ops)
        how = rng.choice(("cancel", "wait_for", "none"))
        delay = rng.uniform(0, 0.03)
        async with gate:
            task = asyncio.ensure_future(op())
            try:
                if how == "cancel":
                    asyncio.get_running_loop().call_later(delay, task.cancel)
                    await task
                elif how == "wait_for":
                    await asyncio.wait_for(task, delay)
                else:
                    await task
                outcomes["completed"] += 1
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
            except asyncio.TimeoutError:
                outcomes["timed_out"] += 1
            except QueryTimeout:
                outcomes["query_timeout"] += 1
            except Exception as exc:  # anything else is a failure of the test below
                outcomes[f"unexpected {type(exc).__name__}: {exc}"] += 1

    await asyncio.gather(*(one(i) for i in range(total)))
    return outcomes


async def test_cancellation_storm(backend: str, tmp_path: Path) -> None:
    topology = chaos_topology(backend, tmp_path)
    await fresh_table(topology)
    manager = topology.manager(max_size=10, acquire_timeout=10.0, query_timeout=QUERY_TIMEOUT)
    ledger = Ledger()
    try:
        outcomes = await asyncio.wait_for(storm(manager, ledger, topology, SCALE.storm_ops), 300)
        opened = sum(s.get("connections_opened", 0) for n, s in manager.stats().items() if n != "router")
        await check_invariants(
            "cancellation storm", manager, topology, ledger=ledger, ops=SCALE.storm_ops,
            connections_opened=opened, **dict(outcomes),
        )  # fmt: skip
    finally:
        await manager.close()
    unexpected = {k: v for k, v in outcomes.items() if k.startswith("unexpected")}
    assert not unexpected, unexpected
    assert outcomes["cancelled"] and outcomes["timed_out"] and outcomes["query_timeout"], outcomes
