"""aiomysql adapter (MySQL and MariaDB)."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import aiomysql
import pymysql

from .._compat import aiomysql_detach, aiomysql_quiet_cursor
from .._url import DatabaseURL, connect_kwargs
from ._base import Driver, Result, rooted


def _escape(conn: Any, value: Any) -> str:
    """One parameter as SQL text.

    Binary values are escaped here: aiomysql 0.3 escapes ``bytes`` with a PyMySQL function
    that PyMySQL 1.2 no longer has, and turns ``bytearray`` (what peewee's BlobField gives for
    a model not bound to a MySQL database, i.e. always through a Manager) and ``memoryview``
    into their ``str()``. NaN and the infinities, which MySQL cannot store, fail as DataError
    like other values a column cannot hold (PyMySQL raises ProgrammingError).
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"_binary X'{bytes(value).hex()}'"
    if isinstance(value, float) and not math.isfinite(value):
        raise pymysql.err.DataError(f"{value!r} cannot be stored in MySQL")
    text: str = conn.escape(value)
    return text


_QuietCursor = aiomysql_quiet_cursor(aiomysql.Cursor, _escape)
_QuietSSCursor = aiomysql_quiet_cursor(aiomysql.SSCursor, _escape)


class AiomysqlDriver(Driver):
    backend = "aiomysql"

    async def connect(self, url: DatabaseURL, *, timeout: float, read_only: bool = False) -> Any:
        kwargs = {"charset": "utf8mb4", **connect_kwargs(url)}
        conn = await aiomysql.connect(autocommit=True, connect_timeout=timeout, **kwargs)
        if read_only:
            await self.set_up(conn, self.execute(conn, "SET SESSION TRANSACTION READ ONLY", ()))
        return conn

    async def close(self, conn: Any) -> None:
        await conn.ensure_closed()

    def terminate(self, conn: Any) -> None:
        # conn.close() asks the loop to close the transport, which fails once the loop
        # is closed. Mark the transport closing (so nothing warns later), then close
        # the socket ourselves and detach it.
        aiomysql_detach(conn)

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed)

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.get_transaction_status())

    def begin_statements(self, *, isolation: str | None, read_only: bool) -> list[str]:
        statements = [f"SET TRANSACTION ISOLATION LEVEL {isolation}"] if isolation else []
        statements.append("START TRANSACTION READ ONLY" if read_only else "START TRANSACTION")
        return statements

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Result:
        async with conn.cursor(_QuietCursor) as cur:
            await cur.execute(sql, params or None)
            rows = list(await cur.fetchall()) if cur.description is not None else []
            return Result(rows, cur.description, cur.rowcount, cur.lastrowid)

    async def stream(
        self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Result, None]:
        # An unbuffered cursor reads rows off the socket as they are fetched.
        cur = await conn.cursor(_QuietSSCursor)
        try:
            await cur.execute(sql, params or None)
            while True:
                rows = await cur.fetchmany(chunk_size)
                if not rows:
                    break
                yield Result(list(rows), cur.description)
        finally:
            # Reads the rest of the unbuffered result: rooted, in case this is the loop's
            # finalizer closing an abandoned stream (see rooted()).
            await rooted(cur.close())
