"""Each private name ``aiopeewee_dist._compat`` uses, exercised on the pinned versions.

A release of peewee, peewee-async, aiosqlite or aiomysql that renames one of them fails
here, naming the entry, before it fails somewhere in a query. No server needed.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from typing import Any

import aiomysql
import aiosqlite
import peewee
import pytest

from aiopeewee_dist import _compat
from aiopeewee_dist._drivers import Result


class Author(peewee.Model):
    name = peewee.CharField(index=True)
    serial = peewee.IntegerField(sequence="author_serial_seq")

    class Meta:
        database = peewee.PostgresqlDatabase(None)


class Book(peewee.Model):
    author = peewee.ForeignKeyField(Author)
    title = peewee.CharField()

    class Meta:
        database = Author._meta.database


def test_exception_wrapper_maps_driver_errors_to_peewee_ones() -> None:
    with pytest.raises(peewee.IntegrityError), _compat.exception_wrapper:
        raise sqlite3.IntegrityError("duplicate")


def test_string_field_and_write_query_bases() -> None:
    assert issubclass(peewee.CharField, _compat.StringField)
    assert _compat.StringField.adapt(peewee.CharField(), "x") == "x"
    assert isinstance(Author.update(name="x"), _compat.WriteQuery)
    assert not isinstance(Author.select(), _compat.WriteQuery)


def _samples() -> dict[str, Any]:
    return {
        "ModelSelect": Author.select().where(Author.name == "a"),
        "ModelUpdate": Author.update(name="b"),
        "ModelInsert": Author.insert(name="c", serial=1),
        "RawQuery": Author.raw("SELECT 1"),
        "Field": Author.name,
        "Ordering": Author.name.asc(),
        "Table": peewee.Table("t", ("id",), primary_key="id"),
        "Model": Author(name="d"),
        "Function": peewee.fn.COUNT(Author.id),
        "Cast": Author.serial.cast("text"),
    }


@pytest.mark.parametrize("kind", sorted(_compat.QUERY_ATTRIBUTES))
def test_private_attributes_read_on_the_hot_paths_exist(kind: str) -> None:
    sample = _samples()[kind]
    assert type(sample).__name__ == kind or kind in ("RawQuery", "Model", "Field")
    missing = [name for name in _compat.QUERY_ATTRIBUTES[kind] if not hasattr(sample, name)]
    assert missing == []


def test_a_query_made_to_return_raw_results() -> None:
    query = Author.select(Author.id).dicts().clone()
    _compat.return_raw_results(query)
    result = Result([(1,)], [("id",)])
    assert _compat.cursor_wrapper(query, result) == [result]


def test_cursor_wrapper_builds_peewee_rows() -> None:
    query = Author.select(Author.id, Author.name).dicts()
    result = Result([(1, "ada")], [("id",), ("name",)])
    assert list(_compat.cursor_wrapper(query, result)) == [{"id": 1, "name": "ada"}]


def _sql(node: Any) -> str:
    sql, _ = Author._meta.database.get_sql_context().sql(node).query()
    return str(sql)


def test_schema_statements() -> None:
    schema = peewee.SchemaManager(Author, database=Author._meta.database)
    assert _sql(_compat.create_table(schema, safe=True)).startswith('CREATE TABLE IF NOT EXISTS "author"')
    assert "CREATE INDEX" in _sql(_compat.create_indexes(schema, safe=False)[0])
    assert _sql(_compat.create_sequence(schema, Author.serial)) == (
        'CREATE SEQUENCE IF NOT EXISTS "author_serial_seq"'
    )
    assert _sql(_compat.drop_table(schema, safe=True)) == 'DROP TABLE IF EXISTS "author"'


def test_select_limits_and_aggregation() -> None:
    query = Author.select().limit(5).offset(2)
    _compat.set_limit(query, 1, None)
    assert _sql(query).endswith("LIMIT %s")
    assert not _compat.aggregates(Author.select())
    assert _compat.aggregates(Author.select().group_by(Author.name))
    assert _compat.aggregates(Author.select().distinct())
    assert _compat.aggregates(Author.select().having(Author.name == "a"))


def test_model_instance_internals() -> None:
    author = Author(name="ada", serial=1)
    assert _compat.model_pk(author) is None
    _compat.set_model_pk(author, 7)
    assert author.id == 7
    assert _sql(_compat.model_pk_expr(author)) == '("t1"."id" = %s)'
    assert _compat.prune_fields(author, {"name": "ada", "serial": 1}, [Author.name]) == {"name": "ada"}
    book = Book(author=author, title="t")
    data = {"author": author, "title": "t"}
    _compat.populate_unsaved_relations(book, data)  # the author has a key: nothing to save
    assert data["author"] is author


def test_peewee_async_names_manager_database_overrides() -> None:
    """``manager.database`` implements peewee-async's pool interface and overrides the private
    methods its public API (and ``TransactionTestCase``) goes through."""
    import inspect

    from peewee_async.testing import TransactionTestCase

    for name in ("acquire", "release", "has_acquired_connections", "connect", "create", "close"):
        assert callable(getattr(_compat.PoolBackend, name)), name
    assert isinstance(_compat.PoolBackend.is_connected, property)
    for name in ("_aio_atomic", "_aio_begin"):
        assert callable(getattr(_compat.AioDatabase, name)), name
        assert f'"{name}"' in inspect.getsource(TransactionTestCase), name  # the names it patches
    assert _compat.AioDatabase._allow_sync is False
    assert callable(peewee.Database._connect)
    assert "connect_params" in inspect.getsource(peewee.PostgresqlDatabase._connect)
    assert issubclass(_compat.AioDatabase, peewee.Database)


async def test_aiosqlite_internals() -> None:
    conn = aiosqlite.connect(":memory:")
    _compat.aiosqlite_make_daemon(conn)
    await conn
    try:
        assert _compat.aiosqlite_is_running(conn)
        raw = _compat.aiosqlite_sqlite_connection(conn)
        assert isinstance(raw, sqlite3.Connection)
        assert await _compat.aiosqlite_call_in_thread(
            conn, lambda: raw.execute("SELECT 41 + 1").fetchone()
        ) == (42,)
        _compat.aiosqlite_interrupt(conn)  # nothing running: a no-op, but the attribute is there
    finally:
        await conn.close()
    assert not _compat.aiosqlite_is_running(conn)


def test_aiosqlite_stop_detached_answers_no_loop() -> None:
    # A connection terminated by the pool, whose loop then closes before its thread gets to the
    # stop: the thread must end quietly, with the sqlite3 connection closed.
    async def open_and_terminate() -> Any:
        conn = aiosqlite.connect(":memory:")
        _compat.aiosqlite_make_daemon(conn)
        await conn
        raw = _compat.aiosqlite_sqlite_connection(conn)
        await _compat.aiosqlite_call_in_thread(conn, lambda: time.sleep(0.05))  # keep it busy...
        blocker = threading.Event()
        conn._tx.put_nowait((None, blocker.wait))  # ...and hold the thread past the loop's end
        _compat.aiosqlite_stop_detached(conn)
        assert not _compat.aiosqlite_is_running(conn)
        return conn, raw, blocker

    errors: list[threading.ExceptHookArgs] = []
    previous, threading.excepthook = threading.excepthook, errors.append
    try:
        conn, raw, blocker = asyncio.run(open_and_terminate())  # the loop is closed now
        blocker.set()
        conn._thread.join(5)
    finally:
        threading.excepthook = previous
    assert not conn._thread.is_alive()
    assert errors == []
    with pytest.raises(sqlite3.ProgrammingError):
        raw.execute("SELECT 1")  # closed


async def test_aiomysql_cursor_overrides_and_detach() -> None:
    for base in (aiomysql.Cursor, aiomysql.SSCursor):
        for name in ("_show_warnings", "_escape_args"):
            assert callable(getattr(base, name)), f"aiomysql {base.__name__}.{name} is gone"
        quiet = _compat.aiomysql_quiet_cursor(base, lambda conn, value: repr(value))
        assert issubclass(quiet, base)
        assert quiet(aiomysql.Connection(host="127.0.0.1"))._escape_args((1, "a"), None) == ("1", "'a'")

    conn = aiomysql.Connection(host="127.0.0.1")
    assert conn._writer is None and conn._reader is None

    class Transport:
        def __init__(self) -> None:
            self._sock: socket.socket | None = socket.socket()
            self.closed = False

        def close(self) -> None:
            self.closed = True

    class Writer:
        transport = Transport()

    sock = Writer.transport._sock
    conn._writer = Writer()
    _compat.aiomysql_detach(conn)
    assert conn._writer is None and Writer.transport.closed and Writer.transport._sock is None
    assert sock is not None and sock.fileno() == -1
