"""Compiled SQL for simple queries given to ``execute()``, cached by their shape.

``execute(Item.select().where(Item.x == 1).order_by(Item.id).limit(100))`` or
``execute(Item.update(value=Item.value + 1).where(Item.id == pk))`` is compiled by Peewee
on every call, although only the values change between calls. Such a query is reduced to
a *shape* (its model, fields, operators and where the values go) plus the values as
Peewee's compiler would bind them; the SQL of a shape is compiled once per node, with
placeholder nodes in place of the values (see :mod:`._templates`).

Only a small grammar has a shape, and every attribute of the query object is checked
against it, so a query using anything else (joins, subqueries, functions, IN, IS NULL,
DISTINCT, GROUP BY, FOR UPDATE, RETURNING, CTEs, aliases, fields of other models, an
attribute a future Peewee adds, a query subclass) is compiled by Peewee as before:

- ``Model.select(fields of Model...)`` with optional ``where``, ``order_by`` (fields, ``.asc()``
  / ``.desc()``) and positive integer ``limit`` / ``offset``;
- ``Model.update(field=value or expression)`` with optional ``where``;
- expressions: ``field OP value``, ``field OP field``, and AND/OR of expressions, with OP one
  of ``= != < <= > >= + - *``; values that are not None, lists, nodes or model instances.
"""

from __future__ import annotations

from typing import Any

import peewee

from ._cache import LRUCache
from ._query import compile_query
from ._templates import Template, fingerprint, new_marker, still_current

__all__ = ["Shape", "shape_of", "statement_for"]

# peewee's type stubs leave out the query internals used here.
_pw: Any = peewee

_MODEL_SELECT = _pw.ModelSelect
_MODEL_UPDATE = _pw.ModelUpdate
_EXPRESSION = _pw.Expression
_ORDERING = _pw.Ordering
_FIELD = _pw.Field
_NODE = _pw.Node
_MULTI = _pw.multi_types
_is_model = _pw.is_model
_OP = _pw.OP
_OPS = frozenset(
    (_OP.EQ, _OP.NE, _OP.LT, _OP.LTE, _OP.GT, _OP.GTE, _OP.AND, _OP.OR, _OP.ADD, _OP.SUB, _OP.MUL)
)
_EXPRESSION_ATTRS = frozenset(("lhs", "op", "rhs", "flat"))
_ORDERING_ATTRS = frozenset(("node", "_coerce", "_converter", "direction", "collation", "nulls"))
# Attributes that do not change the SQL (result shaping, caching, binding, the model).
_NEUTRAL = ("model", "_database", "_cursor_wrapper", "_row_type", "_constructor")
# Attributes that must be unset for a shape (each would change the SQL).
_SELECT_UNSET = (
    "_cte_list",
    "_alias",
    "_group_by",
    "_having",
    "_windows",
    "_for_update",
    "_lateral",
    "_distinct",
    "_simple_distinct",
)
_SELECT_ATTRS = frozenset(
    (
        *_NEUTRAL,
        *_SELECT_UNSET,
        "_join_ctx",
        "_joins",
        "_is_default",
        "_where",
        "_order_by",
        "_limit",
        "_offset",
        "_hash",
        "_from_list",
        "_returning",
    )
)
_UPDATE_UNSET = ("_returning", "_order_by", "_limit", "_offset", "_cte_list", "_from")
_UPDATE_ATTRS = frozenset((*_NEUTRAL, *_UPDATE_UNSET, "table", "_return_cursor", "_where", "_update"))


class _NoShape(Exception):
    pass


class Shape:
    """A query reduced to its shape (``key``) and its values as Peewee would bind them."""

    __slots__ = ("key", "model", "refs", "values")

    def __init__(self, model: Any, key: tuple[Any, ...], values: list[Any], refs: list[Any]) -> None:
        self.model = model
        self.key = key
        self.values = values
        self.refs = refs  # the nodes whose ids are in the key: a template keeps them alive


class _Walk:
    """One pass over a query: the shape key and values, and (``build``) a copy with markers."""

    __slots__ = ("key", "markers", "model", "refs", "values")

    def __init__(self, model: Any, build: bool) -> None:
        self.model = model
        self.key: list[Any] = [model]
        self.values: list[Any] = []
        self.refs: list[Any] = []
        self.markers: list[Any] | None = [] if build else None

    def literal(self, value: Any, converter: Any) -> Any:
        if value is None or isinstance(value, (_NODE, *_MULTI)) or _is_model(value):
            raise _NoShape
        if converter is not None:
            value = converter(value)
            if isinstance(value, _NODE) or _is_model(value):
                raise _NoShape
        self.values.append(value)
        self.key.append("?")
        if self.markers is None:
            return None
        marker = new_marker()
        self.markers.append(marker)
        return marker

    def field(self, node: Any) -> Any:
        if not isinstance(node, _FIELD) or self.model._meta.fields.get(node.name) is not node:
            raise _NoShape
        self.key.append(id(node))
        self.refs.append(node)
        return node

    def expression(self, expr: Any) -> Any:
        if type(expr) is not _EXPRESSION or expr.op not in _OPS or vars(expr).keys() != _EXPRESSION_ATTRS:
            raise _NoShape
        self.key.append((expr.op, expr.flat))
        lhs = expr.lhs
        if type(lhs) is _EXPRESSION:
            new_lhs = self.expression(lhs)
            converter = None
        else:
            new_lhs = self.field(lhs)
            # Peewee converts a value with the field on its left, when that field coerces.
            converter = lhs.db_value if lhs._coerce else None
        rhs = expr.rhs
        if type(rhs) is _EXPRESSION:
            new_rhs = self.expression(rhs)
        elif isinstance(rhs, _FIELD):
            new_rhs = self.field(rhs)
        else:
            new_rhs = self.literal(rhs, converter)
        self.key.append(")")
        if self.markers is None:
            return None
        return _EXPRESSION(new_lhs, expr.op, new_rhs, flat=expr.flat)

    def ordering(self, item: Any) -> None:
        if isinstance(item, _FIELD):
            self.field(item)
            return
        if (
            type(item) is not _ORDERING
            or vars(item).keys() != _ORDERING_ATTRS
            or item.collation is not None
            or item.nulls is not None
            or item._converter is not None
        ):
            raise _NoShape
        self.key.append((item.direction, item._coerce))
        self.field(item.node)

    def count(self, value: Any, minimum: int) -> Any:
        # An int parameter, as Peewee binds LIMIT/OFFSET (a LIMIT of 0 compiles differently).
        if type(value) is not int or value < minimum:
            raise _NoShape
        return self.literal(value, None)


def _walk_select(query: Any, build: bool) -> tuple[_Walk, Any]:
    attrs = vars(query)
    model = query.model
    if (
        not attrs.keys() <= _SELECT_ATTRS
        or query._joins
        or len(query._from_list) != 1
        or query._from_list[0] is not model
        or any(attrs.get(name) is not None for name in _SELECT_UNSET)
    ):
        raise _NoShape
    walk = _Walk(model, build)
    walk.key.append(("select", query._is_default))
    for node in query._returning:
        walk.field(node)
    walk.key.append("where")
    where = None if query._where is None else walk.expression(query._where)
    walk.key.append("order")
    for item in query._order_by or ():
        walk.ordering(item)
    walk.key.append(("limit", query._limit is None, query._offset is None))
    limit = None if query._limit is None else walk.count(query._limit, 1)
    offset = None if query._offset is None else walk.count(query._offset, 0)
    if not build:
        return walk, None
    clone = query.clone()
    clone._where = where
    clone._limit = limit
    clone._offset = offset
    return walk, clone


def _walk_update(query: Any, build: bool) -> tuple[_Walk, Any]:
    attrs = vars(query)
    model = query.model
    if (
        not attrs.keys() <= _UPDATE_ATTRS
        or query.table is not model
        or query._return_cursor
        or any(attrs.get(name) is not None for name in _UPDATE_UNSET)
    ):
        raise _NoShape
    walk = _Walk(model, build)
    walk.key.append("update")
    update: dict[Any, Any] = {}
    for field, value in query._update.items():
        walk.field(field)
        if type(value) is _EXPRESSION:
            update[field] = walk.expression(value)
        elif isinstance(value, _FIELD):
            update[field] = walk.field(value)
        else:
            # Peewee binds a plain SET value with the column's db_value, always.
            update[field] = walk.literal(value, field.db_value)
    walk.key.append("where")
    where = None if query._where is None else walk.expression(query._where)
    if not build:
        return walk, None
    clone = query.clone()
    clone._update = update
    clone._where = where
    return walk, clone


_WALKERS = {_MODEL_SELECT: _walk_select, _MODEL_UPDATE: _walk_update}


def shape_of(query: Any) -> Shape | None:
    """The shape of ``query``, or None if Peewee must compile it."""
    walker = _WALKERS.get(type(query))
    if walker is None:
        return None
    try:
        walk, _ = walker(query, False)
    except _NoShape:
        return None
    return Shape(walk.model, tuple(walk.key), walk.values, walk.refs)


def statement_for(cache: LRUCache[Any, Template], database: Any, query: Any, shape: Shape) -> Template | None:
    """The node's compiled statement for ``shape`` (``query`` is one query of that shape)."""
    template = cache.get(shape.key)
    if template is not None and still_current(template.fingerprint, shape.model):
        return template
    current = fingerprint(shape.model)
    walk, clone = _WALKERS[type(query)](query, True)
    assert walk.markers is not None
    _, sql, params = compile_query(clone, database)
    positions = []
    for marker in walk.markers:
        found = [i for i, param in enumerate(params) if param is marker.slot]
        if len(found) != 1:
            return None
        positions.append(found[0])
    template = Template(clone, sql, params, positions, tuple(walk.refs), current)
    cache.put(shape.key, template)
    return template
