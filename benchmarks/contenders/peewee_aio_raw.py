"""peewee-aio (aio-databases, asyncpg pool): its own venv, it pins a newer peewee."""

from __future__ import annotations

from typing import Any

import peewee
from peewee_aio import AIOModel, Manager

from .. import settings
from ..common import Contender as Base

manager = Manager(
    f"asyncpg+pool://{settings.USER}@{settings.HOST}:{settings.PRIMARY_PORT}/{settings.DATABASE}",
    min_size=1,
    max_size=settings.POOL_MAX_SIZE,
)
# aio-databases takes the password from the URL without unquoting it: set it directly.
manager.backend.options["password"] = settings.PASSWORD


@manager.register
class Item(AIOModel):  # type: ignore[misc]
    name = peewee.CharField(max_length=64)
    value = peewee.IntegerField()

    class Meta:
        table_name = settings.TABLE


class Contender(Base):
    name = "peewee_aio"

    async def open(self) -> None:
        self.manager: Any = manager
        await manager.connect()

    async def close(self) -> None:
        await manager.disconnect()

    async def get(self, pk: int) -> None:
        await Item.get(Item.id == pk)

    async def create(self, n: int) -> None:
        await Item.create(name=f"n{n}", value=n)

    async def select100(self) -> None:
        await Item.select().order_by(Item.id).limit(100)

    async def update(self, pk: int, value: int) -> None:
        await Item.update(value=value).where(Item.id == pk)

    async def txn3(self, pk: int, n: int) -> None:
        async with manager.transaction():
            await Item.get(Item.id == pk)
            await Item.update(value=Item.value + 1).where(Item.id == pk)
            await Item.create(name=f"t{n}", value=n)
