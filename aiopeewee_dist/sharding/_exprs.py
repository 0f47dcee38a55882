"""Select-list expressions of a fan-out: the aggregates in them, and how to compute them.

Pure functions over Peewee nodes; nothing here touches a database. A select item that holds
aggregates is computed after the merge from *parts*: the partial aggregates every shard
returns (COUNT, SUM, MIN, MAX, SQLite's TOTAL), at the item's own position when the item is a
bare aggregate, else as hidden columns appended to the shard's select list. What cannot be
computed exactly from parts is refused with :class:`RoutingError` naming the expression.
"""

from __future__ import annotations

import decimal
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import peewee

from .._errors import RoutingError

__all__ = [
    "MERGEABLE",
    "Evaluator",
    "Parts",
    "aggregate_name",
    "compile_item",
    "contains_aggregate",
    "describe",
    "is_constant",
    "like",
    "sql_of",
    "strip_alias",
]

# peewee's type stubs leave out the expression internals read below.
_pw: Any = peewee

#: Aggregates merged from one partial value per shard.
MERGEABLE = frozenset({"COUNT", "SUM", "MIN", "MAX", "TOTAL"})
# Aggregates whose per-shard values do not determine the whole's (or only up to an order or
# a length limit the merge cannot reproduce).
_UNMERGEABLE = frozenset(
    {
        "ANY_VALUE", "ARRAY_AGG", "BIT_AND", "BIT_OR", "BIT_XOR", "BOOL_AND", "BOOL_OR", "CORR",
        "COVAR_POP", "COVAR_SAMP", "EVERY", "GROUP_CONCAT", "JSON_AGG", "JSON_ARRAYAGG",
        "JSON_GROUP_ARRAY", "JSON_GROUP_OBJECT", "JSON_OBJECTAGG", "JSON_OBJECT_AGG", "JSONB_AGG",
        "JSONB_OBJECT_AGG", "LISTAGG", "MEDIAN", "MODE", "PERCENTILE_CONT", "PERCENTILE_DISC",
        "REGR_AVGX", "REGR_AVGY", "REGR_COUNT", "REGR_INTERCEPT", "REGR_R2", "REGR_SLOPE",
        "REGR_SXX", "REGR_SXY", "REGR_SYY", "STD", "STDDEV", "STDDEV_POP", "STDDEV_SAMP",
        "STRING_AGG", "VARIANCE", "VAR_POP", "VAR_SAMP", "XMLAGG",
    }
)  # fmt: skip
_COALESCE = frozenset({"COALESCE", "IFNULL"})
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    _pw.OP.ADD: operator.add,
    _pw.OP.SUB: operator.sub,
    _pw.OP.MUL: operator.mul,
}
# Decimal arithmetic exact to this many digits (the default context rounds at 28).
_EXACT = decimal.Context(prec=200, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)

Evaluator = Callable[[Sequence[Any]], Any]


def sql_of(node: Any) -> tuple[str, tuple[Any, ...]]:
    """``node`` compiled to ``(sql, params)``: how two select items are compared."""
    sql, params = _pw.Context().sql(node).query()
    return sql, tuple(params)


def describe(node: Any) -> str:
    """``node`` as SQL text, for an error message (its repr if it does not compile alone)."""
    try:
        return sql_of(node)[0]
    except Exception:  # only a message is at stake: the query itself compiles on the shard
        return repr(node)


def strip_alias(node: Any) -> Any:
    """``node`` without its aliases (a cast, unlike ``node.unwrap()``, stays)."""
    while isinstance(node, _pw.Alias):
        node = node.node
    return node


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, _pw.Expression):
        yield node.lhs
        yield node.rhs
    elif isinstance(node, _pw.Function):
        yield from node.arguments
        if node._filter is not None:
            yield node._filter
    elif isinstance(node, _pw.WrappedNode):
        yield node.node
    elif isinstance(node, _pw.NodeList):
        yield from node.nodes
    elif isinstance(node, (list, tuple)):
        yield from node


def _function_name(node: Any) -> str | None:
    return str(node.name).upper() if isinstance(node, _pw.Function) and node.name else None


def contains_aggregate(node: Any) -> bool:
    """Whether ``node`` calls a known aggregate anywhere inside it."""
    name = _function_name(node)
    if name is not None and (name in MERGEABLE or name in _UNMERGEABLE or name == "AVG"):
        return True
    return any(contains_aggregate(child) for child in _children(node))


def _is_distinct(arg: Any) -> bool:
    if _function_name(arg) == "DISTINCT":
        return True
    if isinstance(arg, _pw.NodeList) and arg.nodes:
        first = arg.nodes[0]
        return isinstance(first, _pw.SQL) and str(first.sql).strip().upper() == "DISTINCT"
    return False


def aggregate_name(node: Any) -> str | None:
    """``"SUM"`` etc. for a mergeable aggregate call; RoutingError for one that is not."""
    name = _function_name(node)
    if name == "AVG":
        raise RoutingError(
            f"{describe(node)}: AVG cannot be merged across shards; select SUM(x) and COUNT(x)"
            " instead and divide the merged sums"
        )
    if name in _UNMERGEABLE:
        raise RoutingError(f"{describe(node)}: {name} cannot be merged across shards")
    if name not in MERGEABLE:
        return None
    if name != "MIN" and name != "MAX" and any(_is_distinct(arg) for arg in node.arguments):
        raise RoutingError(
            f"{describe(node)}: {name}(DISTINCT ...) cannot be merged across shards"
            " (a value may be on several shards); select the distinct values and count them"
        )
    return name


def is_constant(node: Any) -> bool:
    """A literal (the same value on every shard), not a column, function or SQL text."""
    node = strip_alias(node)
    if isinstance(node, _pw.Value):
        return not node.multi
    return node is None or isinstance(node, (int, float, str, decimal.Decimal))


class Parts:
    """The partial aggregates each shard returns: ``{position in the shard's row: name}``.

    Top-level aggregates are their own parts; others become hidden columns after ``width``.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.names: dict[int, str] = {}
        self.extra: list[Any] = []
        self._by_sql: dict[tuple[str, tuple[Any, ...]], int] = {}

    def add(self, node: Any, name: str, position: int | None = None) -> int:
        key = sql_of(node)
        if position is not None:  # a selected aggregate is its own part, even if repeated
            self._by_sql.setdefault(key, position)
        else:
            found = self._by_sql.get(key)
            if found is not None:
                return found
            position = self._by_sql[key] = self.width + len(self.extra)
            self.extra.append(node)
        self.names[position] = name
        return position


def compile_item(node: Any, parts: Parts, dialect: str) -> Evaluator:
    """A function of the merged parts that computes select item ``node``; RoutingError if none can."""
    return _compile(strip_alias(node), parts, dialect, node)


def _compile(node: Any, parts: Parts, dialect: str, whole: Any) -> Evaluator:
    node = strip_alias(node)
    name = aggregate_name(node)
    if name is not None:
        position = parts.add(node, name)
        return lambda row: row[position]
    if isinstance(node, _pw.Function) and _function_name(node) in _COALESCE and node._filter is None:
        args = [_compile(arg, parts, dialect, whole) for arg in node.arguments]
        return lambda row: next((v for v in (arg(row) for arg in args) if v is not None), None)
    if isinstance(node, _pw.Expression) and node.op in _ARITHMETIC:
        lhs = _compile(node.lhs, parts, dialect, whole)
        rhs = _compile(node.rhs, parts, dialect, whole)
        apply = _ARITHMETIC[node.op]
        return lambda row: _arithmetic(apply, lhs(row), rhs(row), whole)
    if isinstance(node, _pw.Cast):
        inner = _compile(node.node, parts, dialect, whole)
        cast = _caster(str(node._cast), dialect, whole)
        return lambda row: cast(inner(row))
    if is_constant(node) and not isinstance(node, str):
        value = node.value if isinstance(node, _pw.Value) else node
        return lambda row: value
    raise RoutingError(
        f"{describe(whole)}: {describe(node)} cannot be computed across shards from per-shard"
        " aggregates (supported: COUNT, SUM, MIN, MAX, TOTAL with + - *, COALESCE/IFNULL,"
        " numeric constants and exact casts); select the aggregates and compute it after the query"
    )


def _arithmetic(apply: Callable[[Any, Any], Any], a: Any, b: Any, whole: Any) -> Any:
    if a is None or b is None:
        return None
    if isinstance(a, bool) or isinstance(b, bool) or not _numeric(a) or not _numeric(b):
        raise RoutingError(f"{describe(whole)}: cannot compute {a!r} and {b!r} across shards")
    if isinstance(a, float) or isinstance(b, float):  # SQL: numeric with float is float
        return apply(float(a), float(b))
    with decimal.localcontext(_EXACT):
        return apply(a, b)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float, decimal.Decimal))


_INTEGER_TYPES = frozenset({"INT", "INTEGER", "BIGINT", "SMALLINT", "INT2", "INT4", "INT8", "SIGNED"})
_TEXT_TYPES = {
    "postgresql": frozenset({"TEXT", "VARCHAR", "CHARACTER VARYING"}),  # CHAR is char(1) there
    "mysql": frozenset({"CHAR"}),
    "sqlite": frozenset({"TEXT", "VARCHAR", "CHAR"}),
}
_DOUBLE_TYPES = frozenset({"DOUBLE", "DOUBLE PRECISION", "FLOAT8"})


def _caster(type_text: str, dialect: str, whole: Any) -> Callable[[Any], Any]:
    """The cast to ``type_text`` where Python gives exactly the server's value, else a refusal."""
    target = " ".join(type_text.upper().split())
    if target.endswith(" INTEGER"):
        target = target[: -len(" INTEGER")]

    def cast(value: Any) -> Any:
        if value is None:
            return None
        converted = _exact_cast(target, dialect, value)
        if converted is _NO_CAST:
            raise RoutingError(
                f"{describe(whole)}: CAST of {type(value).__name__} {value!r} AS {type_text} is not"
                " computed across shards (its result differs between databases); cast after the query"
            )
        return converted

    return cast


_NO_CAST: Any = object()


def _exact_cast(target: str, dialect: str, value: Any) -> Any:
    integral = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, decimal.Decimal) and value.is_finite() and value == value.to_integral_value():
        integral, value = True, int(value)
    if target in _INTEGER_TYPES or target == "UNSIGNED":
        exact = integral and (target != "UNSIGNED" or value >= 0)
        return value if exact else _NO_CAST
    if target in _TEXT_TYPES.get(dialect, ()):
        if isinstance(value, str) or integral:
            return str(value)
        return format(value, "f") if isinstance(value, decimal.Decimal) else _NO_CAST
    if target in _DOUBLE_TYPES or (target == "REAL" and dialect == "sqlite"):
        exact = integral and abs(value) <= 2**53
        return float(value) if exact or isinstance(value, (float, decimal.Decimal)) else _NO_CAST
    if target in ("NUMERIC", "DECIMAL") and dialect == "postgresql" and _numeric(value):
        return decimal.Decimal(value) if not isinstance(value, float) else _NO_CAST
    return _NO_CAST


def like(value: Any, sample: Any) -> Any:
    """``value`` in the type the server gave the same column (``sample``): a computed
    ``COALESCE(SUM(x), 0)`` is a DECIMAL where SUM is one, even when the 0 was taken."""
    if value is None or sample is None or isinstance(value, bool):
        return value
    if isinstance(sample, decimal.Decimal) and isinstance(value, int):
        return decimal.Decimal(value)
    if isinstance(sample, float) and isinstance(value, (int, decimal.Decimal)):
        return float(value)
    return value
