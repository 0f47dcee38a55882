"""Model instances from fetched rows without Peewee's per-row keyword round trip.

For a plain ``Model.select(...)`` (no joins, default row type), Peewee's
``ModelObjectCursorWrapper`` resolves the columns once per query and then, for every
row, builds a dict, calls ``Model(__no_default__=1, **dict)`` (one descriptor
``__set__`` per column) and clears ``_dirty``. When the model keeps Peewee's own
``__init__``/``__new__``/``__setattr__`` and every column lands on a plain field
descriptor, the outcome is fully determined: ``__data__`` with the converted values
(keys in Peewee's order: unconverted columns first, then converted ones), an empty
``_dirty`` and an empty ``__rel__``. A *plan* builds exactly that, and is cached per
(model, selected nodes, result column names), so Peewee's column resolution runs once
per query shape instead of once per query.

Anything else (joins, dicts/tuples/constructors, custom ``__init__``, columns that are
not fields, query subclasses, a query object given its own cursor wrapper) returns
None and the caller uses Peewee's wrappers.
Converters are resolved when a plan is made: replacing a field's ``python_value`` on a
live field object later is not seen (Peewee itself resolves them per query).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peewee

from ._cache import LRUCache
from ._compat import StringField
from ._drivers import Result

__all__ = ["RowBuilder", "insert_rows", "model_rows", "row_builder"]

#: Makes one model instance from one result row.
RowBuilder = Callable[[Any], Any]

# peewee's type stubs leave out the query and cursor-wrapper internals used here.
_pw: Any = peewee

_MODEL_SELECT = _pw.ModelSelect
_MODEL_INSERT = _pw.ModelInsert
_MODEL_ROW_TYPES = (None, _pw.ROW.MODEL)
_MODEL_INIT = _pw.Model.__init__
_FIELD_ACCESSOR = _pw.FieldAccessor
_FK_ACCESSOR = _pw.ForeignKeyAccessor
_FIELD_PYTHON_VALUE = _pw.Field.python_value
_PASS_THROUGH: dict[Any, type] = {
    _pw.IntegerField.adapt: int,
    _pw.FloatField.adapt: float,
    _pw.BooleanField.adapt: bool,
    StringField.adapt: str,
}
# A query object may carry its own cursor wrapper (sharding's fan-out does): Peewee's then.
_OWN_WRAPPERS = frozenset(("_get_cursor_wrapper", "_get_model_cursor_wrapper"))
# Row builders are generated code: bounded like the compiled statements (_cache).
_MAX_PLANS = 512
# "No plan can be made for this shape": cached too, so the check runs once per shape.
_INELIGIBLE = object()

_plans: LRUCache[tuple[Any, ...], Any] = LRUCache(_MAX_PLANS)


class _Description:
    """Just what Peewee's column resolution reads from a cursor."""

    __slots__ = ("description",)

    def __init__(self, description: Any) -> None:
        self.description = description


def model_rows(query: Any, result: Result) -> list[Any] | None:
    """The rows of ``result`` as ``query``'s model instances, or None if no plan applies."""
    rows = result.rows
    if not rows:
        return [] if _plain(query) else None
    build = row_builder(query, result.description)
    return None if build is None else [build(row) for row in rows]


def row_builder(query: Any, description: Any) -> RowBuilder | None:
    """The function that makes one of ``query``'s model instances from a row of a result with
    this ``description``, or None if no plan applies (Peewee's cursor wrappers then)."""
    if not _plain(query):
        return None
    # ids are safe in the key: the plan keeps the nodes alive, so no other object can
    # take their ids while the entry exists.
    select = query._returning
    key = (query.model, tuple(map(id, select)), tuple([column[0] for column in description or ()]))
    plan = _plans.get(key)
    if plan is None:
        plan = _make_plan(query.model, select, description)
        _plans.put(key, plan)
    if plan is _INELIGIBLE:
        return None
    build: RowBuilder = plan[1]
    return build


def _plain(query: Any) -> bool:
    return not (
        type(query) is not _MODEL_SELECT
        or query._row_type not in _MODEL_ROW_TYPES
        or query._joins
        or len(query._from_list) != 1
        or _OWN_WRAPPERS & query.__dict__.keys()
    )


def insert_rows(query: Any, result: Result) -> list[Any] | None:
    """The ``RETURNING`` rows of a model insert as the tuples Peewee's
    ``ModelTupleCursorWrapper`` gives, or None if the query is not that plain case.

    The wrapper's column resolution runs once per (model, returned nodes, result columns).
    """
    if (
        type(query) is not _MODEL_INSERT
        or query._row_type != _pw.ROW.TUPLE
        or _OWN_WRAPPERS & query.__dict__.keys()
    ):
        return None
    rows = result.rows
    if not rows:
        return []
    returning = query._returning
    key = (
        _MODEL_INSERT,
        query.model,
        tuple(map(id, returning)),
        tuple([c[0] for c in result.description or ()]),
    )
    converters = _plans.get(key)
    if converters is None:
        if result.description is None:
            return None
        wrapper = _pw.ModelTupleCursorWrapper(_Description(result.description), query.model, returning)
        wrapper.initialize()
        converters = (returning, wrapper.converters)  # keeps the nodes behind the ids alive
        _plans.put(key, converters)
    convert = converters[1]
    return [tuple([v if c is None else c(v) for c, v in zip(convert, row, strict=True)]) for row in rows]


def _make_plan(model: Any, select: Any, description: Any) -> Any:
    if (
        description is None
        or model.__init__ is not _MODEL_INIT
        or model.__new__ is not object.__new__
        or model.__setattr__ is not object.__setattr__
    ):
        return _INELIGIBLE
    wrapper = _pw.ModelObjectCursorWrapper(_Description(description), model, select, model)
    wrapper.initialize()
    if not wrapper.is_model:
        return _INELIGIBLE
    identifiers = wrapper.identifiers
    converters = wrapper.converters
    entries: list[str] = []
    checks: list[str] = []
    namespace: dict[str, Any] = {"new": object.__new__, "model": model, "slow": wrapper.process_row}
    # Peewee's process_row fills its dict with unconverted columns first: keep that order.
    for i in [*wrapper.no_convert, *wrapper.convert]:
        name = identifiers[i]
        accessor = _class_attribute(model, name)
        if type(accessor) not in (_FIELD_ACCESSOR, _FK_ACCESSOR) or accessor.name != name:
            return _INELIGIBLE
        converter = converters[i]
        checks.append(f"    v{i} = row[{i}]")
        if converter is not None:
            namespace[f"c{i}"] = converter
            kept = _unchanged_type(wrapper.fields[i], converter)
            if kept is None:
                checks.append(f"    v{i} = c{i}(v{i})")
            else:
                # The converter would return this very object: skip the call.
                namespace[f"t{i}"] = kept
                checks.append(f"    if v{i} is not None and type(v{i}) is not t{i}:")
                checks.append(f"        v{i} = c{i}(v{i})")
        entries.append(f"{name!r}: v{i}")
        if type(accessor) is _FK_ACCESSOR:
            # Assigning a related instance does more than store a value: let Peewee do it.
            namespace[f"r{i}"] = accessor.rel_model
            checks.append(f"    if isinstance(v{i}, r{i}):\n        return slow(row)")
    source = "\n".join(
        [
            "def build(row):",
            *checks,
            "    obj = new(model)",
            f"    obj.__data__ = {{{', '.join(entries)}}}",
            "    obj._dirty = set()",
            "    obj.__rel__ = {}",
            "    return obj",
        ]
    )
    # Generated once per shape: a flat function is several times faster per row than a
    # loop over (index, name, converter) triples. Names are embedded with repr().
    exec(compile(source, f"<aiopeewee_dist row plan for {model.__name__}>", "exec"), namespace)
    return (select, namespace["build"])


def _unchanged_type(field: Any, converter: Any) -> type | None:
    """The type whose values ``converter`` returns as they are (the same object), if known.

    Peewee's ``Field.python_value`` passes None through and otherwise calls ``adapt``;
    the ``adapt`` of integer, float, boolean and string fields returns an ``int``,
    ``float``, ``bool`` or ``str`` itself.
    """
    if getattr(converter, "__self__", None) is not field or (
        getattr(converter, "__func__", None) is not _FIELD_PYTHON_VALUE
    ):
        return None
    if "adapt" in vars(field):
        return None
    adapt = getattr(type(field), "adapt", None)
    return _PASS_THROUGH.get(adapt)


def _class_attribute(model: Any, name: str) -> Any:
    """What ``setattr(instance, name, ...)`` resolves on the class (first in the MRO)."""
    for klass in model.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None
