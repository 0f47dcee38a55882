"""peewee-async database classes wired to a node's pool and node-keyed connection state.

Each node owns one of these: it compiles SQL for the node's dialect, and if an
application binds an ``AioModel`` to it (``node.database``), peewee-async's own
``aio_*`` methods use the node's pool and transactions rather than peewee-async's
global connection slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import peewee
import peewee_async

from ._compat import AioDatabase, NodePoolBackend

if TYPE_CHECKING:
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


class MySQLDatabase(_NodeDatabase, peewee_async.MySQLDatabase):
    pass


class SqliteDatabase(_NodeDatabase, peewee_async.SqliteDatabase):
    pass


_CLASSES: dict[str, type[_NodeDatabase]] = {
    "psycopg": PsycopgDatabase,
    "aiopg": AiopgDatabase,
    "aiomysql": MySQLDatabase,
    "aiosqlite": SqliteDatabase,
}


def dialect_for(node: Node) -> AioDatabase:
    """A database object for ``node``: holds no credentials, opens no connections itself."""
    database = _CLASSES[node.url.backend](node.url.database)
    database.node = node
    return database
