"""Every use of another library's private names, in one place, by library.

peewee, peewee-async and the drivers are pinned (pyproject.toml); a new release may rename
what is used here. ``tests/test_compat.py`` exercises each entry on the pinned versions, so
such a release fails there first, naming the entry, rather than somewhere in a query.

Sections: peewee, peewee-async, aiosqlite, aiomysql, asyncpg. Keep additions in their library's
section (other work adds accessors here too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import peewee
from peewee_async.databases import AioDatabase

# peewee-async's pool interface: manager.database's pool_backend implements it over the node's
# own pool (peewee_async.testing.TransactionTestCase acquires from it).
from peewee_async.pool import PoolBackend

__all__ = [
    "QUERY_ATTRIBUTES",
    "AioDatabase",
    "PeeweeAsyncHooks",
    "PoolBackend",
    "StringField",
    "WriteQuery",
    "aggregates",
    "aiomysql_detach",
    "aiomysql_quiet_cursor",
    "aiosqlite_call_in_thread",
    "aiosqlite_interrupt",
    "aiosqlite_is_running",
    "aiosqlite_make_daemon",
    "aiosqlite_sqlite_connection",
    "aiosqlite_stop_detached",
    "asyncpg_attributes",
    "asyncpg_close_portal",
    "asyncpg_close_socket",
    "asyncpg_cursor",
    "asyncpg_run",
    "asyncpg_statement_is_named",
    "create_indexes",
    "create_sequence",
    "create_table",
    "cursor_wrapper",
    "drop_table",
    "exception_wrapper",
    "model_database",
    "model_pk",
    "model_pk_expr",
    "populate_unsaved_relations",
    "prune_fields",
    "related_models",
    "return_raw_results",
    "set_limit",
    "set_model_database",
    "set_model_pk",
]

# -- peewee ------------------------------------------------------------------------------

_pw: Any = peewee

#: Maps driver exceptions to Peewee's (IntegrityError, ...).
exception_wrapper: Any = _pw.__exception_wrapper__
#: The base of CharField/TextField, whose ``adapt`` returns a str as it is.
StringField: Any = _pw._StringField
#: The base of UPDATE / DELETE / INSERT queries.
WriteQuery: Any = _pw._WriteQuery

#: Private attributes of Peewee's query, field and model objects read directly on the hot
#: paths (``_query``, ``_rows``, ``_shapes``, ``_templates``, ``_shortcuts``): an accessor
#: call per attribute would cost more than the statement. The test checks each one exists.
QUERY_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "ModelSelect": (
        "_returning",
        "_where",
        "_order_by",
        "_limit",
        "_offset",
        "_joins",
        "_from_list",
        "_row_type",
        "_is_default",
        "_group_by",
        "_having",
        "_windows",
        "_distinct",
        "_simple_distinct",
        "_for_update",
    ),
    "ModelUpdate": ("_update", "_where", "_returning", "_return_cursor"),
    "ModelInsert": (
        "_returning",
        "_return_cursor",
        "_as_rowcount",
        "_row_type",
        "_query_type",
        "_insert",  # sharding: the rows of an INSERT, for their shard keys
        "_columns",
    ),
    "RawQuery": ("_sql",),
    "Field": ("_coerce",),
    "Ordering": ("_coerce", "_converter"),
    "Table": ("_primary_key",),
    "Model": ("_meta", "__data__", "_dirty", "__rel__"),
    # sharding: an aggregate's FILTER and a cast's target type, read by the fan-out planner.
    "Function": ("_filter",),
    "Cast": ("_cast",),
}


def cursor_wrapper(query: Any, cursor: Any) -> Any:
    """The query's own wrapper over a cursor: rows as models, dicts, tuples, ..."""
    return query._get_cursor_wrapper(cursor)


def return_raw_results(query: Any) -> None:
    """Make ``query`` (a clone the caller owns) return ``[cursor]``, the driver's raw result,
    instead of shaped rows: a fan-out merges raw rows, then shapes them once."""
    query._get_cursor_wrapper = lambda cursor: [cursor]


def set_limit(query: Any, limit: int | None, offset: int | None) -> None:
    """Set a select's LIMIT and OFFSET in place (on a clone the caller owns)."""
    query._limit = limit
    query._offset = offset


def aggregates(query: Any) -> bool:
    """Whether a select groups, filters groups, uses windows or DISTINCT (so COUNT(*) must
    wrap its own columns rather than ``SELECT 1``)."""
    return (
        query._having is not None
        or query._group_by is not None
        or query._windows is not None
        or query._distinct is not None
        or query._simple_distinct is True
    )


def create_table(schema: Any, *, safe: bool) -> Any:
    return schema._create_table(safe=safe)


def create_indexes(schema: Any, *, safe: bool) -> list[Any]:
    return list(schema._create_indexes(safe=safe))


def create_sequence(schema: Any, field: Any) -> Any:
    """``CREATE SEQUENCE IF NOT EXISTS`` for a field with a sequence."""
    create = schema._create_context().literal("CREATE SEQUENCE IF NOT EXISTS ")
    return create.sql(schema._sequence_for_field(field))


def drop_table(schema: Any, *, safe: bool) -> Any:
    return schema._drop_table(safe=safe)


def prune_fields(instance: Any, field_dict: dict[str, Any], only: Any) -> dict[str, Any]:
    pruned: dict[str, Any] = instance._prune_fields(field_dict, only)
    return pruned


def populate_unsaved_relations(instance: Any, field_dict: dict[str, Any]) -> None:
    instance._populate_unsaved_relations(field_dict)


def model_pk(instance: Any) -> Any:
    return instance._pk


def set_model_pk(instance: Any, value: Any) -> None:
    instance._pk = value


def model_pk_expr(instance: Any) -> Any:
    return instance._pk_expr()


def model_database(model: Any) -> Any:
    """The database a model class is bound to (``Meta.database``; None when unbound)."""
    return model._meta.database


def set_model_database(model: Any, database: Any) -> None:
    """Bind one model class (only it, not its relations) to ``database``, without running the
    fields' database hooks: they configured themselves for "no database" (a BlobField's bytes
    type, a JSONField's helpers) and must stay so for a stand-in that is no real database."""
    meta = model._meta
    hooks, meta._db_hooks = meta._db_hooks, []
    try:
        meta.set_database(database)
    finally:
        meta._db_hooks = hooks


def related_models(model: Any) -> list[Any]:
    """The models a model points at (foreign keys) and that point at it (back-references)."""
    meta = model._meta
    return [*meta.refs.values(), *meta.backrefs.values()]


# -- peewee-async ------------------------------------------------------------------------


# peewee-async 2.1 sends its public transaction API through private methods:
# ``aio_atomic()``/``aio_transaction()`` call ``AioDatabase._aio_atomic`` and
# ``aio_begin()``/``aio_savepoint()`` call ``_aio_begin``; and its ``testing.TransactionTestCase``
# disables transactions inside a test by patching exactly those two names on the database
# object. A database that must behave like peewee-async's therefore overrides those names, and
# nothing else may: PeeweeAsyncHooks does, and forwards to public-named methods the database
# class implements. Likewise peewee's synchronous connection (``allow_sync()``) is opened by the
# private ``Database._connect``, and the flag ``allow_sync()`` sets is ``AioDatabase._allow_sync``.


class PeeweeAsyncHooks:
    """Mixin placed before a peewee-async database class in the bases (see the module doc)."""

    # -- what the database class implements -----------------------------------------------

    def atomic_block(self, *, savepoint: bool) -> AbstractAsyncContextManager[None]:
        """``aio_atomic()`` (``savepoint=True``: nests) or ``aio_transaction()`` (refuses to)."""
        raise NotImplementedError

    async def begin_block(self, *, savepoint: bool) -> Any:
        """``aio_begin()`` / ``aio_savepoint()``: a started ``peewee_async.Transaction``."""
        raise NotImplementedError

    def sync_connect_params(self) -> dict[str, Any]:
        """Keyword arguments for peewee's synchronous ``connect`` (credentials included)."""
        raise NotImplementedError

    def sync_target(self) -> str:
        """What the synchronous connection connects to, for the refusal message."""
        raise NotImplementedError

    # -- the private names peewee-async and peewee call -----------------------------------

    def _aio_atomic(self, use_savepoint: bool = False) -> AbstractAsyncContextManager[None]:
        return self.atomic_block(savepoint=use_savepoint)

    async def _aio_begin(self, use_savepoint: bool = False) -> Any:
        return await self.begin_block(savepoint=use_savepoint)

    @property
    def sync_allowed(self) -> bool:
        """Whether ``allow_sync()`` (or ``set_allow_sync(True)``) lets synchronous queries run."""
        return bool(cast(Any, self)._allow_sync)

    def execute_sql(self, *args: Any, **kwargs: Any) -> Any:
        # peewee-async checks the flag with ``assert``, which ``python -O`` removes: a
        # synchronous query would then block the event loop silently. Same exception type
        # and advice, kept under -O.
        if not self.sync_allowed:
            raise AssertionError(
                f"Error, sync query is not allowed on {self.sync_target()}! Call the `.set_allow_sync()` "
                "or use the `.allow_sync()` context manager, or await the query instead."
            )
        return cast(Any, super()).execute_sql(*args, **kwargs)

    def _connect(self) -> Any:
        # peewee's own _connect for the dialect (the driver, autocommit, encodings, hstore), given
        # the node's credentials only for the call: the database object does not keep them.
        database = cast(Any, self)
        kept = database.connect_params
        database.connect_params = self.sync_connect_params()
        try:
            return cast(Any, super())._connect()
        finally:
            database.connect_params = kept


# -- aiosqlite ---------------------------------------------------------------------------


def aiosqlite_make_daemon(conn: Any) -> None:
    """Make the connection's worker thread a daemon (see the aiosqlite driver)."""
    conn._thread.daemon = True


async def aiosqlite_call_in_thread(conn: Any, function: Callable[[], Any]) -> Any:
    """Run ``function()`` in the connection's thread, one hop (the public API costs one per call)."""
    return await conn._execute(function)


def aiosqlite_sqlite_connection(conn: Any) -> Any:
    """The ``sqlite3.Connection`` inside (used from the connection's own thread only)."""
    return conn._conn


def aiosqlite_interrupt(conn: Any) -> None:
    """Interrupt the statement running in the connection's thread (safe from any thread)."""
    raw = conn._connection
    if raw is not None:
        raw.interrupt()


def aiosqlite_is_running(conn: Any) -> bool:
    return bool(conn._running)


def aiosqlite_stop_detached(conn: Any) -> None:
    """Close the connection and end its thread without waiting, as ``conn.stop()`` does, but
    with no future to answer: ``stop()`` binds one to the running loop, and a thread that gets
    to it after that loop closed dies with "Event loop is closed"."""
    from aiosqlite.core import _STOP_RUNNING_SENTINEL  # the driver is an optional extra

    conn._running = False

    def close_and_stop() -> object:
        raw = conn._connection
        if raw is not None:
            raw.close()
            conn._connection = None
        return _STOP_RUNNING_SENTINEL

    conn._tx.put_nowait((None, close_and_stop))


# -- aiomysql ----------------------------------------------------------------------------


def aiomysql_detach(conn: Any) -> None:
    """Close the connection's socket without the event loop (which may be closed) and detach it."""
    writer = conn._writer
    if writer is not None:
        transport = writer.transport
        with contextlib.suppress(RuntimeError):  # loop closed: the socket is closed below
            transport.close()
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            transport._sock = None
            sock.close()
    conn._writer = None
    conn._reader = None


def aiomysql_quiet_cursor(base: type[Any], escape: Callable[[Any, Any], str]) -> type[Any]:
    """A subclass of aiomysql cursor ``base`` without the SHOW WARNINGS round trip, escaping
    each parameter with ``escape(conn, value)``."""

    class QuietCursor(base):  # type: ignore[misc]
        # aiomysql answers every server note (e.g. DROP TABLE IF EXISTS on a missing table)
        # with an extra SHOW WARNINGS round trip and a Python warning; PyMySQL dropped that.
        async def _show_warnings(self, conn: Any) -> None:
            return None

        def _escape_args(self, args: Any, conn: Any) -> Any:
            if isinstance(args, (tuple, list)):
                return tuple(escape(conn, arg) for arg in args)
            return super()._escape_args(args, conn)

    QuietCursor.__name__ = QuietCursor.__qualname__ = f"Quiet{base.__name__}"
    return QuietCursor


# -- asyncpg ---------------------------------------------------------------------------------
# asyncpg's public API gives rows (fetch) or a status line (execute), never both, and never the
# statement's column names; Peewee needs all three (rows, rowcount, description). The private
# Connection.__execute returns ((rows, status, completed), statement) from one round trip with
# the connection's statement cache, exactly as fetch() runs it.


async def asyncpg_run(conn: Any, query: str, args: Sequence[Any]) -> tuple[list[Any], bytes, Any]:
    """Run ``query`` ($n placeholders) as ``fetch()`` would: ``(records, status line, statement)``.

    A statement in the connection's cache is bound and executed directly: ``fetch()``'s last
    protocol call without its three coroutine layers and per-call closure (a tenth of a short
    statement's client time). Schema changes are handled as ``Connection._do_execute`` does."""
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
            except Exception as exc:
                # Imported here, off the statement's path (the driver is an optional extra).
                from asyncpg.exceptions import InvalidCachedStatementError, OutdatedSchemaCacheError

                if isinstance(exc, OutdatedSchemaCacheError):
                    await conn.reload_schema_state()
                    raise
                if not isinstance(exc, InvalidCachedStatementError):
                    raise
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
