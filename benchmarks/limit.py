"""Issue 16's ratios: every PostgreSQL contender against the limit, in one process, interleaved.

``python -m benchmarks.limit ROUNDS SECONDS [CONTENDER,...]`` prints one JSON object. The limit is raw asyncpg
with one held connection per task (``asyncpg_held``); each library is also compared with its own
raw driver used per operation (a pool checkout per statement). On a shared 2-core machine the
absolute numbers move from second to second, so each round runs every contender in turn (order
rotated per round) in this one process, ratios are taken within a round, and the report shows
the median ratio over rounds.

Two measures per cell: operations per wall-clock second, and this process's CPU time per
operation (``time.process_time``). When other processes compete for the cores, the first
mostly measures the scheduler; the second is what the client itself spends, the part a library
can change, and stays comparable. Ratios of the second are ``limit CPU / contender CPU``, so
that for both, 1.0 is the limit and smaller is slower.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import random
import statistics
import sys
import time
from typing import Any

from .common import operation

LIMIT = "asyncpg_held"
#: contender -> (module, the same raw driver used per operation)
CONTENDERS: dict[str, tuple[str, str | None]] = {
    "asyncpg_held": ("asyncpg_held", None),
    "asyncpg": ("asyncpg_raw", None),
    "psycopg": ("psycopg_raw", None),
    "aiopg": ("aiopg_raw", None),
    "aiopd_asyncpg": ("aiopd_asyncpg", "asyncpg"),
    "aiopd": ("aiopd", "psycopg"),
    "aiopd_aiopg": ("aiopd_aiopg", "aiopg"),
}
WORKLOADS = ("get", "create", "update", "txn3", "select100")
CONCURRENCY = (1, 16)
WARMUP = 0.1


Round = dict[tuple[str, str, int], dict[str, float]]


async def measure(contender: Any, workload: str, concurrency: int, seconds: float) -> dict[str, float]:
    """ops/s and CPU µs per op of ``concurrency`` tasks doing ``workload`` for ``seconds``."""
    op = operation(contender, workload)
    state = {"counting": False, "stop": False, "ops": 0}

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        n = seed * 10_000_000 + int(time.time() * 1000) % 1_000_000 * 100
        while not state["stop"]:
            n += 1
            await op(rng, n)
            if state["counting"]:
                state["ops"] += 1

    tasks = [asyncio.create_task(worker(i + 1)) for i in range(concurrency)]
    try:
        await asyncio.sleep(WARMUP)
        state["counting"] = True
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        while not state["ops"]:  # noqa: ASYNC110 (a bound on a busy machine, not a wait for an event)
            await asyncio.sleep(0.01)
        state["counting"] = False
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        state["stop"] = True
        await asyncio.gather(*tasks)
    finally:
        state["stop"] = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"ops_per_s": state["ops"] / wall, "cpu_us": cpu / state["ops"] * 1e6}


async def one_round(order: list[str], seconds: float) -> Round:
    found: Round = {}
    for name in order:
        module = importlib.import_module(f"benchmarks.contenders.{CONTENDERS[name][0]}")
        contender = module.Contender()
        await contender.open()
        try:
            # Every connection opened before anything is counted: SCRAM authentication costs
            # milliseconds of client CPU per connection.
            await measure(contender, "get", max(CONCURRENCY), 0.3)
            for workload in WORKLOADS:
                for concurrency in CONCURRENCY:
                    found[(name, workload, concurrency)] = await measure(
                        contender, workload, concurrency, seconds
                    )
        finally:
            await contender.close()
    return found


def _ratio(rounds: list[Round], key: tuple[str, str, int], other: tuple[str, str, int], what: str) -> float:
    if what == "ops_per_s":
        return statistics.median(r[key][what] / r[other][what] for r in rounds)
    return statistics.median(r[other][what] / r[key][what] for r in rounds)  # less CPU is better


def summarise(rounds: list[Round], names: list[str]) -> list[dict[str, Any]]:
    cells = []
    for name in names:
        raw = CONTENDERS[name][1]
        raw = raw if raw in names else None
        for workload in WORKLOADS:
            for concurrency in CONCURRENCY:
                key = (name, workload, concurrency)
                limit = (LIMIT, workload, concurrency)
                cell: dict[str, Any] = {"contender": name, "workload": workload, "concurrency": concurrency}
                cell["raw"] = raw
                for what in ("ops_per_s", "cpu_us"):
                    cell[what] = statistics.median(r[key][what] for r in rounds)
                    cell[f"{what}_to_limit"] = _ratio(rounds, key, limit, what)
                    raw_key = (str(raw), workload, concurrency)
                    cell[f"{what}_to_raw"] = _ratio(rounds, key, raw_key, what) if raw else None
                cells.append(cell)
    return cells


async def main(rounds: int, seconds: float, only: list[str] | None = None) -> dict[str, Any]:
    names = [n for n in CONTENDERS if not only or n in only or n == LIMIT]
    results: list[Round] = []
    for i in range(rounds):
        shift = i % len(names)
        results.append(await one_round(names[shift:] + names[:shift], seconds))
    return {"rounds": rounds, "seconds": seconds, "limit": LIMIT, "cells": summarise(results, names)}


if __name__ == "__main__":
    only = sys.argv[3].split(",") if len(sys.argv) > 3 else None
    out = asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), only))
    print(json.dumps(out))
