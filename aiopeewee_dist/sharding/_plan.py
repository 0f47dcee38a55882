"""Planning a fan-out SELECT: query -> plan, and the copy of the query each shard runs.

Pure functions: nothing here touches a database. Plans:

- ``rows``: ORDER BY is a k-way merge of the shards' sorted rows (each shard is asked for
  ``offset + limit`` rows from offset 0; LIMIT/OFFSET are applied after the merge); without
  ORDER BY the shards' rows follow each other in shard order. DISTINCT drops repeats.
- ``aggregate``: aggregates without GROUP BY: one row per shard, combined into one.
- ``grouped``: GROUP BY columns plus aggregates: groups combined across shards, then ORDER BY
  and LIMIT/OFFSET in memory.

In the last two, a select item may be an expression over aggregates (``_exprs``): it is
computed after the merge from the partial aggregates the shards return.

Sort keys compare raw values in Python. That matches the server for numbers, dates and
binary/``C`` collations; a case-insensitive or locale collation orders text differently
from Python, and then the merge is only as ordered as the two agree (see docs/sharding.md).
NULLs sort as the dialect does: largest on PostgreSQL (last ascending, first descending),
smallest on MySQL and SQLite, unless ``nulls="first"/"last"`` is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import peewee

from .._compat import return_raw_results, set_limit
from .._errors import RoutingError
from ._exprs import (
    Evaluator,
    Parts,
    aggregate_name,
    compile_item,
    contains_aggregate,
    describe,
    is_constant,
    sql_of,
    strip_alias,
)

__all__ = ["SelectPlan", "column_position", "plan_select", "shard_query"]

# peewee's type stubs leave out the query internals read below.
_pw: Any = peewee
# Dialects whose NULL is smaller than every value (ASC puts NULLs first).
_NULLS_SMALL = frozenset({"mysql", "sqlite"})


class _Desc:
    """A value that sorts in reverse, for DESC columns in a key of mixed directions."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.value < self.value)

    def __gt__(self, other: _Desc) -> bool:
        return bool(other.value > self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and bool(self.value == other.value)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class OrderColumn:
    position: int
    descending: bool
    nulls_first: bool


@dataclass
class SelectPlan:
    """How a SELECT runs on several shards and how their answers are merged.

    ``width`` is the number of the query's own columns; a shard's rows may hold ``extra``
    hidden columns after them (partial aggregates). ``aggregates`` maps positions in a
    shard's row to COUNT/SUM/MIN/MAX/TOTAL; ``computed`` maps the query's columns that are
    expressions over aggregates to the function computing them from a merged row.
    """

    kind: Literal["rows", "aggregate", "grouped"]
    width: int = 0
    order: list[OrderColumn] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    distinct: bool = False
    aggregates: dict[int, str] = field(default_factory=dict)
    computed: dict[int, Evaluator] = field(default_factory=dict)
    group_positions: list[int] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)
    # Whether a computed value takes the type the server gave its column: not on SQLite,
    # whose values carry their own type (COALESCE(MAX(x), 0) is 0 there even where x is REAL).
    retype: bool = True

    @property
    def stop(self) -> int | None:
        return None if self.limit is None else self.offset + self.limit

    def sort_key(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A key for a raw row that sorts as the ORDER BY does (NULLs per the dialect)."""
        key: list[tuple[Any, ...]] = []
        for column in self.order:
            value = row[column.position]
            if value is None:
                key.append((0,) if column.nulls_first else (2,))
            else:
                key.append((1, _Desc(value) if column.descending else value))
        return tuple(key)


def _alias_of(node: Any) -> str | None:
    return str(node.name) if isinstance(node, _pw.Alias) else None


def _sql_name(node: Any) -> str | None:
    if isinstance(node, _pw.SQL) and not node.params:
        return str(node.sql).strip().strip('"`')
    return None


def _same_field(a: Any, b: Any) -> bool:
    return (
        isinstance(a, _pw.Field)
        and isinstance(b, _pw.Field)
        and not isinstance(a, _pw.FieldAlias)
        and not isinstance(b, _pw.FieldAlias)
        and a.model is b.model
        and a.name == b.name
    )


def _by_name(text: str, select: Sequence[Any]) -> int | None:
    # As the servers resolve ``ORDER BY name``: an output column's alias first, then the
    # name of a selected (unaliased) column.
    for i, item in enumerate(select):
        if _alias_of(item) == text:
            return i
    for i, item in enumerate(select):
        inner = strip_alias(item)
        if (
            _alias_of(item) is None
            and isinstance(inner, _pw.Field)
            and text in (inner.name, inner.column_name)
        ):
            return i
    return None


def column_position(node: Any, select: Sequence[Any]) -> int | None:
    """Where ``node`` (an ORDER BY / GROUP BY item) is in the select list, if it is there."""
    name = _alias_of(node) or _sql_name(node)
    if name is not None:
        # Peewee writes an alias (and SQL("x")) there as a bare name, which the server
        # resolves by name whichever select item the Alias object came from.
        return _by_name(name, select)
    for i, item in enumerate(select):
        if strip_alias(item) is node or _same_field(node, strip_alias(item)):
            return i
    if not isinstance(node, _pw.Field):
        wanted = sql_of(node)
        for i, item in enumerate(select):
            if sql_of(strip_alias(item)) == wanted:
                return i
    return None


def _is_window(node: Any) -> bool:
    inner = strip_alias(node)
    return isinstance(inner, _pw.NodeList) and any(_sql_name(n) == "OVER" for n in inner.nodes)


def _check_shape(query: Any) -> None:
    if isinstance(query, _pw.CompoundSelectQuery) or not isinstance(query, _pw.Select):
        raise RoutingError("only a plain SELECT can be fanned out (not UNION/INTERSECT/EXCEPT or raw SQL)")
    if query._windows or any(_is_window(item) for item in query._returning):
        raise RoutingError("window functions cannot be merged across shards")
    if query._distinct:  # a non-empty tuple: DISTINCT ON (...)
        raise RoutingError("DISTINCT ON cannot be merged across shards")


def _plan_aggregates(plan: SelectPlan, select: Sequence[Any], dialect: str) -> None:
    """Fill ``aggregates``/``computed``/``extra``: bare aggregates first, so that an
    expression reuses a column the query selects anyway instead of a hidden one."""
    parts = Parts(len(select))
    expressions = []
    for i, item in enumerate(select):
        inner = strip_alias(item)
        if aggregate_name(inner) is not None:
            parts.add(inner, str(aggregate_name(inner)), position=i)
        elif contains_aggregate(inner):
            expressions.append(i)
    for i in expressions:
        plan.computed[i] = compile_item(select[i], parts, dialect)
    plan.aggregates, plan.extra = parts.names, parts.extra


def _plan_groups(plan: SelectPlan, query: Any, select: Sequence[Any]) -> None:
    for node in query._group_by or ():
        position = column_position(node, select)
        if position is None:
            raise RoutingError(f"GROUP BY {describe(node)}: select it too, to merge the groups across shards")
        plan.group_positions.append(position)
    if query._having is not None:
        raise RoutingError("HAVING cannot be applied across shards; filter the merged groups instead")
    for i, item in enumerate(select):
        merged = i in plan.aggregates or i in plan.computed or i in plan.group_positions
        if not merged and not is_constant(item):
            raise RoutingError(
                f"column {describe(item)} is neither grouped nor an aggregate:"
                " it cannot be merged across shards"
            )


def _plan_order(plan: SelectPlan, query: Any, select: Sequence[Any], dialect: str) -> None:
    for item in query._order_by or ():
        node, descending, nulls = item, False, None
        if isinstance(item, _pw.Ordering):
            node, descending, nulls = item.node, str(item.direction).upper() == "DESC", item.nulls
        position = column_position(node, select)
        if position is None:
            raise RoutingError(
                f"ORDER BY {describe(node)}: a fan-out merges on the selected columns, so select it too"
            )
        if nulls is not None:
            nulls_first = str(nulls).lower() == "first"
        else:
            nulls_first = (dialect in _NULLS_SMALL) != descending
        plan.order.append(OrderColumn(position, descending, nulls_first))


def plan_select(query: Any, dialect: str) -> SelectPlan:
    """Check that ``query`` can be merged across shards and say how; RoutingError if not."""
    _check_shape(query)
    select = list(query._returning)
    plan = SelectPlan(
        kind="rows",
        width=len(select),
        limit=query._limit,
        offset=query._offset or 0,
        distinct=query._distinct is not None or query._simple_distinct is True,
        retype=dialect != "sqlite",
    )
    _plan_aggregates(plan, select, dialect)
    if query._group_by:
        plan.kind = "grouped"
    elif plan.aggregates or plan.computed:
        plan.kind = "aggregate"
    if plan.kind != "rows":
        _plan_groups(plan, query, select)
    _plan_order(plan, query, select, dialect)
    return plan


def shard_query(query: Any, plan: SelectPlan) -> Any:
    """The copy of ``query`` each shard runs: it returns raw :class:`Result` objects."""
    clone = query.clone()
    if plan.kind == "rows":
        set_limit(clone, plan.stop, None)
    else:
        # Every group is needed from every shard; ordering and paging happen after the merge.
        clone = clone.order_by().select(*query._returning, *plan.extra)
        set_limit(clone, None, None)
    return_raw_results(clone)
    return clone
