"""What the two PostgreSQL drivers (psycopg 3, aiopg) share: server-side cursors for streaming."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from ._base import Driver, Result

_cursor_ids = itertools.count(1)


class PostgresDriver(Driver):
    async def set_read_only(self, conn: Any) -> None:
        # A replica connection refuses writes itself, so a routing mistake can never
        # write to a node that was promoted behind our back.
        await self.execute(conn, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", ())

    async def stream(
        self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Result, None]:
        # DECLARE/FETCH works the same on both drivers and through PgBouncer's transaction
        # mode; a cursor only lives inside a transaction, so open one if none is.
        own_tx = not self.in_transaction(conn)
        name = f"aiopd_stream_{next(_cursor_ids)}"
        if own_tx:
            await self.execute(conn, "BEGIN", ())
        declared = False
        try:
            await self.execute(conn, f'DECLARE "{name}" NO SCROLL CURSOR FOR {sql}', params)
            declared = True
            while True:
                chunk = await self.execute(conn, f'FETCH FORWARD {int(chunk_size)} FROM "{name}"', ())
                if not chunk.rows:
                    break
                yield chunk
        finally:
            # Also on early exit: a cursor left open inside the caller's transaction
            # would hold its snapshot until that transaction ends.
            if not self.is_closed(conn):
                if own_tx:
                    # COMMIT also ends a failed transaction (as a rollback) and closes the cursor.
                    await self.execute(conn, "COMMIT", ())
                elif declared and self.in_transaction(conn):
                    await self.execute(conn, f'CLOSE "{name}"', ())
