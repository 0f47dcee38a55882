"""peewee-async 2.1 used directly: Psycopg3Database (psycopg 3 + psycopg_pool) and AioModel."""

from __future__ import annotations

from typing import Any

import peewee
import peewee_async
from peewee_async.pool import PsycopgPoolBackend
from psycopg_pool import AsyncConnectionPool

from .. import settings
from ..common import Contender as Base


class _Backend(PsycopgPoolBackend):  # type: ignore[misc]
    """peewee-async formats its DSN without escaping; this password needs quoting.

    Otherwise identical to peewee-async's own ``create()`` (same pool, same connection kwargs).
    """

    async def create(self) -> None:
        import psycopg

        params = {
            k: v for k, v in self.connect_params.items() if k not in ("host", "port", "user", "password")
        }
        pool = AsyncConnectionPool(
            settings.conninfo(),
            kwargs={"cursor_factory": psycopg.AsyncClientCursor, "autocommit": True},
            open=False,
            **params,
        )
        await pool.open()
        self.pool = pool


class _Database(peewee_async.Psycopg3Database):  # type: ignore[misc]
    pool_backend_cls = _Backend


database = _Database(
    settings.DATABASE,
    host=settings.HOST,
    port=settings.PRIMARY_PORT,
    user=settings.USER,
    password=settings.PASSWORD,
    pool_params={"min_size": 1, "max_size": settings.POOL_MAX_SIZE},
)


class Item(peewee_async.AioModel):  # type: ignore[misc]
    name = peewee.CharField(max_length=64)
    value = peewee.IntegerField()

    class Meta:
        database = globals()["database"]
        table_name = settings.TABLE


class Contender(Base):
    name = "peewee_async"

    async def open(self) -> None:
        self.db: Any = database
        await database.aio_connect()

    async def close(self) -> None:
        await database.aio_close()

    async def get(self, pk: int) -> None:
        await Item.aio_get(Item.id == pk)

    async def create(self, n: int) -> None:
        await Item.aio_create(name=f"n{n}", value=n)

    async def select100(self) -> None:
        await Item.select().order_by(Item.id).limit(100).aio_execute()

    async def update(self, pk: int, value: int) -> None:
        await Item.update(value=value).where(Item.id == pk).aio_execute()

    async def txn3(self, pk: int, n: int) -> None:
        async with database.aio_atomic():
            await Item.aio_get(Item.id == pk)
            await Item.update(value=Item.value + 1).where(Item.id == pk).aio_execute()
            await Item.aio_create(name=f"t{n}", value=n)
