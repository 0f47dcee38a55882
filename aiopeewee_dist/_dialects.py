"""peewee-async database classes wired to a node's pool and node-keyed connection state.

Each node owns one of these: it compiles SQL for the node's dialect, and it is what
``manager.database`` returns for the primary. Code written for peewee-async 2.1 behaves the
same on it (docs/peewee-async.md), with the node's pool and node-keyed connection state in
place of peewee-async's pool and its one global connection slot:

- ``aio_connection()`` pins one connection of the node to the task; inside it
  ``aio_begin()``/``aio_savepoint()`` return started ``peewee_async.Transaction`` objects
  whose ``commit()``/``rollback()`` run on that connection;
- ``aio_atomic()`` is a transaction, nested ones are savepoints; ``aio_transaction()`` inside
  an open transaction raises ``OperationalError("Transaction already opened")``;
- ``pool_backend`` acquires and releases the node's connections (what
  ``peewee_async.testing.TransactionTestCase`` uses), ``is_connected`` reflects the pools;
- ``allow_sync()`` opens peewee's synchronous connection to the node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import peewee
import peewee_async

from . import _context
from ._compat import AioDatabase, PeeweeAsyncHooks, PoolBackend
from ._query import is_write_sql
from ._transaction import Transaction
from ._url import connect_kwargs

if TYPE_CHECKING:
    from ._node import Node
    from ._pool import PooledConnection

__all__ = ["dialect_for", "following_database"]

_NOT_IN_CONNECTION = "This method can only be called within the aio_connection context manager"
#: Told about a write committed on a node (the manager's read-your-writes records it).
WriteHook = Callable[["Node"], Awaitable[None]]


class _NodePoolBackend(PoolBackend):
    """peewee-async's pool interface over the node's own pool (its writer pool on SQLite)."""

    resolve: Callable[[], Node]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(database=kwargs.pop("database", ""))
        # By connection: the node it came from (the primary may change before it is released).
        self._leased: dict[int, tuple[Node, PooledConnection]] = {}

    @property
    def node(self) -> Node:
        return self.resolve()

    @property
    def is_connected(self) -> bool:
        return self.node.is_open

    def has_acquired_connections(self) -> bool:
        return self.node.busy > 0

    async def connect(self) -> None:
        await self.node.open()

    async def create(self) -> None:
        await self.node.open()

    async def acquire(self) -> Any:
        node = self.node
        pc = await node.pool.acquire()
        self._leased[id(pc.conn)] = (node, pc)
        return pc.conn

    async def release(self, conn: Any) -> None:
        leased = self._leased.pop(id(conn), None)
        if leased is None:
            raise peewee.OperationalError(
                f"node {self.node.name!r}: release() of a connection this pool_backend did not acquire()"
            )
        node, pc = leased
        # The pool rolls back a connection returned inside a transaction before reusing it.
        node.pool.release(pc, broken=node.driver.is_closed(conn))

    async def close(self) -> None:
        await self.node.close()


class _ManualTransaction(peewee_async.Transaction):
    """What ``aio_begin()``/``aio_savepoint()`` return: runs on the task's pinned connection.

    Its statements go through the node (statistics, ``query_timeout``, error mapping), and it
    counts as an open block of the connection, so ``aio_atomic()`` inside it is a savepoint.
    """

    def __init__(
        self, node: Node, binding: _context.Binding, *, savepoint: bool, on_commit: WriteHook | None
    ) -> None:
        super().__init__(binding.conn, is_savepoint=savepoint)
        self._node = node
        self._binding = binding
        self._on_commit = on_commit
        self._open = False

    async def execute(self, sql: str) -> None:
        if _context.bound(self._node) is not self._binding:
            raise peewee.OperationalError(
                f"node {self._node.name!r}: the aio_connection() block of this transaction has ended"
            )
        await self._node.run_sql(sql, write=False)

    async def begin(self) -> None:
        await super().begin()
        self._open = True
        self._binding.depth += 1

    async def commit(self) -> None:
        try:
            await super().commit()
        finally:
            self._close()
        if self._on_commit is not None and not self.is_savepoint:
            await self._on_commit(self._node)

    async def rollback(self) -> None:
        try:
            await super().rollback()
        finally:
            self._close()

    def _close(self) -> None:
        if self._open:
            self._open = False
            self._binding.depth -= 1


def _open_blocks(node: Node) -> int:
    """Transaction blocks the current task has open on ``node`` (0: none, or not pinned)."""
    binding = _context.bound(node)
    return 0 if binding is None else binding.depth


@asynccontextmanager
async def _atomic(node: Node, savepoint: bool, on_commit: WriteHook | None) -> AsyncIterator[None]:
    if not savepoint and _open_blocks(node) > 0:
        # peewee-async refuses to nest aio_transaction(); the enclosing block rolls back.
        raise peewee.OperationalError("Transaction already opened")
    async with Transaction(node, on_commit=on_commit):
        yield


class _NodeDatabase(PeeweeAsyncHooks, AioDatabase):
    pool_backend_cls = _NodePoolBackend
    pool_backend: _NodePoolBackend
    resolve: Callable[[], Node]
    on_write: WriteHook | None = None

    @property
    def node(self) -> Node:
        """The node this database runs on now (``manager.database``: the current primary)."""
        return self.resolve()

    def aio_connection(self) -> Any:
        return self.node.connection()

    def atomic_block(self, *, savepoint: bool) -> AbstractAsyncContextManager[None]:
        return _atomic(self.node, savepoint, self.on_write)

    async def begin_block(self, *, savepoint: bool) -> peewee_async.Transaction:
        binding = _context.bound(self.node)
        if binding is None:
            raise peewee.OperationalError(_NOT_IN_CONNECTION)
        if not savepoint and binding.depth > 0:
            raise peewee.OperationalError("Transaction already opened")
        transaction = _ManualTransaction(self.node, binding, savepoint=savepoint, on_commit=self.on_write)
        await transaction.begin()
        return transaction

    async def aio_execute_sql(
        self, sql: str, params: Sequence[Any] | None = None, fetch_results: Any = None
    ) -> Any:
        hook = self.on_write
        if hook is None or not is_write_sql(sql):
            return await super().aio_execute_sql(sql, params, fetch_results=fetch_results)
        node = self.node
        # Pinned so that causal read-your-writes reads the position on the session that wrote.
        async with self.aio_connection():
            result = await super().aio_execute_sql(sql, params, fetch_results=fetch_results)
            if _open_blocks(node) == 0:  # inside a transaction its commit is the write
                await hook(node)
        return result

    async def aio_connect(self) -> None:
        await self.node.open()

    async def aio_close(self) -> None:
        await self.node.close()

    @property
    def is_connected(self) -> bool:
        return self.node.is_open

    def sync_connect_params(self) -> dict[str, Any]:
        url = self.node.url
        if url.backend == "aiosqlite":
            return {}  # peewee passes the file name and its own timeout
        params = connect_kwargs(url)
        if url.dialect == "mysql":
            params.pop("db", None)  # peewee passes database=
        return params

    def sync_target(self) -> str:
        return f"node {self.node.name!r}"


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
    "fake": SqliteDatabase,
}


def _database(node: Node, resolve: Callable[[], Node]) -> _NodeDatabase:
    database = _CLASSES[node.url.backend](node.url.database)
    database.resolve = database.pool_backend.resolve = resolve
    return database


def dialect_for(node: Node) -> AioDatabase:
    """A database object for ``node``: holds no credentials, opens no connections itself."""
    return _database(node, lambda: node)


def following_database(primary: Callable[[], Node], on_write: WriteHook | None = None) -> AioDatabase:
    """``manager.database``: the same, on whichever node ``primary()`` returns at each call.

    Models bound to it at import time keep writing to the primary after a failover
    (``replace_primary``, ``auto_failover``), where the old primary's database would
    refuse them (closed, or now a read-only replica). ``on_write`` is awaited after each
    write outside a transaction and after each commit.
    """
    database = _database(primary(), primary)
    database.on_write = on_write
    return database
