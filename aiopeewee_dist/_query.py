"""Turning Peewee queries into SQL for a node's dialect, and rows back into Peewee results.

Compiling with the node's own database object (not the model's ``Meta.database``)
lets ordinary Peewee models run on any node, whatever they were bound to. Results
are built by Peewee's own cursor wrappers over rows already fetched, so models,
dicts, tuples, namedtuples and insert ids come out exactly as synchronous Peewee
would return them.
"""

from __future__ import annotations

import re
from typing import Any

import peewee

from ._compat import WriteQuery, cursor_wrapper
from ._drivers import Result
from ._guard import guard_model
from ._rows import insert_rows, model_rows

# peewee's type stubs leave out the query internals this module works with.
_pw: Any = peewee

__all__ = ["compile_query", "first_page", "is_locking_select", "is_write", "is_write_sql", "shape_result"]


def first_page(select: Any) -> Any:
    """The query ``get()`` runs: Peewee's ``query.get()`` replaces LIMIT/OFFSET with page 1 of 1."""
    return select.paginate(1, 1)


# Statements that only read. Anything else (including WITH, which may hide a
# data-modifying CTE) counts as a write and goes to the primary.
_READ_SQL = re.compile(r"^\s*(\(\s*)*(SELECT|SHOW|EXPLAIN|DESCRIBE|DESC|VALUES|TABLE|PRAGMA)\b", re.I)
_LOCKING_SQL = re.compile(
    r"\bFOR\s+(UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b|\bLOCK\s+IN\s+SHARE\s+MODE\b", re.I
)


def is_write_sql(sql: str) -> bool:
    return _READ_SQL.match(sql) is None or _LOCKING_SQL.search(sql) is not None


def is_write(query: Any) -> bool:
    """Whether a query may change data (and so must run on a primary)."""
    if isinstance(query, _pw.SelectBase):
        return is_locking_select(query)
    if isinstance(query, (_pw.RawQuery, _pw.ModelRaw)):
        return is_write_sql(query._sql)
    return True


def is_locking_select(query: Any) -> bool:
    """``SELECT ... FOR UPDATE / FOR SHARE`` locks rows, so it belongs on the primary."""
    return bool(getattr(query, "_for_update", None))


def _prepare(query: Any, database: Any) -> Any:
    """Apply Peewee's implicit ``RETURNING <pk>`` for inserts as the node's dialect wants it.

    Peewee decides this from the model's own database; the node's may differ (a model
    bound to SQLite running on PostgreSQL), so it is decided again here, on a clone.
    """
    if not isinstance(query, _pw.Insert) or query._return_cursor:
        return query
    query = query.clone()
    query._returning = None
    if not query._as_rowcount and database.returning_clause:
        model = getattr(query, "model", None)
        if model is not None:
            if model._meta.primary_key is not False:
                query._returning = model._meta.get_primary_keys()
        elif query.table._primary_key:
            query._returning = (query.table.primary_key,)
        if query._returning:
            query._row_type = _pw.ROW.TUPLE
    return query


def _guard(query: Any) -> None:
    # Every model a manager runs gets the sync guard (once): its lazy relations and sync
    # calls then say what to await instead of "Query must be bound to a database".
    model = getattr(query, "model", None)
    if model is not None:
        guard_model(model)


def compile_query(query: Any, database: Any) -> tuple[Any, str, tuple[Any, ...]]:
    """``(query as executed, sql, params)`` for ``database``'s dialect."""
    _guard(query)
    query = _prepare(query, database)
    sql, params = database.get_sql_context().sql(query).query()
    return query, sql, tuple(params)


def shape_result(query: Any, database: Any, result: Result) -> Any:
    """What synchronous Peewee's ``query.execute()`` would return, materialised.

    Selects give a list of rows in the query's row type; inserts give the new
    primary key (a list of keys for multi-row inserts where the server returns
    them); updates and deletes give the row count, or rows with ``.returning()``.
    """
    _guard(query)
    if isinstance(query, _pw.Insert):
        if query._return_cursor:
            return list(cursor_wrapper(query, result))
        if query._as_rowcount:
            return result.rowcount
        if query._returning:
            rows = insert_rows(query, result)
            if rows is None:
                rows = list(cursor_wrapper(query, result))
            if query._query_type == _pw.Insert.SIMPLE:
                return database.last_insert_id(rows, query._query_type)
            return rows
        return result.lastrowid
    if isinstance(query, WriteQuery):
        if query._return_cursor:
            return list(cursor_wrapper(query, result))
        return result.rowcount
    if isinstance(query, (_pw.SelectBase, _pw.RawQuery, _pw.ModelRaw)):
        built = model_rows(query, result)
        return built if built is not None else list(cursor_wrapper(query, result))
    return result.rows if result.description is not None else result.rowcount
