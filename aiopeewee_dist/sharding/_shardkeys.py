"""Where a row lives: shard keys, placement strategies, and finding the key in a query.

A model is placed in one of three ways (:class:`Placement`):

- ``keyed``: each row on one shard, chosen from the value of its key field by a strategy:
  ``"hash"`` (jump consistent hash of a stable 64-bit hash), :class:`Ranges`, or a function
  ``key -> shard name`` (a directory);
- ``reference``: every row on every shard (small lookup tables, joined locally);
- ``home``: the whole table on one named shard.

The key of a query is read from its WHERE clause: ``field == value`` at the top level or
under AND, ``field << [values]`` (IN), and OR of those. Anything else (a subquery, a
function of the field, NOT, ...) leaves the query without a key.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

import peewee

from .._errors import ConfigurationError, ShardKeyError

__all__ = [
    "KeyStrategy",
    "Placement",
    "Ranges",
    "jump_hash",
    "key_in_row",
    "keys_in_where",
    "shard_by_strategy",
    "stable_hash64",
]

# peewee's type stubs leave out the expression internals read below.
_pw: Any = peewee

_MASK64 = (1 << 64) - 1
# Lamping & Veach's 64-bit linear congruential step.
_JUMP_MULTIPLIER = 2862933555777941757


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping & Veach, 2014): a bucket in ``range(buckets)`` for ``key``.

    Growing from n to n+1 buckets moves about 1/(n+1) of the keys, all to the new bucket.
    """
    if not isinstance(buckets, int) or buckets < 1:
        raise ValueError(f"buckets must be a positive integer, got {buckets!r}")
    key &= _MASK64
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message: cut to ``limit`` characters, and never failing
    (the repr of an int of more than 4300 digits raises ValueError)."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _canonical_bytes(value: Any) -> bytes:
    # bool first: it is an int, but True -> "1" would silently share a shard with 1.
    if isinstance(value, bool):
        raise ShardKeyError(f"a boolean cannot be a shard key (got {value!r})")
    if isinstance(value, int):
        try:
            return str(value).encode("ascii")
        except ValueError:  # more digits than int -> str conversion allows (4300 by default)
            raise ShardKeyError(f"an integer shard key of {value.bit_length()} bits is too large") from None
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates
            raise ShardKeyError(
                f"a str shard key must be valid Unicode ({exc.reason}): {shown(value)}"
            ) from None
    if isinstance(value, uuid.UUID):
        return value.bytes
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ShardKeyError(
        f"cannot hash a shard key of type {type(value).__name__} ({shown(value)}):"
        " use int, str, bytes or uuid.UUID keys, or a Ranges / function strategy"
    )


def stable_hash64(value: Any) -> int:
    """A 64-bit hash of a key that is the same in every process and Python version.

    The first 8 bytes (big-endian) of BLAKE2b over a canonical encoding: ints as decimal
    text, str as UTF-8, UUIDs as their 16 bytes, bytes as they are. (Python's ``hash()``
    is salted per process for str, so it cannot place rows.)
    """
    digest = hashlib.blake2b(_canonical_bytes(value), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Ranges:
    """Range placement: ``Ranges([(100, "s1"), (200, "s2"), (None, "s3")])``.

    Each pair is (upper bound, exclusive; shard): keys < 100 on s1, 100 <= key < 200 on s2,
    the rest (the final ``None`` bound, required) on s3. Bounds must increase.
    """

    def __init__(self, ranges: Iterable[tuple[Any, str]]) -> None:
        items = list(ranges)
        if not items or items[-1][0] is not None:
            raise ConfigurationError("Ranges needs a last (None, shard) pair for keys above every bound")
        bounds = [bound for bound, _ in items[:-1]]
        if any(bound is None for bound in bounds):
            raise ConfigurationError("only the last range may have the bound None")
        try:
            ordered = all(a < b for a, b in itertools.pairwise(bounds))
        except TypeError as exc:
            raise ConfigurationError(f"range bounds must be comparable: {exc}") from None
        if not ordered:
            raise ConfigurationError(f"range bounds must strictly increase, got {bounds!r}")
        self.bounds = bounds
        self.shard_names = [shard for _, shard in items]

    def __repr__(self) -> str:
        pairs = [*zip(self.bounds, self.shard_names[:-1], strict=True), (None, self.shard_names[-1])]
        return f"Ranges({pairs!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ranges):
            return NotImplemented
        return (self.bounds, self.shard_names) == (other.bounds, other.shard_names)

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside: not hashable

    def shard_for(self, key: Any) -> str:
        """The shard whose range holds ``key``."""
        try:
            index = bisect.bisect_right(self.bounds, key)
        except (TypeError, ValueError, ArithmeticError) as exc:  # e.g. Decimal("sNaN") < 1
            raise ShardKeyError(f"key {shown(key)} cannot be compared with the range bounds: {exc}") from None
        return self.shard_names[index]


#: ``"hash"``, a :class:`Ranges`, or a function from a key value to a shard name.
KeyStrategy = Union[Literal["hash"], Ranges, Callable[[Any], str]]  # noqa: UP007 (runtime alias on 3.10)
PlacementKind = Literal["keyed", "reference", "home"]


@dataclass(frozen=True, eq=False)
class Placement:
    """Where one model's rows live (see the module docstring)."""

    model: Any
    kind: PlacementKind
    field: Any = None
    strategy: KeyStrategy = "hash"
    home: str | None = None

    @property
    def label(self) -> str:
        """``Model.field`` for messages."""
        name = self.model.__name__
        return f"{name}.{self.field.name}" if self.field is not None else name

    def normalize(self, value: Any) -> Any:
        """The key as the field stores it: ``"5"`` -> 5 for an IntegerField, a model -> its id."""
        if value is None:
            raise ShardKeyError(f"{self.label} is None: a row needs its shard key")
        try:
            return self.field.python_value(self.field.db_value(value))
        except Exception as exc:
            raise ShardKeyError(
                f"{shown(value)} is not a valid value for shard key {self.label}: {exc}"
            ) from None

    def shard_of(self, value: Any, shard_names: Sequence[str]) -> str:
        """The shard of the row whose key is ``value``."""
        if self.kind == "home":
            assert self.home is not None
            return self.home
        if self.kind != "keyed":
            raise ShardKeyError(f"{self.label} is a reference model: its rows are on every shard")
        return shard_by_strategy(self.strategy, self.normalize(value), shard_names, label=self.label)


def shard_by_strategy(strategy: KeyStrategy, key: Any, shard_names: Sequence[str], *, label: str) -> str:
    """The shard ``strategy`` gives ``key`` (already normalised); ``label`` names it in errors."""
    if strategy == "hash":
        return shard_names[jump_hash(stable_hash64(key), len(shard_names))]
    if isinstance(strategy, Ranges):
        try:
            return strategy.shard_for(key)
        except ShardKeyError as exc:
            raise ShardKeyError(f"shard key {label}: {exc}") from None
    if not callable(strategy):
        raise ConfigurationError(
            f"unknown shard strategy {strategy!r} (expected 'hash', Ranges or a function)"
        )
    name = strategy(key)
    if name not in shard_names:
        known = ", ".join(map(repr, shard_names))
        raise ShardKeyError(
            f"the shard directory of {label} returned {shown(name)} for key {shown(key)},"
            f" which is not a shard (known: {known})"
        )
    return name


# -- finding keys in queries -------------------------------------------------------------


def _is_key_field(node: Any, field: Any) -> bool:
    # A FieldAlias (ModelAlias.field) reads another copy of the table: not this key.
    return (
        isinstance(node, _pw.Field)
        and not isinstance(node, _pw.FieldAlias)
        and node.model is field.model
        and node.name == field.name
    )


def _literal(node: Any) -> tuple[bool, Any]:
    """``(True, value)`` for a plain value (or ``Value(x)``), ``(False, None)`` for SQL nodes."""
    if isinstance(node, _pw.Value) and not node.multi:
        return True, node.value
    # A model instance is a Node too, but stands for its primary key (``Order.user == ada``).
    if isinstance(node, _pw.Node) and not isinstance(node, peewee.Model):
        return False, None
    return True, node


def _values_of_list(node: Any) -> list[Any] | None:
    if isinstance(node, _pw.Value) and node.multi:
        node = node.value
    if isinstance(node, (list, tuple, set, frozenset)):
        values = []
        for item in node:
            ok, value = _literal(item)
            if not ok:
                return None
            values.append(value)
        return values
    return None


def keys_in_where(node: Any, field: Any) -> list[Any] | None:
    """The key values a WHERE clause allows for ``field``, or None if it does not restrict it.

    An empty list means no row can match (``key == 1 AND key == 2``).
    """
    if node is None or not isinstance(node, _pw.Expression):
        return None
    op, lhs, rhs = node.op, node.lhs, node.rhs
    if op == _pw.OP.AND:
        left, right = keys_in_where(lhs, field), keys_in_where(rhs, field)
        if left is None:
            return right
        if right is None:
            return left
        return [value for value in left if value in right]
    if op == _pw.OP.OR:
        left, right = keys_in_where(lhs, field), keys_in_where(rhs, field)
        if left is None or right is None:
            return None
        return left + [value for value in right if value not in left]
    if op == _pw.OP.EQ:
        for side, other in ((lhs, rhs), (rhs, lhs)):
            if _is_key_field(side, field):
                ok, value = _literal(other)
                if ok and value is not None:
                    return [value]
        return None
    if op == _pw.OP.IN and _is_key_field(lhs, field):
        return _values_of_list(rhs)
    return None


def key_in_row(row: Any, field: Any, columns: Sequence[Any] | None = None) -> tuple[bool, Any]:
    """``(found, value)`` for ``field`` in one row of an INSERT: a mapping keyed by field
    objects or names, or a tuple/list aligned with ``columns``."""
    if isinstance(row, Mapping):
        for key in (field, field.name, field.column_name):
            if key in row:
                return True, row[key]
        for key, value in row.items():
            if _is_key_field(key, field):
                return True, value
        return False, None
    if columns is not None and isinstance(row, (tuple, list)):
        for index, column in enumerate(columns):
            if _is_key_field(column, field) or column in (field.name, field.column_name):
                return (True, row[index]) if index < len(row) else (False, None)
    return False, None
