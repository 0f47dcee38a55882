"""Raw aiopg (psycopg2 under asyncio) with its own pool."""

from __future__ import annotations

from typing import Any

import aiopg

from .. import settings
from ..common import Contender as Base

T = settings.TABLE


class Contender(Base):
    name = "aiopg"

    async def open(self) -> None:
        self.pool: Any = await aiopg.create_pool(
            settings.conninfo(), minsize=1, maxsize=settings.POOL_MAX_SIZE
        )

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    async def get(self, pk: int) -> None:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT id, name, value FROM {T} WHERE id = %s", (pk,))
            await cur.fetchone()

    async def create(self, n: int) -> None:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"INSERT INTO {T} (name, value) VALUES (%s, %s) RETURNING id", (f"n{n}", n))
            await cur.fetchone()

    async def select100(self) -> None:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT id, name, value FROM {T} ORDER BY id LIMIT 100")
            await cur.fetchall()

    async def update(self, pk: int, value: int) -> None:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"UPDATE {T} SET value = %s WHERE id = %s", (value, pk))

    async def txn3(self, pk: int, n: int) -> None:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("BEGIN")
            try:
                await cur.execute(f"SELECT id, name, value FROM {T} WHERE id = %s", (pk,))
                await cur.fetchone()
                await cur.execute(f"UPDATE {T} SET value = value + 1 WHERE id = %s", (pk,))
                await cur.execute(f"INSERT INTO {T} (name, value) VALUES (%s, %s) RETURNING id", (f"t{n}", n))
                await cur.fetchone()
            except BaseException:
                await cur.execute("ROLLBACK")
                raise
            await cur.execute("COMMIT")
