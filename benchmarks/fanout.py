"""Fan-out over 3 shards (``ShardedManager``, databases shard1..3) vs each single shard.

``python -m benchmarks.fanout [REPEATS]`` prints JSON: median seconds of one scanning
select on each shard alone and on all three at once, and fan-out / slowest single shard; the
same materialised (``execute``) and streamed (``iterate``).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import peewee
import psycopg

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


async def streamed(source: Any) -> list[Any]:
    async with source as rows:
        return [row async for row in rows]


async def raw_concurrent(sql: str, params: Any, conns: list[Any]) -> list[Any]:
    """The three shards' query on raw psycopg connections at once: this machine's floor."""

    async def one(conn: Any) -> list[Any]:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()

    results = await asyncio.gather(*(one(c) for c in conns))
    return [row for rows in results for row in rows]


async def main(repeats: int) -> dict[str, Any]:
    sharded = ShardedManager(
        {shard: settings.url(database=shard) for shard in settings.SHARDS},
        max_size=settings.POOL_MAX_SIZE,
        health_check_interval=None,
    )
    sharded.register(ShardItem, key="id")
    singles: dict[str, float] = {}
    singles_streamed: dict[str, float] = {}
    async with sharded:
        for shard in settings.SHARDS:
            manager = sharded.shard(shard)
            singles[shard], _ = await timed(lambda m=manager: m.execute(query()), repeats)
            singles_streamed[shard], _ = await timed(lambda m=manager: streamed(m.iterate(query())), repeats)
        fan, rows = await timed(lambda: sharded.execute(query(), shards="all"), repeats)
        fan_streamed, _ = await timed(lambda: streamed(sharded.iterate(query(), shards="all")), repeats)
        sql, params = peewee.PostgresqlDatabase(None).get_sql_context().sql(query()).query()
        conns = [await psycopg.AsyncConnection.connect(settings.url(database=s)) for s in settings.SHARDS]
        try:
            floor, _ = await timed(lambda: raw_concurrent(sql, params, conns), repeats)
        finally:
            for conn in conns:
                await conn.close()
    slowest = max(singles.values())
    slowest_streamed = max(singles_streamed.values())
    return {
        "repeats": repeats,
        "single_shard_s": singles,
        "fanout_s": fan,
        "fanout_rows": rows,
        "slowest_single_s": slowest,
        "fanout_over_slowest": fan / slowest,
        "fanout_over_sum": fan / sum(singles.values()),
        "single_shard_streamed_s": singles_streamed,
        "fanout_streamed_s": fan_streamed,
        "fanout_streamed_over_slowest": fan_streamed / slowest_streamed,
        "raw_concurrent_s": floor,
        "raw_concurrent_over_slowest": floor / slowest,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 15))))
