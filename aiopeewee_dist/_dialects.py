"""peewee-async database classes wired to a node's pool and node-keyed connection state.

Each node owns one of these: it compiles SQL for the node's dialect, and if an
application binds an ``AioModel`` to it (``node.database``), peewee-async's own
``aio_*`` methods use the node's pool and transactions rather than peewee-async's
global connection slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import peewee
import peewee_async

from ._compat import AioDatabase, NodePoolBackend

if TYPE_CHECKING:
    from ._drivers import Result
    from ._node import Node

__all__ = ["dialect_for"]


class _NodeDatabase(AioDatabase):
    pool_backend_cls = NodePoolBackend
    node: Node

    def aio_connection(self) -> Any:
        return self.node.connection()

    def _aio_atomic(self, use_savepoint: bool = False) -> AbstractAsyncContextManager[None]:
        return _atomic(self.node)

    async def aio_connect(self) -> None:
        await self.node.open()

    async def aio_close(self) -> None:
        await self.node.close()

    @property
    def is_connected(self) -> bool:
        return not self.node.closed

    def execute_sql(self, *args: Any, **kwargs: Any) -> Any:
        raise peewee.OperationalError(
            f"synchronous query on node {self.node.name!r}: await it through the manager instead"
        )


@asynccontextmanager
async def _atomic(node: Node) -> AsyncIterator[None]:
    async with node.transaction():
        yield


class PsycopgDatabase(_NodeDatabase, peewee_async.Psycopg3Database):
    pass


class AiopgDatabase(_NodeDatabase, peewee_async.PostgresqlDatabase):
    pass


class _ResultCursor:
    """An already fetched result with the async cursor surface peewee-async reads."""

    def __init__(self, result: Result) -> None:
        self._result = result
        self.description = result.description
        self.rowcount = result.rowcount
        self.lastrowid = result.lastrowid

    async def fetchone(self) -> Any:
        return self._result.fetchone()

    async def fetchmany(self, size: int = 1) -> list[Any]:
        return self._result.fetchmany(size)

    async def fetchall(self) -> list[Any]:
        return self._result.fetchall()


class AsyncpgDatabase(_NodeDatabase, peewee_async.PostgresqlDatabase):
    async def aio_execute_sql(
        self, sql: str, params: Sequence[Any] | None = None, fetch_results: Any = None
    ) -> Any:
        # asyncpg connections have no DB-API cursor: the statement goes through the node's driver
        # (on the task's pinned connection, if any), which converts placeholders and errors.
        result = await self.node.run_sql(sql, tuple(params or ()))
        if fetch_results is not None:
            return await fetch_results(self, _ResultCursor(result))
        return None


class MySQLDatabase(_NodeDatabase, peewee_async.MySQLDatabase):
    pass


class SqliteDatabase(_NodeDatabase, peewee_async.SqliteDatabase):
    pass


_CLASSES: dict[str, type[_NodeDatabase]] = {
    "psycopg": PsycopgDatabase,
    "aiopg": AiopgDatabase,
    "asyncpg": AsyncpgDatabase,
    "aiomysql": MySQLDatabase,
    "aiosqlite": SqliteDatabase,
}


def dialect_for(node: Node) -> AioDatabase:
    """A database object for ``node``: holds no credentials, opens no connections itself."""
    database = _CLASSES[node.url.backend](node.url.database)
    database.node = node
    return database
