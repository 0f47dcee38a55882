"""peewee 4's own asyncio layer, ``playhouse.pwasyncio`` (asyncpg + greenlet bridge)."""

from __future__ import annotations

from typing import Any

import peewee
from playhouse.pwasyncio import AsyncModel, AsyncPostgresqlDatabase

from .. import settings
from ..common import Contender as Base

database = AsyncPostgresqlDatabase(
    settings.DATABASE,
    host=settings.HOST,
    port=settings.PRIMARY_PORT,
    user=settings.USER,
    password=settings.PASSWORD,
    pool_size=settings.POOL_MAX_SIZE,
    pool_min_size=1,
)


class Item(AsyncModel):  # type: ignore[misc]
    name = peewee.CharField(max_length=64)
    value = peewee.IntegerField()

    class Meta:
        database = globals()["database"]
        table_name = settings.TABLE


class Contender(Base):
    """pwasyncio keeps one connection per task until the task ends; the benchmark's tasks
    live long, so every operation releases it (``aclose()``) like a request would."""

    name = "pwasyncio"

    async def open(self) -> None:
        self.db: Any = database

    async def close(self) -> None:
        await database.close_pool()

    async def get(self, pk: int) -> None:
        try:
            await Item.aget(Item.id == pk)
        finally:
            await database.aclose()

    async def create(self, n: int) -> None:
        try:
            await Item.acreate(name=f"n{n}", value=n)
        finally:
            await database.aclose()

    async def select100(self) -> None:
        try:
            await database.list(Item.select().order_by(Item.id).limit(100))
        finally:
            await database.aclose()

    async def update(self, pk: int, value: int) -> None:
        try:
            await database.aexecute(Item.update(value=value).where(Item.id == pk))
        finally:
            await database.aclose()

    async def txn3(self, pk: int, n: int) -> None:
        try:
            async with database.atomic():
                await Item.aget(Item.id == pk)
                await database.aexecute(Item.update(value=Item.value + 1).where(Item.id == pk))
                await Item.acreate(name=f"t{n}", value=n)
        finally:
            await database.aclose()
