"""Raw asyncpg, each task holding its own connection: no pool, no routing, prepared statements.

This is the limit row of issue 16: what a Python client on this machine can do at most. With
more tasks than ``POOL_MAX_SIZE`` connections, tasks share connections round-robin (one
statement at a time each, as asyncpg requires).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from .. import settings
from ..common import Contender as Base

T = settings.TABLE


class Contender(Base):
    name = "asyncpg_held"
    can_stream = True

    async def open(self) -> None:
        self.conns: list[tuple[Any, asyncio.Lock]] = []
        self.held: dict[asyncio.Task[Any], tuple[Any, asyncio.Lock]] = {}

    async def close(self) -> None:
        for conn, _ in self.conns:
            await conn.close()

    async def _conn(self) -> tuple[Any, asyncio.Lock]:
        task = asyncio.current_task()
        assert task is not None
        held = self.held.get(task)
        if held is None:
            if len(self.conns) < settings.POOL_MAX_SIZE:
                self.conns.append((await asyncpg.connect(**settings.kwargs()), asyncio.Lock()))
            held = self.held[task] = self.conns[len(self.held) % len(self.conns)]
        return held

    async def get(self, pk: int) -> None:
        conn, lock = await self._conn()
        async with lock:
            await conn.fetchrow(f"SELECT id, name, value FROM {T} WHERE id = $1", pk)

    async def create(self, n: int) -> None:
        conn, lock = await self._conn()
        async with lock:
            await conn.fetchval(f"INSERT INTO {T} (name, value) VALUES ($1, $2) RETURNING id", f"n{n}", n)

    async def select100(self) -> None:
        conn, lock = await self._conn()
        async with lock:
            await conn.fetch(f"SELECT id, name, value FROM {T} ORDER BY id LIMIT 100")

    async def update(self, pk: int, value: int) -> None:
        conn, lock = await self._conn()
        async with lock:
            await conn.execute(f"UPDATE {T} SET value = $1 WHERE id = $2", value, pk)

    async def txn3(self, pk: int, n: int) -> None:
        conn, lock = await self._conn()
        async with lock, conn.transaction():
            await conn.fetchrow(f"SELECT id, name, value FROM {T} WHERE id = $1", pk)
            await conn.execute(f"UPDATE {T} SET value = value + 1 WHERE id = $1", pk)
            await conn.fetchval(f"INSERT INTO {T} (name, value) VALUES ($1, $2) RETURNING id", f"t{n}", n)

    async def stream(self, limit: int) -> int:
        conn, lock = await self._conn()
        count = 0
        async with lock, conn.transaction():
            sql = f"SELECT id, name, value FROM {settings.STREAM_TABLE} LIMIT $1"
            async for _row in conn.cursor(sql, limit, prefetch=1000):
                count += 1
        return count
