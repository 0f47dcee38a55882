"""Where a statement's client CPU goes, layer by layer, at concurrency 1.

``python -m benchmarks.layers [--scheme postgresql+asyncpg] [--n 3000] [--rounds 7]`` prints
JSON: this process's CPU µs per operation (median over interleaved rounds) for ``get`` and
``select100`` entered at each layer of aiopeewee_dist, from the raw driver on a held
connection up to the manager. Each step's increase is what that layer costs:

- ``raw``: the driver's own call on a held connection (asyncpg ``fetch``, psycopg ``execute``);
- ``driver``: aiopeewee_dist's driver adapter on a held connection (same SQL as the manager's);
- ``run_sql``: the node (pool checkout, counters, timing, error mapping);
- ``result``: the node plus turning the rows into what Peewee returns (model instances);
- ``manager``: ``manager.get(...)`` / ``manager.execute(select)`` (lookup, routing, read-your-writes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import peewee
import psycopg

from aiopeewee_dist import Manager
from aiopeewee_dist._query import compile_query, shape_result

from . import settings

T = f"{settings.PREFIX}_layers_item"


class Item(peewee.Model):
    name = peewee.CharField(max_length=64)
    value = peewee.IntegerField()

    class Meta:
        table_name = T


async def raw_connection(scheme: str) -> tuple[Any, Callable[[str, tuple[Any, ...]], Awaitable[Any]]]:
    url = settings.url()
    if scheme == "postgresql+asyncpg":
        conn: Any = await asyncpg.connect(url)
        return conn, lambda sql, args: conn.fetch(sql.replace("%s", "$1", 1).replace("%s", "$2", 1), *args)
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)

    async def run(sql: str, args: tuple[Any, ...]) -> Any:
        cur = await conn.execute(sql, args)
        return await cur.fetchall()

    return conn, run


async def main(scheme: str, n: int, rounds: int) -> dict[str, Any]:
    manager = Manager(settings.url(scheme=scheme), min_size=1, max_size=1, health_check_interval=None)
    await manager.connect()
    conn, raw = await raw_connection(scheme)
    try:
        await manager.drop_tables([Item])
        await manager.create_tables([Item])
        await manager.insert_many(Item, [{"name": f"n{i}", "value": i} for i in range(1000)])
        node = manager.primary_node
        held = await node.pool.acquire()
        node.pool.release(held)  # max_size=1: the node's one connection, idle between calls
        select100 = Item.select().order_by(Item.id).limit(100)
        layers = {
            "get": _layers(node, held.conn, raw, Item.select().where(Item.id == 1).limit(1), key=True),
            "select100": _layers(node, held.conn, raw, select100, key=False),
        }
        layers["get"]["manager"] = lambda i: manager.get(Item, Item.id == i % 1000 + 1)
        layers["select100"]["manager"] = lambda i: manager.execute(select100)
        cpu: dict[str, dict[str, list[float]]] = {w: {k: [] for k in ls} for w, ls in layers.items()}
        for r in range(rounds):
            for workload, steps in layers.items():
                names = list(steps)
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    run = steps[name]
                    for i in range(100):
                        await run(i)
                    start = time.process_time()
                    for i in range(n):
                        await run(i)
                    cpu[workload][name].append((time.process_time() - start) / n * 1e6)
        return {
            "scheme": scheme,
            "n": n,
            "rounds": rounds,
            "cpu_us": {w: {k: round(statistics.median(v), 1) for k, v in s.items()} for w, s in cpu.items()},
        }
    finally:
        await manager.drop_tables([Item])
        await manager.close()
        await conn.close()


Step = Callable[[int], Awaitable[Any]]


def _layers(node: Any, conn: Any, raw: Any, query: Any, *, key: bool) -> dict[str, Step]:
    """The query entered at each layer below the manager; with ``key``, its first parameter
    takes a key from 1 to 1000 per call."""
    query, sql, params = compile_query(query, node.database)
    raw_sql = sql.replace('"t1".', "").replace(' AS "t1"', "")

    def args(i: int) -> tuple[Any, ...]:
        return (i % 1000 + 1, *params[1:]) if key else params

    async def shaped(i: int) -> Any:
        return shape_result(query, node.database, await node.run_sql(sql, args(i), write=False))

    return {
        "raw": lambda i: raw(raw_sql, args(i)),
        "driver": lambda i: node.driver.execute(conn, sql, args(i)),
        "run_sql": lambda i: node.run_sql(sql, args(i), write=False),
        "result": shaped,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", default="postgresql+asyncpg")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    ns = parser.parse_args()
    print(json.dumps(asyncio.run(main(ns.scheme, ns.n, ns.rounds)), indent=1))
