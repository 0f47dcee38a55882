"""Peewee's synchronous ``playhouse.migrate`` over the library's async connections.

A migration's ``up(migrator)`` is ordinary playhouse.migrate code, which calls the
database synchronously (DDL, and introspection such as ``get_columns`` or MySQL's
``DESCRIBE``). It runs in a worker thread, with a Peewee database of the node's dialect
whose ``execute_sql`` hands each statement to the event loop, where it runs on the
migration's pinned connection of the node. The loop is never blocked, and every
statement goes through the node (its error mapping, ``query_timeout`` and statistics).

In a dry run, statements that change nothing (``SELECT``, ``SHOW``, ``PRAGMA``, ...) still
run, so that introspection answers, and the others are only recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import peewee
from playhouse.migrate import SchemaMigrator

from .. import _context
from .._drivers import Result
from .._node import Node
from .._query import is_write_sql

__all__ = ["Statement", "run_up"]

#: One statement of a dry run: its SQL and parameters.
Statement = tuple[str, tuple[Any, ...]]

_DATABASES: dict[str, type[peewee.Database]] = {
    "postgresql": peewee.PostgresqlDatabase,
    "mysql": peewee.MySQLDatabase,
    "sqlite": peewee.SqliteDatabase,
}


Run = Callable[[str, tuple[Any, ...]], Result]


class _Cursor:
    """A fetched result as Peewee's introspection reads it (some of it iterates the cursor)."""

    def __init__(self, result: Result) -> None:
        self._result = result
        self.description = result.description
        self.rowcount = result.rowcount
        self.lastrowid = result.lastrowid

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    def fetchone(self) -> Any:
        return self._result.fetchone()

    def fetchmany(self, size: int = 1) -> list[Any]:
        return self._result.fetchmany(size)

    def fetchall(self) -> list[Any]:
        return self._result.fetchall()

    def close(self) -> None:
        self._result.close()


def _bridge_class(dialect: str) -> Callable[[Run], peewee.Database]:
    base = _DATABASES[dialect]

    class BridgeDatabase(base):  # type: ignore[valid-type,misc]
        """Runs each statement on the event loop, on the migration's connection."""

        def __init__(self, run: Run) -> None:
            super().__init__(None)
            self._run_statement = run
            self.server_version = (15, 0) if dialect == "postgresql" else None

        def execute_sql(self, sql: str, params: Sequence[Any] | None = None, commit: Any = None) -> _Cursor:
            return _Cursor(self._run_statement(sql, tuple(params or ())))

    return BridgeDatabase


async def _on_connection(binding: _context.Binding, sql: str, params: tuple[Any, ...]) -> Result:
    # A task of its own (run_coroutine_threadsafe): it takes the migration's connection for
    # this statement; the migration's task is waiting for the worker thread meanwhile.
    mine = _context.Binding(binding.node, binding.pool, binding.pc, read_only=False)
    mine.depth = binding.depth
    token = _context.bind(mine)
    try:
        return await binding.node.run_sql(sql, params, write=True)
    finally:
        _context.unbind(token)


async def run_up(
    node: Node,
    up: Callable[[SchemaMigrator], Any],
    *,
    dry_run: bool = False,
    recorded: list[Statement] | None = None,
) -> list[Statement]:
    """Run ``up(migrator)`` against ``node`` on the connection the current task has pinned
    for it; returns the statements that change the schema (in a dry run: not sent).

    ``recorded``: a list to append them to as they come (it holds them also if ``up`` fails).
    """
    binding = _context.bound(node)
    if binding is None:
        raise RuntimeError("run_up() needs a connection pinned with node.connection()")
    loop = asyncio.get_running_loop()
    if recorded is None:
        recorded = []

    def run(sql: str, params: tuple[Any, ...]) -> Result:
        if is_write_sql(sql):
            recorded.append((sql, params))
            if dry_run:
                return Result(rows=[], description=None, rowcount=0)
        future = asyncio.run_coroutine_threadsafe(_on_connection(binding, sql, params), loop)
        return future.result()

    database = _bridge_class(node.dialect)(run)
    migrator = SchemaMigrator.from_database(database)
    await asyncio.to_thread(up, migrator)
    return recorded
