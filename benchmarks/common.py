"""The workload interface every contender implements, and the timed loop that drives it."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import settings

WORKLOADS = ("get", "create", "select100", "update", "txn3", "mix90_10")


class Contender:
    """Base class: one async library talking to the ``bench_item`` table.

    ``open()`` builds a pool of at most ``settings.POOL_MAX_SIZE`` connections; the
    operations each run one logical request and return nothing.
    """

    name = "?"
    can_stream = False

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def get(self, pk: int) -> None:
        raise NotImplementedError

    async def create(self, n: int) -> None:
        raise NotImplementedError

    async def select100(self) -> None:
        raise NotImplementedError

    async def update(self, pk: int, value: int) -> None:
        raise NotImplementedError

    async def txn3(self, pk: int, n: int) -> None:
        """SELECT the row, UPDATE it, INSERT a new one, in one transaction."""
        raise NotImplementedError

    async def stream(self, limit: int) -> int:
        """Read ``limit`` rows of ``bench_stream`` with bounded memory; return the count."""
        raise NotImplementedError


def operation(contender: Contender, workload: str) -> Callable[[random.Random, int], Awaitable[None]]:
    """The coroutine function for one operation of ``workload``: f(rng, n)."""
    keys = settings.SEED_ROWS

    if workload == "get":
        return lambda rng, n: contender.get(rng.randint(1, keys))
    if workload == "create":
        return lambda rng, n: contender.create(n)
    if workload == "select100":
        return lambda rng, n: contender.select100()
    if workload == "update":
        return lambda rng, n: contender.update(rng.randint(1, keys), n)
    if workload == "txn3":
        return lambda rng, n: contender.txn3(rng.randint(1, keys), n)
    if workload == "mix90_10":

        def mix(rng: random.Random, n: int) -> Awaitable[None]:
            pk = rng.randint(1, keys)
            return contender.get(pk) if rng.random() < 0.9 else contender.update(pk, n)

        return mix
    raise ValueError(f"unknown workload {workload!r}")


async def measure(
    contender: Contender, workload: str, concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """Run ``concurrency`` tasks doing ``workload`` for ``warmup`` s, then count ops for ``seconds``."""
    op = operation(contender, workload)
    counter = [0]
    phase = {"counting": False, "stop": False}

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        n = seed * 10_000_000
        while not phase["stop"]:
            n += 1
            await op(rng, n)
            if phase["counting"]:
                counter[0] += 1

    tasks = [asyncio.create_task(worker(i + 1)) for i in range(concurrency)]
    try:
        await asyncio.sleep(warmup)
        phase["counting"] = True
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        # A cell shorter than one operation (tiny smoke cells on a busy machine) would read 0
        # ops/s: count on until one completes, within bounds.
        for _ in range(200):  # at most 20 more cell lengths
            if counter[0]:
                break
            await asyncio.sleep(seconds / 10)
        phase["counting"] = False
        elapsed = time.perf_counter() - start
        ops = counter[0]
        phase["stop"] = True
        await asyncio.gather(*tasks)
    finally:
        phase["stop"] = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"ops": ops, "seconds": elapsed, "ops_per_s": ops / elapsed}
