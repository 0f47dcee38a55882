"""Raw psycopg 3 with psycopg_pool.AsyncConnectionPool: the baseline of every ratio."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from .. import settings
from ..common import Contender as Base

T = settings.TABLE


class Contender(Base):
    name = "psycopg"
    can_stream = True

    async def open(self) -> None:
        self.pool: Any = AsyncConnectionPool(
            settings.conninfo(),
            min_size=1,
            max_size=settings.POOL_MAX_SIZE,
            kwargs={"autocommit": True},
            open=False,
        )
        await self.pool.open(wait=True)

    async def close(self) -> None:
        await self.pool.close()

    async def get(self, pk: int) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT id, name, value FROM {T} WHERE id = %s", (pk,))
            await cur.fetchone()

    async def create(self, n: int) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"INSERT INTO {T} (name, value) VALUES (%s, %s) RETURNING id", (f"n{n}", n)
            )
            await cur.fetchone()

    async def select100(self) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT id, name, value FROM {T} ORDER BY id LIMIT 100")
            await cur.fetchall()

    async def update(self, pk: int, value: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(f"UPDATE {T} SET value = %s WHERE id = %s", (value, pk))

    async def txn3(self, pk: int, n: int) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(f"SELECT id, name, value FROM {T} WHERE id = %s", (pk,))
            await cur.fetchone()
            await conn.execute(f"UPDATE {T} SET value = value + 1 WHERE id = %s", (pk,))
            cur = await conn.execute(
                f"INSERT INTO {T} (name, value) VALUES (%s, %s) RETURNING id", (f"t{n}", n)
            )
            await cur.fetchone()

    async def stream(self, limit: int) -> int:
        count = 0
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(name="bench_stream")  # a server-side cursor
            cur.itersize = 1000
            await cur.execute(f"SELECT id, name, value FROM {settings.STREAM_TABLE} LIMIT %s", (limit,))
            async for _row in cur:
                count += 1
            await cur.close()
        return count
