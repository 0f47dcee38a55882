"""Adapter for ``fake://`` URLs: connections to the simulated servers of aiopeewee_dist.testing."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

from .._url import DatabaseURL
from ..testing._server import server_named
from ..testing._session import FakeSession
from ._base import Driver, Result


def _result(cursor: Any) -> Result:
    rows = cursor.fetchall() if cursor.description is not None else []
    return Result(rows, cursor.description, cursor.rowcount, cursor.lastrowid)


class FakeDriver(Driver):
    backend = "fake"
    # Like the network drivers, so that the pool's event-loop handling is the one tested.
    loop_bound = True
    merges_begin = True
    # The servers answer PostgreSQL's replication status queries (see FakeServer).
    replication_dialect = "postgresql"

    async def connect(self, url: DatabaseURL, *, timeout: float, read_only: bool = False) -> Any:
        return await server_named(url.database).connect(read_only=read_only)

    async def close(self, conn: FakeSession) -> None:
        self.terminate(conn)

    def terminate(self, conn: FakeSession) -> None:
        conn.server.disconnect(conn)

    def is_closed(self, conn: FakeSession) -> bool:
        return conn.closed

    def in_transaction(self, conn: FakeSession) -> bool:
        return conn.in_transaction

    def begin_statements(self, *, isolation: str | None, read_only: bool) -> list[str]:
        # SQLite's: IMMEDIATE takes the write lock up front, so two writers queue.
        return ["BEGIN" if read_only else "BEGIN IMMEDIATE"]

    async def execute(self, conn: FakeSession, sql: str, params: Sequence[Any]) -> Result:
        return _result(await conn.server.execute(conn, sql, params))

    async def execute_after(self, conn: FakeSession, first: str, sql: str, params: Sequence[Any]) -> Result:
        return _result(await conn.server.execute(conn, sql, params, first=first))

    async def stream(
        self, conn: FakeSession, sql: str, params: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Result, None]:
        server = conn.server
        cursor = await server.execute(conn, sql, params)
        try:
            while True:
                await server.arrive(conn)  # each chunk is a round trip
                rows = cursor.fetchmany(chunk_size)
                if not rows:
                    break
                yield Result(rows, cursor.description)
        finally:
            if not conn.dropped:
                cursor.close()
