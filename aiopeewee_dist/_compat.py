"""Every access to a private attribute of a driver, in one place.

When a driver release renames one of these, this is the only module to change, and
``tests/test_asyncpg_driver.py`` (which runs each accessor against the installed version)
says which.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

__all__ = [
    "asyncpg_attributes",
    "asyncpg_close_portal",
    "asyncpg_close_socket",
    "asyncpg_cursor",
    "asyncpg_run",
    "asyncpg_statement_is_named",
]

# -- asyncpg ---------------------------------------------------------------------------------
# asyncpg's public API gives rows (fetch) or a status line (execute), never both, and never the
# statement's column names; Peewee needs all three (rows, rowcount, description). The private
# Connection.__execute returns ((rows, status, completed), statement) from one round trip with
# the connection's statement cache, exactly as fetch() runs it.


async def asyncpg_run(conn: Any, query: str, args: Sequence[Any]) -> tuple[list[Any], bytes, Any]:
    """Run ``query`` ($n placeholders) as ``fetch()`` would: ``(records, status line, statement)``.

    A statement already in the connection's cache is bound and executed directly: the same
    protocol call ``fetch()`` ends in, without the three coroutine layers and the per-call
    closure around it (a tenth of a short statement's client time). Schema changes are handled
    as ``Connection._do_execute`` handles them.
    """
    from asyncpg.exceptions import InvalidCachedStatementError, OutdatedSchemaCacheError

    protocol = conn._protocol
    stmt = None
    if protocol is not None and not conn._aborted:
        stmt = conn._stmt_cache.get((query, protocol.get_record_class(), False))
    # The exclusive section is what makes fetch() refuse a second concurrent call on one connection.
    with conn._stmt_exclusive_section:
        if stmt is not None:
            try:
                rows, status, _ = await protocol.bind_execute(
                    state=stmt, args=args, portal_name="", limit=0, return_extra=True, timeout=None
                )
                return rows, status, stmt
            except OutdatedSchemaCacheError:
                await conn.reload_schema_state()
                raise
            except InvalidCachedStatementError:
                # The statement's result type changed (ALTER TABLE, search_path): outside a
                # transaction, prepare it again below, once.
                conn._drop_global_statement_cache()
                if protocol.is_in_transaction():
                    raise
        (rows, status, _), stmt = await conn._Connection__execute(query, args, 0, None, return_status=True)
    return rows, status, stmt


def asyncpg_attributes(stmt: Any) -> Sequence[Any]:
    """The statement's result columns as asyncpg ``Attribute(name, type)`` tuples (empty: none)."""
    attributes: Sequence[Any] = stmt._get_attributes()
    return attributes


def asyncpg_statement_is_named(stmt: Any) -> bool:
    """Whether the statement is a named (cached, reused) prepared statement."""
    return bool(stmt.name)


async def asyncpg_cursor(conn: Any, query: str, args: Sequence[Any]) -> tuple[Any, Any]:
    """An open cursor (a bound portal) over ``query``, and its statement.

    ``Connection.cursor()`` always prepares a *named* statement when the statement cache is off,
    which a transaction-mode pooler cannot carry; this takes the statement as ``fetch()`` does
    (cached, or the unnamed one when the cache is off).
    """
    from asyncpg.cursor import Cursor

    stmt = await conn._get_statement(query, None)
    cursor = Cursor(conn, query, stmt, args, None)
    await cursor._init(None)
    return cursor, stmt


async def asyncpg_close_portal(cursor: Any) -> None:
    """Close the cursor's portal (it would otherwise live, with its snapshot, to the transaction's end)."""
    if cursor._portal_name:
        await cursor._close_portal(None)


def asyncpg_close_socket(conn: Any) -> None:
    """Close a connection whose event loop is closed: asyncpg's terminate() needs the loop."""
    transport: Any = getattr(conn, "_transport", None)
    sock = getattr(transport, "_sock", None)
    if transport is not None and sock is not None:
        transport._sock = None
        with contextlib.suppress(OSError):
            sock.close()
    conn._aborted = True
    conn._protocol = None
    with contextlib.suppress(RuntimeError):
        conn._cleanup()
