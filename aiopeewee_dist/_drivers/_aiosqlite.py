"""aiosqlite adapter: each connection is a thread; one hop per statement."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import aiosqlite

from .._compat import (
    aiosqlite_call_in_thread,
    aiosqlite_interrupt,
    aiosqlite_is_running,
    aiosqlite_make_daemon,
    aiosqlite_sqlite_connection,
    aiosqlite_stop_detached,
)
from .._url import DatabaseURL, connect_kwargs, sqlite_pragmas
from ._base import Driver, Result


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
    try:
        return conn.execute(sql, params)
    except OverflowError as exc:
        # An int beyond 64 bits: refused while binding, as a DataError like the servers do.
        raise sqlite3.DataError(str(exc)) from exc


def _run(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Result:
    cur = _execute(conn, sql, params)
    try:
        rows = cur.fetchall() if cur.description is not None else []
        return Result(rows, cur.description, cur.rowcount, cur.lastrowid)
    finally:
        cur.close()


def _fetch(cur: sqlite3.Cursor, size: int) -> Result:
    return Result(cur.fetchmany(size), cur.description)


async def _call(conn: Any, function: Any, *args: Any) -> Any:
    """Run ``function(*args)`` in the connection's thread; interrupt it if the caller is cancelled.

    Without this a cancelled statement runs on in the thread to its end (aiosqlite does not
    stop it), and a cancelled write transaction keeps SQLite's write lock meanwhile, so every
    other writer fails with "database is locked". ``interrupt()`` stops whatever statement the
    connection runs, and other tasks' statements queue on the same connection (_sharing): the
    lock makes sure the interrupted statement is this caller's, and a call cancelled before
    the thread started it never runs.
    """
    lock = threading.Lock()
    state = [False, False]  # [cancelled, running]

    def guarded() -> Any:
        with lock:
            if state[0]:
                raise sqlite3.OperationalError("interrupted: the caller was cancelled")
            state[1] = True
        try:
            return function(*args)
        finally:
            with lock:
                state[1] = False

    try:
        return await aiosqlite_call_in_thread(conn, guarded)
    except asyncio.CancelledError:
        with lock:
            state[0] = True
            if state[1]:
                aiosqlite_interrupt(conn)
        raise


class AiosqliteDriver(Driver):
    backend = "aiosqlite"
    # The connection lives in its own thread and answers on whichever loop asks.
    loop_bound = False
    # Its thread runs what it is given in turn; _call interrupts only the caller's own statement.
    queues_statements = True

    async def connect(self, url: DatabaseURL, *, timeout: float, read_only: bool = False) -> Any:
        # Each pragma applies per connection; sqlite_pragmas() validated their values.
        pragmas = {"synchronous": "normal", "foreign_keys": "on", **sqlite_pragmas(url)}
        conn = aiosqlite.connect(isolation_level=None, **connect_kwargs(url))
        # aiosqlite's worker thread is not a daemon: a program that ends without closing
        # the manager (Ctrl-C, an uncaught error) would hang at exit waiting for it.
        # Ending it abruptly is what a crash does, and SQLite's journal is made for that.
        aiosqlite_make_daemon(conn)
        await conn
        try:
            if read_only:
                # The journal mode is the writer's business (WAL is kept in the file). Readers
                # opened together on a new file would each take the lock to set it, and the
                # loser's connect fails at once with "database is locked".
                pragmas.pop("journal_mode", None)
                pragmas["query_only"] = "1"
            for key, value in pragmas.items():
                # Through _run, which closes its cursor: an open PRAGMA cursor keeps a
                # statement active and later DDL fails with "database table is locked".
                await self.execute(conn, f"PRAGMA {key} = {value}", ())
        except BaseException:
            await conn.close()
            raise
        return conn

    async def close(self, conn: Any) -> None:
        await conn.close()

    def terminate(self, conn: Any) -> None:
        # Not conn.stop(): the pool terminates connections (a failed ping, a loop change) that
        # nothing awaits, and stop()'s future would outlive a loop that closes meanwhile.
        aiosqlite_stop_detached(conn)

    def is_closed(self, conn: Any) -> bool:
        return not aiosqlite_is_running(conn)

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.in_transaction)

    def begin_statements(self, *, isolation: str | None, read_only: bool) -> list[str]:
        # SQLite transactions are always serializable. IMMEDIATE takes the write lock up
        # front, so two writers queue instead of failing with "database is locked".
        return ["BEGIN" if read_only else "BEGIN IMMEDIATE"]

    async def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Result:
        # aiosqlite's public API costs a thread hop per call (execute, fetch, close);
        # running the whole statement in its thread costs one.
        result: Result = await _call(conn, _run, aiosqlite_sqlite_connection(conn), sql, params)
        return result

    async def stream(
        self, conn: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Result, None]:
        cur = await _call(conn, _execute, aiosqlite_sqlite_connection(conn), sql, params)
        try:
            while True:
                chunk: Result = await _call(conn, _fetch, cur, chunk_size)
                if not chunk.rows:
                    break
                yield chunk
        finally:
            await aiosqlite_call_in_thread(conn, cur.close)
