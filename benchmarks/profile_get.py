"""Where the time goes on "get by primary key" (or --workload) at concurrency 1 (cProfile).

``python -m benchmarks.profile_get [CONTENDER ...] [--n N] [--top K]``: runs N sequential
gets per contender (default: aiopd, peewee_async, psycopg) and prints µs per get and the
top functions by own time (tottime).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import io
import pstats
import random
import time

from .common import operation
from .contenders_registry import BY_NAME


async def run(name: str, n: int, profiler: cProfile.Profile | None, workload: str = "get") -> float:
    contender = importlib.import_module(f"benchmarks.contenders.{BY_NAME[name].module}").Contender()
    await contender.open()
    rng = random.Random(1)
    op = operation(contender, workload)
    try:
        for i in range(200):
            await op(rng, i)
        if profiler:
            profiler.enable()
        start = time.perf_counter()
        for i in range(n):
            await op(rng, 1000 + i)
        elapsed = time.perf_counter() - start
        if profiler:
            profiler.disable()
    finally:
        await contender.close()
    return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("contenders", nargs="*", default=["aiopd", "peewee_async", "psycopg"])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--workload", default="get")
    parser.add_argument("--sort", default="tottime", help="tottime or cumulative")
    parser.add_argument("--filter", default="", help="only functions whose path matches (regex)")
    args = parser.parse_args()
    for name in args.contenders:
        plain = asyncio.run(run(name, args.n, None, args.workload))
        profiler = cProfile.Profile()
        profiled = asyncio.run(run(name, args.n, profiler, args.workload))
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats(args.sort)
        stats.print_stats(*([args.filter] if args.filter else []), args.top)
        print(
            f"=== {name} {args.workload}: {plain:.1f} µs/op unprofiled, {profiled:.1f} µs/op under cProfile"
        )
        print(out.getvalue())


if __name__ == "__main__":
    main()
