"""SQLAlchemy 2 async ORM on asyncpg: a new AsyncSession per operation, as per request."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, String, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .. import settings
from ..common import Contender as Base


class _Model(DeclarativeBase):
    pass


class Item(_Model):
    __tablename__ = settings.TABLE
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[int] = mapped_column(Integer)


class StreamItem(_Model):
    __tablename__ = settings.STREAM_TABLE
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[int] = mapped_column(Integer)


class Contender(Base):
    name = "sqlalchemy"
    can_stream = True

    async def open(self) -> None:
        self.engine: Any = create_async_engine(
            settings.url(scheme="postgresql+asyncpg"), pool_size=settings.POOL_MAX_SIZE, max_overflow=0
        )
        self.session = async_sessionmaker(self.engine, expire_on_commit=False)

    async def close(self) -> None:
        await self.engine.dispose()

    async def get(self, pk: int) -> None:
        async with self.session() as session:
            await session.get(Item, pk)

    async def create(self, n: int) -> None:
        async with self.session() as session, session.begin():
            session.add(Item(name=f"n{n}", value=n))

    async def select100(self) -> None:
        async with self.session() as session:
            (await session.scalars(select(Item).order_by(Item.id).limit(100))).all()

    async def update(self, pk: int, value: int) -> None:
        async with self.session() as session, session.begin():
            await session.execute(update(Item).where(Item.id == pk).values(value=value))

    async def txn3(self, pk: int, n: int) -> None:
        async with self.session() as session, session.begin():
            await session.get(Item, pk)
            await session.execute(update(Item).where(Item.id == pk).values(value=Item.value + 1))
            session.add(Item(name=f"t{n}", value=n))

    async def stream(self, limit: int) -> int:
        count = 0
        async with self.session() as session:
            query = select(StreamItem).limit(limit).execution_options(yield_per=1000)
            result = await session.stream_scalars(query)
            async for _row in result:
                count += 1
        return count
