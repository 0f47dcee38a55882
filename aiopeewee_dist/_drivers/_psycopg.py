"""psycopg 3 adapter: client-side parameter binding, no prepared statements (PgBouncer-safe)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from .._url import DatabaseURL, connect_kwargs
from ._base import Result
from ._postgres import PostgresDriver


class PsycopgDriver(PostgresDriver):
    backend = "psycopg"
    # psycopg waits on the socket through whichever loop is running, so a connection
    # outlives the loop that opened it; the pool still drops them on a loop change
    # to keep one rule for every driver.
    loop_bound = True

    async def connect(self, url: DatabaseURL, *, timeout: float, read_only: bool = False) -> Any:
        conn = await psycopg.AsyncConnection.connect(
            autocommit=True,
            prepare_threshold=None,
            cursor_factory=psycopg.AsyncClientCursor,
            **connect_kwargs(url),
        )
        if read_only:
            try:
                await self.set_read_only(conn)
            except BaseException:  # timed out or cancelled: nobody else will close it
                self.terminate(conn)
                raise
        return conn

    async def close(self, conn: Any) -> None:
        await conn.close()

    def terminate(self, conn: Any) -> None:
        conn.pgconn.finish()

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.info.transaction_status != TransactionStatus.IDLE)

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Result:
        async with conn.cursor() as cur:
            await cur.execute(sql, params or None)
            # psycopg builds a new list of Column objects on every .description access.
            description = cur.description
            rows = await cur.fetchall() if description is not None else []
            return Result(rows, description, cur.rowcount)
