"""aiopg adapter (psycopg2 in asynchronous mode)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiopg
import psycopg2

from .._url import DatabaseURL, connect_kwargs
from ._base import Result
from ._postgres import PostgresDriver

# aiopg applies one timeout to every statement; ours are enforced by the caller, so
# make aiopg's large enough never to cut a long query short.
_STATEMENT_TIMEOUT = 7 * 24 * 3600.0
_IDLE = 0  # psycopg2.extensions.TRANSACTION_STATUS_IDLE
_CLOSED_BY_CLOSE = 1  # psycopg2 connection.closed: 1 after close(), 2 when libpq lost it


def _close_once(conn: Any) -> None:
    """Close an aiopg connection unless aiopg already did.

    aiopg closes a connection itself when a statement is cancelled or times out, and
    every later ``close()`` calls ``loop.remove_reader()`` again on the socket number it
    remembers. libpq freed that number at the first close, so by then it may belong to
    another connection opened since: its reader would be removed and it would never see
    a reply again (a connect stalling until connect_timeout, a query until its timeout).
    psycopg2 marks ``closed == 1`` only after its own close(), which aiopg runs right
    after unregistering the socket, so such a connection has nothing left to release.
    A broken connection (``closed == 2``) still holds its libpq handle: close it.
    """
    if conn.raw.closed != _CLOSED_BY_CLOSE:
        conn.close()


class AiopgDriver(PostgresDriver):
    backend = "aiopg"

    async def connect(self, url: DatabaseURL, *, timeout: float, read_only: bool = False) -> Any:
        conn = await aiopg.connect(
            timeout=_STATEMENT_TIMEOUT, enable_hstore=False, enable_json=True, **connect_kwargs(url)
        )
        if read_only:
            await self.set_up(conn, self.set_read_only(conn))
        return conn

    async def close(self, conn: Any) -> None:
        # aiopg's close() is synchronous (it returns a finished future).
        _close_once(conn)

    def terminate(self, conn: Any) -> None:
        # Safe on a closed loop: aiopg only unregisters the socket and closes libpq's handle.
        _close_once(conn)

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed)

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.raw.get_transaction_status() != _IDLE)

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Result:
        cur = await conn.cursor()
        try:
            try:
                await cur.execute(sql, params or None)
            except ValueError as exc:
                # psycopg2 refuses some values itself, before sending anything (a NUL in a
                # string): the same refusal as the server's, so the same DataError.
                raise psycopg2.DataError(str(exc)) from exc
            description = cur.description
            rows = await cur.fetchall() if description is not None else []
            return Result(rows, description, cur.rowcount, cur.lastrowid)
        finally:
            cur.close()
