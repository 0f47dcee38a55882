"""Tortoise ORM on asyncpg (its own venv)."""

from __future__ import annotations

from tortoise import Tortoise
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from .. import settings
from ..common import Contender as Base
from .tortoise_models import Item


class Contender(Base):
    name = "tortoise"

    async def open(self) -> None:
        credentials = {**settings.kwargs(), "minsize": 1, "maxsize": settings.POOL_MAX_SIZE}
        await Tortoise.init(
            config={
                "connections": {
                    "default": {"engine": "tortoise.backends.asyncpg", "credentials": credentials}
                },
                "apps": {"bench": {"models": ["benchmarks.contenders.tortoise_models"]}},
            }
        )

    async def close(self) -> None:
        await Tortoise.close_connections()

    async def get(self, pk: int) -> None:
        await Item.get(id=pk)

    async def create(self, n: int) -> None:
        await Item.create(name=f"n{n}", value=n)

    async def select100(self) -> None:
        await Item.all().order_by("id").limit(100)

    async def update(self, pk: int, value: int) -> None:
        await Item.filter(id=pk).update(value=value)

    async def txn3(self, pk: int, n: int) -> None:
        async with in_transaction():
            await Item.get(id=pk)
            await Item.filter(id=pk).update(value=F("value") + 1)
            await Item.create(name=f"t{n}", value=n)
