"""aiopg adapter (psycopg2 in asynchronous mode)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiopg

from .._url import DatabaseURL, connect_kwargs
from ._base import Result
from ._postgres import PostgresDriver

# aiopg applies one timeout to every statement; ours are enforced by the caller, so
# make aiopg's large enough never to cut a long query short.
_STATEMENT_TIMEOUT = 7 * 24 * 3600.0
_IDLE = 0  # psycopg2.extensions.TRANSACTION_STATUS_IDLE


class AiopgDriver(PostgresDriver):
    backend = "aiopg"

    async def connect(self, url: DatabaseURL, *, timeout: float, read_only: bool = False) -> Any:
        conn = await aiopg.connect(
            timeout=_STATEMENT_TIMEOUT, enable_hstore=False, enable_json=True, **connect_kwargs(url)
        )
        if read_only:
            await self.set_read_only(conn)
        return conn

    async def close(self, conn: Any) -> None:
        await conn.close()

    def terminate(self, conn: Any) -> None:
        # Safe on a closed loop: aiopg only unregisters the socket and closes libpq's handle.
        conn.close()

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed)

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.raw.get_transaction_status() != _IDLE)

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Result:
        cur = await conn.cursor()
        try:
            await cur.execute(sql, params or None)
            description = cur.description
            rows = await cur.fetchall() if description is not None else []
            return Result(rows, description, cur.rowcount, cur.lastrowid)
        finally:
            cur.close()
