"""Fan-out over 3 shards (``ShardedManager``, databases shard1..3) vs each single shard.

``python -m benchmarks.fanout [REPEATS]`` prints JSON: median seconds of one scanning
select on each shard alone and on all three at once, and fan-out / slowest single shard.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import peewee

from aiopeewee_dist import ShardedManager

from . import settings


class ShardItem(peewee.Model):
    name = peewee.CharField(max_length=64)
    value = peewee.IntegerField()

    class Meta:
        table_name = settings.SHARD_TABLE


def query() -> Any:
    # A sequential scan per shard that returns ~1 % of its rows.
    return ShardItem.select().where(ShardItem.name.endswith("17"))


async def timed(run: Any, repeats: int) -> tuple[float, int]:
    await run()  # warm-up
    times = []
    rows = 0
    for _ in range(repeats):
        start = time.perf_counter()
        rows = len(await run())
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


async def main(repeats: int) -> dict[str, Any]:
    sharded = ShardedManager(
        {shard: settings.url(database=shard) for shard in settings.SHARDS},
        max_size=settings.POOL_MAX_SIZE,
        health_check_interval=None,
    )
    sharded.register(ShardItem, key="id")
    singles: dict[str, float] = {}
    async with sharded:
        for shard in settings.SHARDS:
            manager = sharded.shard(shard)
            singles[shard], _ = await timed(lambda m=manager: m.execute(query()), repeats)
        fan, rows = await timed(lambda: sharded.execute(query(), shards="all"), repeats)
    slowest = max(singles.values())
    return {
        "repeats": repeats,
        "single_shard_s": singles,
        "fanout_s": fan,
        "fanout_rows": rows,
        "slowest_single_s": slowest,
        "fanout_over_slowest": fan / slowest,
        "fanout_over_sum": fan / sum(singles.values()),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 15))))
