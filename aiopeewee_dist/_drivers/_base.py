"""What every driver adapter provides, and the buffered result peewee reads rows from."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncGenerator, Awaitable, Sequence
from typing import Any, ClassVar, TypeVar

from .._url import DatabaseURL

Row = Sequence[Any]
T = TypeVar("T")

# Tasks inside rooted(): the event loop itself keeps only weak references to tasks.
_rooted: set[asyncio.Task[Any]] = set()


async def rooted(call: Awaitable[T]) -> T:
    """``await call`` with the current task strongly referenced until it ends.

    For a stream's cleanup: when its consumer abandons it, the event loop's async-generator
    finalizer runs the cleanup in a task that nothing references. A driver whose I/O waits on
    an asyncio ``StreamReader`` (which its transport's protocol holds only weakly) is then
    reachable, with its connection, only through reference cycles, and a garbage collection
    destroys the task mid-cleanup: the connection is neither returned to the pool nor closed.
    """
    task = asyncio.current_task()
    if task is None or task in _rooted:
        return await call
    _rooted.add(task)
    try:
        return await call
    finally:
        _rooted.discard(task)


class Result:
    """Rows already fetched from the server, shaped like a DB-API cursor.

    Peewee's cursor wrappers (models, dicts, tuples) and its ``last_insert_id``
    read from this synchronously, so result handling stays exactly Peewee's
    while all I/O happened before, on the event loop.
    """

    __slots__ = ("_pos", "description", "lastrowid", "rowcount", "rows")

    def __init__(
        self,
        rows: list[Any],
        description: Sequence[Any] | None,
        rowcount: int = -1,
        lastrowid: int | None = None,
    ) -> None:
        self.rows = rows
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self._pos = 0

    def fetchone(self) -> Any:
        if self._pos >= len(self.rows):
            return None
        row = self.rows[self._pos]
        self._pos += 1
        return row

    def fetchmany(self, size: int = 1) -> list[Any]:
        chunk = self.rows[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    def fetchall(self) -> list[Any]:
        rest = self.rows[self._pos :]
        self._pos = len(self.rows)
        return rest

    def close(self) -> None:
        pass


class Driver(abc.ABC):
    """Adapter over one async DB-API driver: connections, statements, transaction state.

    Drivers hold no state of their own; one instance serves every node of its backend.
    """

    backend: ClassVar[str]
    #: Whether a connection is tied to the event loop it was opened on.
    loop_bound: ClassVar[bool] = True
    #: Whether ``execute_after`` can send a transaction's BEGIN in the same message as the
    #: transaction's first statement (one round trip less per transaction).
    merges_begin: ClassVar[bool] = False
    #: Whether a connection queues the statements given to it and runs them in turn, so that
    #: autocommit statements can share one (``_sharing``) instead of taking it one at a time.
    queues_statements: ClassVar[bool] = False
    #: The dialect whose replication status queries this driver's servers answer, when it is
    #: not the URL's (the fake servers of aiopeewee_dist.testing answer PostgreSQL's).
    replication_dialect: ClassVar[str | None] = None

    @abc.abstractmethod
    async def connect(self, url: DatabaseURL, *, timeout: float, read_only: bool = False) -> Any:
        """Open one connection in autocommit mode."""

    async def set_up(self, conn: Any, setup: Awaitable[Any]) -> None:
        """Run a new connection's session setup (e.g. making it read-only). If that fails or
        is cut short (connect_timeout, cancellation), close the connection: nobody else holds
        it yet, so it would be left to the garbage collector."""
        try:
            await setup
        except BaseException:
            self.terminate(conn)
            raise

    @abc.abstractmethod
    async def close(self, conn: Any) -> None:
        """Close a connection politely (the loop is running)."""

    @abc.abstractmethod
    def terminate(self, conn: Any) -> None:
        """Close a connection synchronously; its event loop may already be closed."""

    @abc.abstractmethod
    def is_closed(self, conn: Any) -> bool:
        """Whether the connection can no longer be used (closed or broken)."""

    @abc.abstractmethod
    def in_transaction(self, conn: Any) -> bool:
        """Whether the session has an open transaction (also a failed one)."""

    @abc.abstractmethod
    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Result:
        """Run one statement and fetch all of its rows."""

    async def execute_after(self, conn: Any, first: str, sql: str, params: Sequence[Any]) -> Result:
        """Run the parameterless statement ``first``, then ``sql``, in one message; ``sql``'s result.

        If ``sql`` fails, ``first`` has run. Only drivers with ``merges_begin`` implement it.
        """
        raise NotImplementedError

    @abc.abstractmethod
    def stream(
        self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Result, None]:
        """Run one query and yield its rows in chunks, holding at most one chunk in memory."""

    async def ping(self, conn: Any) -> None:
        await self.execute(conn, "SELECT 1", ())

    def begin_statements(self, *, isolation: str | None, read_only: bool) -> list[str]:
        """SQL that opens a transaction with the given characteristics."""
        sql = "BEGIN"
        if isolation:
            sql += f" ISOLATION LEVEL {isolation}"
        if read_only:
            sql += " READ ONLY"
        return [sql]
