"""The router's own cost per query, in process: ``python -m benchmarks.router_cost [N]``.

1. ``Router.route()`` in a tight loop (primary only; primary + 2 replicas, no I/O).
2. ``Manager.execute()`` of a select by key on SQLite ``:memory:`` vs the same SQL
   through raw aiosqlite on one connection: the difference is what the library adds
   (query compile, routing, pool, result shaping).
Prints JSON with microseconds per call.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiosqlite
import peewee

from aiopeewee_dist import Manager

from . import settings


class Row(peewee.Model):
    name = peewee.CharField()

    class Meta:
        table_name = "bench_row"


def per_call_us(fn: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


async def per_await_us(fn: Any, n: int) -> float:
    for _ in range(min(n, 200)):
        await fn()
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - start) / n * 1e6


async def route_costs(n: int) -> dict[str, float]:
    single = Manager(settings.url(), health_check_interval=None)
    replicated = Manager(
        settings.url(),
        replicas=[settings.url(port) for port in settings.REPLICA_PORTS],
        health_check_interval=None,
    )
    return {
        "route_write_primary_only_us": per_call_us(lambda: single._router.route(write=True), n),
        "route_read_primary_only_us": per_call_us(lambda: single._router.route(write=False), n),
        "route_read_2_replicas_us": per_call_us(lambda: replicated._router.route(write=False), n),
        "route_write_2_replicas_us": per_call_us(lambda: replicated._router.route(write=True), n),
    }


async def sqlite_costs(n: int) -> dict[str, float]:
    manager = Manager("sqlite:///:memory:", health_check_interval=None)
    async with manager:
        await manager.raw_sql("CREATE TABLE bench_row (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        await manager.raw_sql("INSERT INTO bench_row (name) VALUES ('a'), ('b'), ('c')")
        via_manager = await per_await_us(lambda: manager.execute(Row.select().where(Row.id == 2)), n)
        via_get = await per_await_us(lambda: manager.get(Row, Row.id == 2), n)
    sql, params = Row.select().where(Row.id == 2).sql()
    async with aiosqlite.connect(":memory:") as conn:
        await conn.execute("CREATE TABLE bench_row (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        await conn.execute("INSERT INTO bench_row (name) VALUES ('a'), ('b'), ('c')")

        async def raw() -> None:
            async with conn.execute(sql, params) as cur:
                await cur.fetchall()

        via_raw = await per_await_us(raw, n)
    return {
        "sqlite_manager_execute_us": via_manager,
        "sqlite_manager_get_us": via_get,
        "sqlite_raw_aiosqlite_us": via_raw,
        "sqlite_overhead_us": via_manager - via_raw,
    }


async def main(n: int) -> dict[str, Any]:
    return {"n": n, **await route_costs(n * 4), **await sqlite_costs(n // 10 or 1)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000))))
