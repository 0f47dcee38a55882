"""MariaDB and SQLite: the library against its raw driver, in one process, interleaved.

``python -m benchmarks.backends ROUNDS SECONDS`` prints one JSON object:

- MariaDB (the cluster's primary): raw aiomysql (its pool, per operation) vs aiopeewee_dist,
  get and create with 1 and 16 tasks;
- SQLite (a WAL file): aiopeewee_dist's one-writer pool with 1, 4 and 16 concurrent writers
  against one raw aiosqlite connection shared by the same writers, and reads with 1, 4 and 16
  readers (aiopeewee_dist's reader pool against that one connection).

Measured as in ``benchmarks.limit``: ops per wall-clock second and this process's CPU per op,
ratios within a round, medians over rounds.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiomysql
import aiosqlite
import peewee

from aiopeewee_dist import Manager

from . import settings
from .common import Contender
from .limit import measure

MYSQL_PORT = 53306 + int(os.environ.get("AIOPD_PORT_OFFSET") or 0)
T = f"{settings.PREFIX}_backend_item"
SEED = 1000


class Item(peewee.Model):
    name = peewee.CharField(max_length=64)
    value = peewee.IntegerField()

    class Meta:
        table_name = T


class Library(Contender):
    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url

    async def open(self) -> None:
        self.manager = Manager(
            self.url, min_size=1, max_size=settings.POOL_MAX_SIZE, health_check_interval=None
        )
        await self.manager.connect()

    async def close(self) -> None:
        await self.manager.close()

    async def get(self, pk: int) -> None:
        await self.manager.get(Item, Item.id == pk % SEED + 1)

    async def create(self, n: int) -> None:
        await self.manager.create(Item, name=f"n{n}", value=n)


class RawMysql(Contender):
    name = "aiomysql"

    async def open(self) -> None:
        self.pool = await aiomysql.create_pool(
            host=settings.HOST, port=MYSQL_PORT, user=settings.USER, password=settings.PASSWORD,
            db=settings.DATABASE, autocommit=True, minsize=1, maxsize=settings.POOL_MAX_SIZE,
        )  # fmt: skip

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    async def get(self, pk: int) -> None:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT id, name, value FROM {T} WHERE id = %s", (pk % SEED + 1,))
            await cur.fetchone()

    async def create(self, n: int) -> None:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"INSERT INTO {T} (name, value) VALUES (%s, %s)", (f"n{n}", n))


class RawSqlite(Contender):
    """One aiosqlite connection shared by every task (its thread runs one statement at a time)."""

    name = "aiosqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    async def open(self) -> None:
        self.conn = await aiosqlite.connect(self.path, isolation_level=None)
        await self.conn.execute("PRAGMA journal_mode = wal")
        await self.conn.execute("PRAGMA synchronous = normal")

    async def close(self) -> None:
        await self.conn.close()

    async def get(self, pk: int) -> None:
        async with self.conn.execute(
            f"SELECT id, name, value FROM {T} WHERE id = ?", (pk % SEED + 1,)
        ) as cur:
            await cur.fetchone()

    async def create(self, n: int) -> None:
        await self.conn.execute(f"INSERT INTO {T} (name, value) VALUES (?, ?)", (f"n{n}", n))


async def seed(url: str) -> None:
    manager = Manager(url, health_check_interval=None)
    try:
        await manager.drop_tables([Item])
        await manager.create_tables([Item])
        await manager.insert_many(Item, [{"name": f"s{i}", "value": i} for i in range(SEED)])
    finally:
        await manager.close()


Cells = dict[tuple[str, str, int], dict[str, float]]


async def one_round(
    contenders: list[Any], i: int, tasks: tuple[int, ...], workloads: tuple[str, ...], seconds: float
) -> Cells:
    order = contenders[i % 2 :] + contenders[: i % 2]
    found: Cells = {}
    for contender in order:
        await contender.open()
        try:
            await measure(contender, "get", max(tasks), 0.2)  # every connection opened
            for workload in workloads:
                for n in tasks:
                    found[(contender.name, workload, n)] = await measure(contender, workload, n, seconds)
        finally:
            await contender.close()
    return found


def summarise(
    backend: str, found: list[Cells], raw: str, ours: str, tasks: tuple[int, ...], workloads: tuple[str, ...]
) -> list[dict[str, Any]]:
    cells = []
    for workload in workloads:
        for n in tasks:
            a, b = (ours, workload, n), (raw, workload, n)
            cells.append(
                {
                    "backend": backend, "workload": workload, "tasks": n, "raw": raw,
                    "raw_ops_per_s": statistics.median(r[b]["ops_per_s"] for r in found),
                    "ops_per_s": statistics.median(r[a]["ops_per_s"] for r in found),
                    "wall_to_raw": statistics.median(r[a]["ops_per_s"] / r[b]["ops_per_s"] for r in found),
                    "cpu_to_raw": statistics.median(r[b]["cpu_us"] / r[a]["cpu_us"] for r in found),
                }
            )  # fmt: skip
    return cells


async def run(rounds: int, seconds: float) -> dict[str, Any]:
    mysql_url = (
        f"mysql://{settings.USER}:{quote(settings.PASSWORD, safe='')}@{settings.HOST}:{MYSQL_PORT}/"
        f"{settings.DATABASE}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        sqlite_url = f"sqlite:///{path}"
        await seed(mysql_url)
        await seed(sqlite_url)
        groups = {
            "mariadb": ([RawMysql(), Library("aiopd_mysql", mysql_url)], (1, 16), ("get", "create")),
            "sqlite": ([RawSqlite(path), Library("aiopd_sqlite", sqlite_url)], (1, 4, 16), ("get", "create")),
        }
        cells: list[dict[str, Any]] = []
        for backend, (contenders, tasks, workloads) in groups.items():
            found = [await one_round(contenders, i, tasks, workloads, seconds) for i in range(rounds)]
            cells += summarise(backend, found, contenders[0].name, contenders[1].name, tasks, workloads)
    return {"rounds": rounds, "seconds": seconds, "cells": cells}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(int(sys.argv[1]), float(sys.argv[2])))))
