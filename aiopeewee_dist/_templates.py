"""Compiled statements for the hottest shortcuts, so they build and compile no Peewee query.

``manager.get(Model, Model.field == value)``, ``get(Model, field=value)``, ``get_or_none``,
``get_by_id`` and the ``INSERT`` of ``create``/``save`` are the commonest statements of an
application, and building plus compiling them with Peewee costs more than the round trip
to the server. Here the very same query is built and compiled once per node and *shape*
(model, which fields, which form) with a placeholder node where each value goes; later
calls only convert their values with the field's ``db_value`` (what Peewee's compiler
does) and put them in place.

A template is only used when it is certain to give Peewee's SQL and parameters:

- the model's ``select()`` / ``insert()`` is Peewee's own (an override may add default
  filters or data);
- gets: each filter is ``field == value`` (or ``field=value``) on a field of the model
  itself, and the value is a plain parameter: not None (that is ``IS NULL``), not a list,
  a query, an expression or a model instance, and not converted into one;
- inserts: every value is a plain parameter and every field with a default is given
  (Peewee computes missing defaults, callables included, while compiling);
- the model's table, table name, schema and field list are the very objects the template
  was compiled with (``set_table_name``, ``add_field``, ... make Peewee build new ones);
- SQL is compiled per node, by that node's database, so dialects never share one (the
  insert's ``RETURNING`` is decided per dialect, as for every insert).

Anything else takes the ordinary path. Changing a field object in place (its
``column_name``, say) after a template was made is not detected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import peewee

from ._cache import LRUCache
from ._query import compile_query, first_page

__all__ = [
    "GetLookup",
    "InsertLookup",
    "Lookup",
    "Template",
    "fingerprint",
    "insert_lookup_for",
    "lookup_for",
    "new_marker",
    "still_current",
    "template_for",
]

# peewee's type stubs leave out the query internals used here.
_pw: Any = peewee

_MODEL_SELECT = _pw.Model.select.__func__
_MODEL_INSERT = _pw.Model.insert.__func__
_EXPRESSION = _pw.Expression
_EQ = _pw.OP.EQ
_NODE = _pw.Node
_FIELD = _pw.Field
_MULTI = _pw.multi_types
_is_model = _pw.is_model

SelectFor = Callable[[Any, tuple[Any, ...], dict[str, Any]], tuple[Any, Any]]


class Lookup:
    """One call of a templated shortcut: its model, its shape and its converted values."""

    __slots__ = ("key", "model", "shape", "values")

    def __init__(self, model: Any, shape: tuple[Any, ...], values: list[Any]) -> None:
        self.model = model
        self.shape = shape
        self.values = values
        # ids are safe in the key: a template keeps its shape's fields alive.
        self.key: tuple[Any, ...] = (
            type(self),
            model,
            tuple([(id(s[0]), s[1]) if type(s) is tuple else s for s in shape]),
        )

    def query(self, markers: list[Any]) -> Any:
        """The shortcut's Peewee query with ``markers`` in place of the values."""
        raise NotImplementedError


class GetLookup(Lookup):
    """``get(model, *expressions, **filters)``: shape items are (field, flat) or a field name."""

    __slots__ = ("select_for",)

    def __init__(self, model: Any, shape: tuple[Any, ...], values: list[Any], select_for: SelectFor) -> None:
        super().__init__(model, shape, values)
        self.select_for = select_for

    def query(self, markers: list[Any]) -> Any:
        exprs: list[Any] = []
        filters: dict[str, Any] = {}
        for item, marker in zip(self.shape, markers, strict=True):
            if type(item) is tuple:
                field, flat = item
                exprs.append(_EXPRESSION(field, _EQ, marker, flat=flat))
            else:
                filters[item] = marker
        select, _ = self.select_for(self.model, tuple(exprs), filters)
        return first_page(select)


class InsertLookup(Lookup):
    """``model.insert(**data)`` of one row: shape items are the field names, in data order."""

    __slots__ = ()

    def query(self, markers: list[Any]) -> Any:
        return self.model.insert(**dict(zip(self.shape, markers, strict=True)))


class Template:
    """The compiled select of one lookup shape on one node."""

    __slots__ = ("fingerprint", "params", "positions", "query", "shape", "sql")

    def __init__(
        self,
        query: Any,
        sql: str,
        params: tuple[Any, ...],
        positions: list[int],
        shape: tuple[Any, ...],
        fingerprint: tuple[Any, ...],
    ) -> None:
        self.query = query  # the select as compiled: shapes the rows
        self.sql = sql
        self.params = params
        self.positions = positions  # where each lookup value goes in params
        self.shape = shape
        self.fingerprint = fingerprint

    def bind(self, values: list[Any]) -> tuple[Any, ...]:
        params = list(self.params)
        for position, value in zip(self.positions, values, strict=True):
            params[position] = value
        return tuple(params)


def lookup_for(
    source: Any, query: tuple[Any, ...], filters: Mapping[str, Any], select_for: SelectFor
) -> GetLookup | None:
    """The lookup of ``get(source, *query, **filters)``, or None if no template may serve it.

    ``select_for`` builds the select as the ordinary path does (``ModelShortcuts._select_for``).
    """
    if not isinstance(source, type) or not issubclass(source, peewee.Model):
        return None
    model: Any = source
    if getattr(model.select, "__func__", None) is not _MODEL_SELECT:
        return None
    fields = model._meta.fields
    shape: list[Any] = []
    values: list[Any] = []
    for expr in query:
        if type(expr) is not _EXPRESSION or expr.op != _EQ:
            return None
        field = expr.lhs
        if not isinstance(field, _FIELD) or fields.get(field.name) is not field:
            return None
        value = _converted(field, expr.rhs)
        if value is _UNUSABLE:
            return None
        shape.append((field, expr.flat))
        values.append(value)
    # Peewee's filter() handles keywords in sorted order; so do the template's markers.
    for name in sorted(filters):
        field = fields.get(name)
        if field is None or "__" in name or getattr(model, name, None) is not field:
            return None
        value = _converted(field, filters[name])
        if value is _UNUSABLE:
            return None
        shape.append(name)
        values.append(value)
    return GetLookup(model, tuple(shape), values, select_for)


def insert_lookup_for(model: Any, data: Mapping[str, Any]) -> InsertLookup | None:
    """The lookup of ``model.insert(**data)`` (field names), or None if no template may serve it."""
    if getattr(model.insert, "__func__", None) is not _MODEL_INSERT:
        return None
    meta = model._meta
    fields = meta.fields
    for field in meta.defaults:
        if field.name not in data:
            return None
    values: list[Any] = []
    for name, value in data.items():
        field = fields.get(name)
        if field is None or isinstance(value, _NODE):
            return None
        # Peewee binds insert values with the column's db_value, whatever they are.
        value = field.db_value(value)
        if isinstance(value, _NODE) or _is_model(value):
            return None
        values.append(value)
    return InsertLookup(model, tuple(data), values)


_UNUSABLE = object()


def _converted(field: Any, value: Any) -> Any:
    """``value`` as Peewee's compiler would bind it, or _UNUSABLE if it would not be one parameter."""
    if value is None or isinstance(value, (_NODE, *_MULTI)) or _is_model(value):
        return _UNUSABLE
    if field._coerce:
        value = field.db_value(value)
        if isinstance(value, _NODE) or _is_model(value):
            return _UNUSABLE
    return value


def fingerprint(model: Any) -> tuple[Any, ...]:
    meta = model._meta
    return (meta.table, meta.table_name, meta.schema, meta.sorted_fields)


def still_current(fingerprint: tuple[Any, ...], model: Any) -> bool:
    """Whether ``fingerprint(model)`` would give these very objects (without building it)."""
    meta = model._meta
    return (
        fingerprint[0] is meta.table
        and fingerprint[1] is meta.table_name
        and fingerprint[2] is meta.schema
        and fingerprint[3] is meta.sorted_fields
    )


class _Slot:
    """The parameter a marker leaves in the compiled params, found again by identity."""

    __slots__ = ()


class _Marker(peewee.Node):
    """Compiles to one parameter placeholder, exactly where the value would go."""

    def __init__(self) -> None:
        super().__init__()
        self.slot = _Slot()

    def __sql__(self, ctx: Any) -> Any:
        return ctx.value(self.slot, converter=False)


def new_marker() -> Any:
    """A placeholder node; its ``slot`` is what it leaves in the compiled params."""
    return _Marker()


def template_for(cache: LRUCache[Any, Template], database: Any, lookup: Lookup) -> Template | None:
    """The node's template for ``lookup`` (made on first use), or None if the shape has none."""
    template = cache.get(lookup.key)
    if template is not None and still_current(template.fingerprint, lookup.model):
        return template
    fingerprint_now = fingerprint(lookup.model)
    template = _compile(database, lookup, fingerprint_now)
    if template is None:
        return None
    cache.put(lookup.key, template)
    return template


def _compile(database: Any, lookup: Lookup, fingerprint: tuple[Any, ...]) -> Template | None:
    markers = [_Marker() for _ in lookup.shape]
    query, sql, params = compile_query(lookup.query(markers), database)
    positions = []
    for marker in markers:
        found = [i for i, param in enumerate(params) if param is marker.slot]
        if len(found) != 1:
            return None
        positions.append(found[0])
    return Template(query, sql, params, positions, lookup.shape, fingerprint)
