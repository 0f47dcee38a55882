"""asyncpg adapter: binary protocol, server-side binding, asyncpg's prepared-statement cache.

Peewee's PostgreSQL dialect writes ``%s`` placeholders; asyncpg wants ``$1, $2, ...``. Each
statement text is converted once (``dollar_sql``, cached), with psycopg's rules: ``%%`` is a
literal ``%``, and text run without parameters is sent as it is.

Statements that never return rows and take no parameters (``BEGIN``, ``COMMIT``, ``SAVEPOINT``,
``SET``, DDL) go through the simple query protocol: one round trip, nothing prepared or cached.
Everything else runs as asyncpg's ``fetch()`` does, on the connection's statement cache (or the
unnamed statement when ``statement_cache_size=0``).

Results are what synchronous Peewee gets from psycopg: tuples, a DB-API description, the
command's row count; ``json``/``jsonb`` decoded with ``json.loads``, ``uuid`` as ``uuid.UUID``,
``real`` from its text and ``pg_lsn`` as text (asyncpg's defaults: text, its own UUID subclass,
the binary float widened, an int).
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import asyncpg

from .. import _compat
from .._url import DatabaseURL, connect_kwargs
from ._base import Result
from ._pgerrors import translate
from ._postgres import PostgresDriver

__all__ = ["AsyncpgDriver", "dollar_sql"]

_PLACEHOLDER = re.compile(r"%(?:(%)|([sbt])|(\([^)]*\)[sbt])|(.?))", re.S)
_CONVERTED: dict[str, str] = {}
_DESCRIPTIONS: dict[Any, list[tuple[Any, ...]] | None] = {}
_MAX_CACHED = 4096
# Statements that take no parameters and return no rows: the simple query protocol runs them
# in one round trip (several statements too) without preparing anything.
_NO_ROWS = re.compile(
    r"\s*(BEGIN|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|SET|RESET|CREATE|DROP|ALTER|"
    r"TRUNCATE|GRANT|REVOKE|COMMENT|LOCK|DISCARD|DEALLOCATE|CHECKPOINT|VACUUM|CLOSE|LISTEN|"
    r"UNLISTEN|NOTIFY|PREPARE\s+TRANSACTION|COMMIT\s+PREPARED|ROLLBACK\s+PREPARED)\b",
    re.I,
)
_BAD_ARGUMENT = re.compile(r"invalid input for query argument \$([0-9]+)")
# The cast psycopg's client-side literal would have given a value in an untyped position
# (first match wins: bool is an int, datetime a date).
_CASTS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "bigint"),
    (float, "numeric"),  # psycopg writes 2.5, which the server reads as numeric
    (decimal.Decimal, "numeric"),
    (datetime.datetime, "timestamp"),
    (datetime.date, "date"),
    (datetime.time, "time"),
    (datetime.timedelta, "interval"),
)


def dollar_sql(sql: str) -> str:
    """``sql`` with psycopg-style ``%s`` placeholders as ``$1, $2, ...`` (cached per text)."""
    converted = _CONVERTED.get(sql)
    if converted is None:
        counter = iter(range(1, 1 << 16))

        def replace(match: re.Match[str]) -> str:
            if match.group(1):
                return "%"
            if match.group(2):
                return f"${next(counter)}"
            raise asyncpg.InterfaceError(
                f"only %s placeholders are supported with parameters, got {match.group(0)!r}"
                " (write a literal % as %%)"
            )

        converted = _PLACEHOLDER.sub(replace, sql)
        if len(_CONVERTED) >= _MAX_CACHED:
            _CONVERTED.clear()
        _CONVERTED[sql] = converted
    return converted


def _json_encode(value: Any) -> str:
    # Peewee's JSONField gives JSON text already (its fallback Json node dumps the value).
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode()
    return json.dumps(getattr(value, "obj", value))


def _uuid_encode(value: Any) -> bytes:
    if isinstance(value, uuid.UUID):
        return value.bytes
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return bytes(value)
    return uuid.UUID(str(value)).bytes


def _float_text(value: Any) -> str:
    return repr(float(value))


def _uuid_decode(data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=data)


def _rowcount(status: bytes | str) -> int:
    """The row count at the end of a command tag (``b"UPDATE 3"``), -1 for tags without one."""
    if isinstance(status, str):  # conn.execute() gives text
        status = status.encode()
    tail = status[status.rfind(b" ") + 1 :]
    return int(tail) if tail.isdigit() else -1


def _description(stmt: Any) -> list[tuple[Any, ...]] | None:
    description = _DESCRIPTIONS.get(stmt)
    if description is None:
        attributes = _compat.asyncpg_attributes(stmt)
        description = (
            [(a.name, a.type.oid, None, None, None, None, None) for a in attributes] if attributes else None
        )
        # Only a cached statement comes back; the unnamed one is new on every call.
        if _compat.asyncpg_statement_is_named(stmt):
            if len(_DESCRIPTIONS) >= _MAX_CACHED:
                _DESCRIPTIONS.clear()
            _DESCRIPTIONS[stmt] = description
    return description


def _with_casts(query: str, params: Sequence[Any], position: int) -> str | None:
    """``query`` with ``$position`` cast to its value's type, or None if there is no such cast."""
    value = params[position - 1]
    cast = next((c for t, c in _CASTS if isinstance(value, t)), None)
    if cast is None:
        return None
    if cast == "timestamp" and value.tzinfo is not None:
        cast = "timestamptz"
    return re.sub(rf"\${position}(?![0-9])", f"(${position}::{cast})", query)


class AsyncpgDriver(PostgresDriver):
    backend = "asyncpg"

    async def connect(self, url: DatabaseURL, *, timeout: float, read_only: bool = False) -> Any:
        conn = await asyncpg.connect(timeout=timeout, command_timeout=None, **connect_kwargs(url))
        # Builtin types: no round trip (asyncpg knows their OIDs).
        for name in ("json", "jsonb"):
            await conn.set_type_codec(
                name, encoder=_json_encode, decoder=json.loads, schema="pg_catalog", format="text"
            )
        await conn.set_type_codec(
            "uuid", encoder=_uuid_encode, decoder=_uuid_decode, schema="pg_catalog", format="binary"
        )
        # psycopg reads a real (Peewee's FloatField) from its text, '0.1', as 0.1; asyncpg's binary
        # float4 widened to a double gives 0.10000000149011612.
        await conn.set_type_codec(
            "float4", encoder=_float_text, decoder=float, schema="pg_catalog", format="text"
        )
        # asyncpg gives an LSN as an int; psycopg (and the replication checks) its text, '0/16B3748'.
        await conn.set_type_codec("pg_lsn", encoder=str, decoder=str, schema="pg_catalog", format="text")
        if read_only:
            await self.set_up(conn, self.set_read_only(conn))
        return conn

    async def close(self, conn: Any) -> None:
        # asyncpg's close() waits for the server to hang up, over several loop iterations: a
        # close the pool starts while the loop is shutting down (a cancelled health probe's
        # connection) was then left half done, its transport unclosed. Closing the socket now
        # is as clean for an idle session (the server ends it silently on EOF), and the pool
        # only closes connections that are idle or already broken.
        self.terminate(conn)

    def terminate(self, conn: Any) -> None:
        try:
            conn.terminate()
        except RuntimeError:  # the loop is closed: close the socket ourselves
            _compat.asyncpg_close_socket(conn)

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.is_closed())

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.is_in_transaction())

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Result:
        try:
            if not params:
                if _NO_ROWS.match(sql):
                    return Result([], None, _rowcount(await conn.execute(sql)))
                query = sql
            else:
                query = _CONVERTED.get(sql) or dollar_sql(sql)
            try:
                rows, status, stmt = await _compat.asyncpg_run(conn, query, params)
            except asyncpg.DataError as exc:
                rows, status, stmt = await self._retry_cast(conn, query, params, exc)
            except asyncpg.PostgresSyntaxError as exc:
                if params or "multiple commands" not in str(exc):
                    raise
                # Several statements (raw_sql(multiple_statements=True)) cannot be prepared: the
                # simple query protocol runs them all, returning the last one's status only.
                return Result([], None, _rowcount(await conn.execute(sql)))
        except asyncpg.PostgresError as exc:
            raise translate(exc) from exc
        return Result(list(map(tuple, rows)), _description(stmt), _rowcount(status))

    async def _retry_cast(
        self, conn: Any, query: str, params: Sequence[Any], exc: asyncpg.DataError
    ) -> tuple[list[Any], bytes, Any]:
        """Run again with casts where asyncpg refused a value for a parameter the server typed as
        text (an untyped ``%s``, e.g. ``SELECT %s``): psycopg's client-side literal would have
        given it the value's own type. The refusal happens before anything is sent."""
        for _ in params:
            match = _BAD_ARGUMENT.match(str(exc))
            cast_query = None if match is None else _with_casts(query, params, int(match.group(1)))
            if cast_query is None:
                raise exc
            query = cast_query
            try:
                return await _compat.asyncpg_run(conn, query, params)
            except asyncpg.DataError as again:
                exc = again
        raise exc

    async def stream(
        self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Result, None]:
        # A portal (asyncpg's cursor) only lives inside a transaction: open one if none is. Rows
        # come in binary, chunk_size per round trip, with no DECLARE/FETCH text to prepare.
        own_tx = not conn.is_in_transaction()
        if own_tx:
            await conn.execute("BEGIN")
        cursor = None
        try:
            try:
                cursor, stmt = await _compat.asyncpg_cursor(conn, dollar_sql(sql) if params else sql, params)
                description = _description(stmt)
                while True:
                    rows = await cursor.fetch(chunk_size)
                    if not rows:
                        break
                    yield Result([tuple(row) for row in rows], description)
            except asyncpg.PostgresError as exc:
                raise translate(exc) from exc
        finally:
            if not conn.is_closed():
                if own_tx:
                    # COMMIT also ends a failed transaction (as a rollback) and closes the portal.
                    await conn.execute("COMMIT")
                elif cursor is not None and conn.is_in_transaction():
                    await _compat.asyncpg_close_portal(cursor)
