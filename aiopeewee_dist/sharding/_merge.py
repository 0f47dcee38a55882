"""Merging the shards' answers to one SELECT: plan + per-shard rows -> rows.

Pure functions: nothing here touches a database. The merge works on raw rows (driver values,
one per column of the shard's select list) by position, which is the same for models, dicts,
tuples and namedtuples; :func:`merge_results` then shapes the merged rows once, with the
query's own cursor wrapper, into what synchronous Peewee would return.
"""

from __future__ import annotations

import decimal
import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .._compat import cursor_wrapper
from .._drivers import Result
from ._exprs import like
from ._plan import SelectPlan

__all__ = ["combine", "merge_results", "merge_rows"]

_EXACT = decimal.Context(prec=200, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def _unique(rows: Iterable[Any]) -> Iterator[Any]:
    seen_hashable: set[Any] = set()
    seen_other: list[Any] = []
    for row in rows:
        key = tuple(row)
        try:
            if key in seen_hashable:
                continue
            seen_hashable.add(key)
        except TypeError:  # a column of an unhashable type (e.g. JSON): compare one by one
            if key in seen_other:
                continue
            seen_other.append(key)
        yield row


def combine(name: str, values: Iterable[Any]) -> Any:
    """One aggregate from the shards' partial values of it."""
    present = [value for value in values if value is not None]
    if name == "COUNT":
        return sum(present)
    if name == "TOTAL":  # SQLite: a float, 0.0 over no rows
        return float(sum(present))
    if not present:
        return None
    if name == "SUM":
        with decimal.localcontext(_EXACT):  # exact, as the server's NUMERIC sum is
            total = present[0]
            for value in present[1:]:
                total = total + value
        return total
    return min(present) if name == "MIN" else max(present)


def _merge_group(plan: SelectPlan, rows: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    merged = list(rows[0])
    for position, name in plan.aggregates.items():
        merged[position] = combine(name, (row[position] for row in rows))
    for position, compute in plan.computed.items():
        value = compute(merged)
        if plan.retype:
            value = like(value, next((row[position] for row in rows if row[position] is not None), None))
        merged[position] = value
    return tuple(merged[: plan.width])


def _merge_groups(plan: SelectPlan, per_shard: Sequence[Sequence[Any]]) -> list[Any]:
    groups: dict[Any, list[Sequence[Any]]] = {}
    for row in itertools.chain.from_iterable(per_shard):
        groups.setdefault(tuple(row[p] for p in plan.group_positions), []).append(row)
    return [_merge_group(plan, rows) for rows in groups.values()]


def merge_rows(plan: SelectPlan, per_shard: Sequence[Sequence[Any]]) -> list[Any]:
    """The rows of the whole result from each shard's raw rows (in shard order)."""
    if plan.kind == "rows":
        merged: Iterable[Any] = (
            heapq.merge(*per_shard, key=plan.sort_key) if plan.order else itertools.chain(*per_shard)
        )
        if plan.distinct:
            merged = _unique(merged)
        return list(itertools.islice(merged, plan.offset, plan.stop))
    rows = _merge_groups(plan, per_shard)
    if plan.order:
        rows.sort(key=plan.sort_key)
    return rows[plan.offset : plan.stop]


def merge_results(query: Any, plan: SelectPlan, results: Sequence[Any]) -> list[Any]:
    """Merge the shards' raw results (in shard order) and shape them as ``query`` would."""
    raw = [result[0] for result in results if result]
    description = next((r.description for r in raw if r.description is not None), None)
    if description is None:
        return []
    rows = merge_rows(plan, [list(r.rows) for r in raw])
    return list(cursor_wrapper(query, Result(rows, list(description)[: plan.width])))
