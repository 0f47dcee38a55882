"""The driver wrapper behind the test fixtures: one shared connection, simulated outages.

Every node of a manager under :func:`~aiopeewee_dist.testing.rolled_back` sends its
statements through a :class:`SimDriver`. Statements on the test's shared connection are
serialised (aiopg and aiomysql connections must not be used by two tasks at once, and a
test's app may run requests concurrently); a node marked down refuses to connect and its
statements fail as a lost connection does, so the library's own failover paths run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any

from .._context import Binding
from .._drivers import Driver, Result
from .._url import DatabaseURL

__all__ = ["DEAD_CONNECTION", "SharedConnection", "SimDriver", "SimulatedOutage"]

# Statements that manage the test transaction's savepoints themselves: never wrapped.
_TX_WORDS = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT", "START")
_STATEMENT_SAVEPOINT = "aiopd_test_stmt"


class _DeadConnection:
    def __repr__(self) -> str:
        return "<dead connection (simulated)>"


#: What a node simulated as down has pinned instead of a connection: every statement on it
#: fails at once, without waiting for a pool (a SQLite writer pool's one connection is the test's).
DEAD_CONNECTION = _DeadConnection()


class SimulatedOutage(OSError):
    """What a node simulated as down raises (the library reports it as ``NodeUnavailable``)."""


class _TaskLock:
    """An ``asyncio.Lock`` the holding task may take again: a stream's consumer runs in the
    stream's task and may send statements between chunks."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            yield
            return
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None


class SharedConnection:
    """The test's one connection to the primary, its open transaction and its lock."""

    def __init__(self, driver: Driver, binding: Binding, *, statement_savepoints: bool) -> None:
        self.driver = driver
        self.binding = binding
        self.conn = binding.conn
        self.lock = _TaskLock()
        # PostgreSQL aborts the whole transaction on any failed statement; outside the test's
        # own transaction blocks each statement gets a savepoint, so a failure (an expected
        # IntegrityError, say) leaves the test able to go on, as under autocommit.
        self.statement_savepoints = statement_savepoints

    def _wrap(self, sql: str) -> bool:
        return (
            self.statement_savepoints
            and self.binding.depth <= 1
            and not sql.lstrip()[:9].upper().startswith(_TX_WORDS)
        )

    async def execute(self, sql: str, params: Sequence[Any]) -> Result:
        driver, conn = self.driver, self.conn
        async with self.lock.hold():
            if not self._wrap(sql):
                return await driver.execute(conn, sql, params)
            savepoint = f"SAVEPOINT {_STATEMENT_SAVEPOINT}"
            try:
                if driver.merges_begin:
                    result = await driver.execute_after(conn, savepoint, sql, params)
                else:
                    await driver.execute(conn, savepoint, ())
                    result = await driver.execute(conn, sql, params)
            except Exception:
                if not driver.is_closed(conn):
                    await driver.execute(conn, f"ROLLBACK TO SAVEPOINT {_STATEMENT_SAVEPOINT}", ())
                raise
            await driver.execute(conn, f"RELEASE SAVEPOINT {_STATEMENT_SAVEPOINT}", ())
            return result

    async def stream(self, sql: str, params: Sequence[Any], chunk_size: int) -> AsyncGenerator[Result, None]:
        source = self.driver.stream(self.conn, sql, params, chunk_size)
        async with self.lock.hold(), aclosing(source) as chunks:
            async for chunk in chunks:
                yield chunk


class SimDriver(Driver):
    """Wraps one node's real driver: the shared connection, and a switch that takes it down."""

    backend = "simulated"

    def __init__(self, real: Driver, shared: SharedConnection, node_name: str) -> None:
        self.real = real
        self.shared = shared
        self.node_name = node_name
        self.down = False

    def _check_up(self) -> None:
        if self.down:
            raise SimulatedOutage(f"node {self.node_name!r} is down (simulated by aiopeewee_dist.testing)")

    async def connect(self, url: DatabaseURL, *, timeout: float, read_only: bool = False) -> Any:
        self._check_up()
        return await self.real.connect(url, timeout=timeout, read_only=read_only)

    async def close(self, conn: Any) -> None:
        await self.real.close(conn)

    def terminate(self, conn: Any) -> None:
        self.real.terminate(conn)

    def is_closed(self, conn: Any) -> bool:
        if conn is DEAD_CONNECTION:
            return True
        if conn is self.shared.conn:  # an outage never breaks the test's own transaction
            return self.real.is_closed(conn)
        return self.down or self.real.is_closed(conn)

    def in_transaction(self, conn: Any) -> bool:
        return conn is not DEAD_CONNECTION and self.real.in_transaction(conn)

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Result:
        self._check_up()
        if conn is self.shared.conn:
            return await self.shared.execute(sql, params)
        return await self.real.execute(conn, sql, params)

    async def execute_after(self, conn: Any, first: str, sql: str, params: Sequence[Any]) -> Result:
        self._check_up()  # only ever sent on a node's own connections (merges_begin is False here)
        return await self.real.execute_after(conn, first, sql, params)

    async def stream(
        self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Result, None]:
        self._check_up()
        source = (
            self.shared.stream(sql, params, chunk_size)
            if conn is self.shared.conn
            else self.real.stream(conn, sql, params, chunk_size)
        )
        async with aclosing(source) as chunks:
            async for chunk in chunks:
                yield chunk

    async def ping(self, conn: Any) -> None:
        self._check_up()
        await self.real.ping(conn)

    def begin_statements(self, *, isolation: str | None, read_only: bool) -> list[str]:
        return self.real.begin_statements(isolation=isolation, read_only=read_only)
