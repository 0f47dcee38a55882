"""aiopeewee_dist.Manager on the primary only (psycopg 3 driver), plain peewee models."""

from __future__ import annotations

from typing import Any

import peewee

from aiopeewee_dist import Manager

from .. import settings
from ..common import Contender as Base


class Item(peewee.Model):
    name = peewee.CharField(max_length=64)
    value = peewee.IntegerField()

    class Meta:
        table_name = settings.TABLE


class StreamItem(Item):
    class Meta:
        table_name = settings.STREAM_TABLE


class Contender(Base):
    name = "aiopd"
    can_stream = True
    replicas: tuple[str, ...] = ()
    #: The URL scheme picks the driver (aiopd_asyncpg, aiopd_aiopg override it).
    scheme = "postgresql"

    async def open(self) -> None:
        self.manager: Any = Manager(
            settings.url(scheme=self.scheme),
            replicas=list(self.replicas),
            min_size=1,
            max_size=settings.POOL_MAX_SIZE,
            health_check_interval=1.0 if self.replicas else None,
        )
        await self.manager.connect()

    async def close(self) -> None:
        await self.manager.close()

    async def get(self, pk: int) -> None:
        await self.manager.get(Item, Item.id == pk)

    async def create(self, n: int) -> None:
        await self.manager.create(Item, name=f"n{n}", value=n)

    async def select100(self) -> None:
        await self.manager.execute(Item.select().order_by(Item.id).limit(100))

    async def update(self, pk: int, value: int) -> None:
        await self.manager.execute(Item.update(value=value).where(Item.id == pk))

    async def txn3(self, pk: int, n: int) -> None:
        async with self.manager.transaction():
            await self.manager.get(Item, Item.id == pk)
            await self.manager.execute(Item.update(value=Item.value + 1).where(Item.id == pk))
            await self.manager.create(Item, name=f"t{n}", value=n)

    async def stream(self, limit: int) -> int:
        count = 0
        async with self.manager.iterate(StreamItem.select().limit(limit), chunk_size=1000) as rows:
            async for _row in rows:
                count += 1
        return count
