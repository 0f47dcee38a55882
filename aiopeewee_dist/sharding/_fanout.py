"""A SELECT fanned out over several shards: planned, run everywhere, merged.

Materialised (:func:`fan_out_select`) or streamed (:func:`fan_out_stream`). A fan-out that
ends up on one shard runs the query as it is: nothing to merge, nothing to refuse.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import RoutingError
from ._gather import FanOutResult, gather_shards
from ._merge import merge_results
from ._plan import plan_select, shard_query
from ._stream import FanOutStream, chain_sources, merge_sorted, page, raw_pairs, relay_wrapped

if TYPE_CHECKING:
    from .._manager import Manager

__all__ = ["fan_out_select", "fan_out_stream"]


async def fan_out_select(
    managers: Mapping[str, Manager],
    query: Any,
    targets: Sequence[str],
    *,
    dialect: str,
    limit: int,
    partial: bool,
) -> Any:
    """The merged rows of ``query`` on ``targets`` (a :class:`FanOutResult` with ``partial``)."""
    if len(targets) == 1:
        plan = None
        runnable = query
    else:
        plan = plan_select(query, dialect)
        runnable = shard_query(query, plan)
    results, failures = await gather_shards(
        targets, lambda s: managers[s].execute(runnable), limit=limit, partial=partial
    )
    if plan is None:
        rows = list(results.get(targets[0], []))
    else:
        rows = merge_results(query, plan, [results[s] for s in targets if s in results])
    return FanOutResult(rows, failures) if partial else rows


async def _materialised(
    managers: Mapping[str, Manager],
    query: Any,
    targets: Sequence[str],
    failures: dict[str, BaseException],
    **options: Any,
) -> AsyncGenerator[Any, None]:
    rows = await fan_out_select(managers, query, targets, **options)
    if isinstance(rows, FanOutResult):
        failures.update(rows.failures)
    for row in rows:
        yield row


def fan_out_stream(
    managers: Mapping[str, Manager],
    query: Any,
    targets: Sequence[str],
    *,
    chunk_size: int,
    dialect: str,
    limit: int,
    partial: bool,
) -> FanOutStream:
    """Stream ``query``'s rows from ``targets``: a lazy k-way merge with ORDER BY, the shards
    one after another without (all started at once); aggregates are merged as by
    :func:`fan_out_select`."""
    failures: dict[str, BaseException] = {}
    if len(targets) == 1:
        stream = managers[targets[0]].iterate(query, chunk_size=chunk_size)
        return FanOutStream(relay_wrapped(stream, targets[0], failures, partial), failures)
    plan = plan_select(query, dialect)
    if plan.kind != "rows":
        rows = _materialised(
            managers, query, targets, failures, dialect=dialect, limit=limit, partial=partial
        )
        return FanOutStream(rows, failures)
    if plan.distinct:
        raise RoutingError(
            "DISTINCT cannot be streamed across shards (it would remember every row); use execute()"
        )
    clone = shard_query(query, plan)
    key: Callable[[Sequence[Any]], Any] = plan.sort_key if plan.order else (lambda row: None)
    sources = [(s, raw_pairs(managers[s].iterate(clone, chunk_size=chunk_size), query, key)) for s in targets]
    merge = merge_sorted if plan.order else chain_sources
    merged = merge(sources, failures=failures, partial=partial)
    return FanOutStream(page(merged, plan.offset, plan.stop), failures)
