"""Raw asyncpg with its own pool (the fastest PostgreSQL driver; a reference, not the baseline)."""

from __future__ import annotations

from typing import Any

import asyncpg

from .. import settings
from ..common import Contender as Base

T = settings.TABLE


class Contender(Base):
    name = "asyncpg"
    can_stream = True

    async def open(self) -> None:
        self.pool: Any = await asyncpg.create_pool(
            min_size=1, max_size=settings.POOL_MAX_SIZE, **settings.kwargs()
        )

    async def close(self) -> None:
        await self.pool.close()

    async def get(self, pk: int) -> None:
        await self.pool.fetchrow(f"SELECT id, name, value FROM {T} WHERE id = $1", pk)

    async def create(self, n: int) -> None:
        await self.pool.fetchval(f"INSERT INTO {T} (name, value) VALUES ($1, $2) RETURNING id", f"n{n}", n)

    async def select100(self) -> None:
        await self.pool.fetch(f"SELECT id, name, value FROM {T} ORDER BY id LIMIT 100")

    async def update(self, pk: int, value: int) -> None:
        await self.pool.execute(f"UPDATE {T} SET value = $1 WHERE id = $2", value, pk)

    async def txn3(self, pk: int, n: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.fetchrow(f"SELECT id, name, value FROM {T} WHERE id = $1", pk)
            await conn.execute(f"UPDATE {T} SET value = value + 1 WHERE id = $1", pk)
            await conn.fetchval(f"INSERT INTO {T} (name, value) VALUES ($1, $2) RETURNING id", f"t{n}", n)

    async def stream(self, limit: int) -> int:
        count = 0
        async with self.pool.acquire() as conn, conn.transaction():
            sql = f"SELECT id, name, value FROM {settings.STREAM_TABLE} LIMIT $1"
            async for _row in conn.cursor(sql, limit, prefetch=1000):
                count += 1
        return count
