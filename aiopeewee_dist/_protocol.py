"""What ``Manager`` and ``ShardedManager`` both offer, for code that takes either."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import peewee

__all__ = ["ManagerProtocol", "OpensOnEnter"]

M = TypeVar("M", bound=peewee.Model)
Opened = TypeVar("Opened", bound="OpensOnEnter")


class OpensOnEnter(Protocol):
    """``async with manager:`` connects on entry and closes on exit (both managers inherit it)."""

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self: Opened) -> Opened:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


@runtime_checkable
class ManagerProtocol(Protocol):
    """The API shared by :class:`Manager` and :class:`ShardedManager`.

    Annotate with it code that works on either (a repository, a test fixture)::

        async def rename(db: ManagerProtocol, user_id: int, name: str) -> None:
            async with db.transaction():
                user = await db.get(User, id=user_id)
                user.name = name
                await db.save(user)

    Each class takes more keyword arguments than listed here (``node=`` on a Manager,
    ``shard_key=`` / ``shards=`` on a ShardedManager).
    """

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def stats(self) -> Mapping[str, Any]: ...

    async def execute(self, query: Any) -> Any: ...

    async def get(self, source: Any, *query: Any, **filters: Any) -> Any: ...

    async def get_or_none(self, source: Any, *query: Any, **filters: Any) -> Any: ...

    async def create(self, model: type[M], **data: Any) -> M: ...

    async def save(self, instance: Any, *, force_insert: bool = False, only: Any = None) -> int | bool: ...

    async def insert_many(
        self, model: type[peewee.Model], rows: Iterable[Any], fields: Any = None
    ) -> Any: ...

    async def count(self, query: Any, *, clear_limit: bool = False) -> int: ...

    async def scalar(self, query: Any, *, as_tuple: bool = False) -> Any: ...

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...

    def primary(self) -> AbstractContextManager[None]: ...

    def read_only(self) -> AbstractContextManager[None]: ...

    async def create_tables(self, models: Sequence[type[peewee.Model]], *, safe: bool = True) -> None: ...

    async def drop_tables(self, models: Sequence[type[peewee.Model]], *, safe: bool = True) -> None: ...


if TYPE_CHECKING:  # mypy --strict (make lint) proves both classes satisfy the protocol.
    from ._manager import Manager
    from .sharding import ShardedManager

    def _both_satisfy(manager: Manager, sharded: ShardedManager) -> list[ManagerProtocol]:
        return [manager, sharded]
