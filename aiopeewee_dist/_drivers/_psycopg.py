"""psycopg 3 adapter: client-side parameter binding, no prepared statements (PgBouncer-safe)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.pq import ExecStatus, TransactionStatus

from .._url import DatabaseURL, connect_kwargs
from ._base import Result
from ._postgres import PostgresDriver


class PsycopgDriver(PostgresDriver):
    backend = "psycopg"
    # psycopg waits on the socket through whichever loop is running, so a connection
    # outlives the loop that opened it; the pool still drops them on a loop change
    # to keep one rule for every driver.
    loop_bound = True
    # Client-side binding sends a statement as one simple-protocol message, which may hold
    # several statements; PgBouncer's transaction mode sees the BEGIN as before.
    merges_begin = True

    async def connect(self, url: DatabaseURL, *, timeout: float, read_only: bool = False) -> Any:
        conn = await psycopg.AsyncConnection.connect(
            autocommit=True,
            prepare_threshold=None,
            cursor_factory=psycopg.AsyncClientCursor,
            **connect_kwargs(url),
        )
        if read_only:
            await self.set_up(conn, self.set_read_only(conn))
        return conn

    async def close(self, conn: Any) -> None:
        await conn.close()

    def terminate(self, conn: Any) -> None:
        conn.pgconn.finish()

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def in_transaction(self, conn: Any) -> bool:
        # pgconn rather than conn.info, which builds a ConnectionInfo object per access.
        return bool(conn.pgconn.transaction_status != TransactionStatus.IDLE)

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Result:
        async with conn.cursor() as cur:
            await cur.execute(sql, params or None)
            return await _result(conn, cur)

    async def execute_after(self, conn: Any, first: str, sql: str, params: Sequence[Any]) -> Result:
        async with conn.cursor() as cur:
            # Without parameters psycopg sends the text as it is ("%" untouched), as execute() does.
            await cur.execute(f"{first};\n{sql}", params or None)
            # No second result: ``sql`` was empty or only a comment, which gives what execute()
            # gives for it (no description, rowcount -1) from the first statement's result.
            cur.nextset()
            return await _result(conn, cur)


# TUPLES_CHUNK: psycopg >= 3.2.
_TUPLES = tuple(
    getattr(ExecStatus, name)
    for name in ("TUPLES_OK", "SINGLE_TUPLE", "TUPLES_CHUNK")
    if hasattr(ExecStatus, name)
)


async def _result(conn: Any, cur: Any) -> Result:
    """The cursor's current result, fetched.

    The description is built here rather than read from ``cursor.description``, whose
    ``Column`` objects cost more than the rest of a short statement's result handling: the
    same condition (a result with columns, or one that said it returns tuples) and the same
    names, as DB-API 7-item sequences holding the name and the type OID.
    """
    res = cur.pgresult
    if not res or not (res.nfields or res.status in _TUPLES):
        return Result([], None, cur.rowcount)
    encoding = conn.info.encoding
    description = []
    for i in range(res.nfields):
        fname = res.fname(i)
        # COPY TO STDOUT results have columns without names (psycopg's Column does the same).
        name = fname.decode(encoding) if fname else f"column_{i + 1}"
        description.append((name, res.ftype(i), None, None, None, None, None))
    return Result(await cur.fetchall(), description, cur.rowcount)
