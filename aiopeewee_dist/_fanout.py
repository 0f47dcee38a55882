"""Running queries on several shards and merging their answers into one result.

Each shard runs a rewritten copy of the query whose cursor wrapper is replaced, so the shard
hands back its raw rows (driver values, one per select-list column, with the description)
instead of shaped Peewee rows. The merge works on those raw rows by column position, which
is the same for models, dicts, tuples and namedtuples; the merged rows are then shaped once,
by the original query's own cursor wrapper, into what synchronous Peewee would return.

Plans (:func:`plan_select`):

- ``rows``: ORDER BY is a k-way merge of the shards' sorted rows (each shard is asked for
  ``offset + limit`` rows from offset 0; LIMIT/OFFSET are applied after the merge); without
  ORDER BY the shards' rows follow each other in shard order. DISTINCT drops repeats.
- ``aggregate``: every column is COUNT/SUM/MIN/MAX: one row per shard, combined.
- ``grouped``: GROUP BY columns plus COUNT/SUM/MIN/MAX: groups combined across shards, then
  ORDER BY and LIMIT/OFFSET in memory.

Sort keys compare raw values in Python. That matches the server for numbers, dates and
binary/``C`` collations; a case-insensitive or locale collation orders text differently
from Python, and then the merge is only as ordered as the two agree (see docs/sharding.md).
NULLs sort as the dialect does: largest on PostgreSQL (last ascending, first descending),
smallest on MySQL and SQLite, unless ``nulls="first"/"last"`` is given.

Walks (:func:`walk_merged`, :func:`walk_parallel`, :func:`process_batches`) read every row
of a model shard by shard in keyset-paginated batches, merged by key or as they come.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import peewee

from ._drivers import Result
from ._errors import ConfigurationError, RoutingError, ShardError

if TYPE_CHECKING:
    from ._manager import Manager

__all__ = [
    "FanOutResult",
    "FanOutStream",
    "Progress",
    "SelectPlan",
    "gather_shards",
    "keyset_batches",
    "merge_results",
    "merge_sorted",
    "plan_select",
    "process_batches",
    "walk_merged",
    "walk_parallel",
]

# peewee's type stubs leave out the query internals read below.
_pw: Any = peewee
T = TypeVar("T")
_MERGEABLE = frozenset({"COUNT", "SUM", "MIN", "MAX"})
# Dialects whose NULL is smaller than every value (ASC puts NULLs first).
_NULLS_SMALL = frozenset({"mysql", "sqlite"})


class FanOutResult(list[Any]):
    """The merged rows of the shards that answered (``partial=True``), and which did not.

    A list of rows, as a full result would be, plus ``failures``: ``{shard: exception}``.
    """

    def __init__(self, rows: Iterable[Any] = (), failures: dict[str, BaseException] | None = None) -> None:
        super().__init__(rows)
        self.failures: dict[str, BaseException] = dict(failures or {})

    @property
    def rows(self) -> list[Any]:
        """The rows as a plain list."""
        return list(self)

    @property
    def complete(self) -> bool:
        """Whether every shard answered."""
        return not self.failures

    def __repr__(self) -> str:
        return f"FanOutResult({list.__repr__(self)}, failures={sorted(self.failures)!r})"


# -- running on several shards ------------------------------------------------------------


async def gather_shards(
    shards: Sequence[str],
    run: Callable[[str], Awaitable[T]],
    *,
    limit: int,
    partial: bool,
) -> tuple[dict[str, T], dict[str, BaseException]]:
    """Run ``run(shard)`` for each shard, at most ``limit`` at once: ``(results, failures)``.

    Without ``partial`` the first failure cancels the rest and raises :class:`ShardError`
    naming the shard. One shard runs in the calling task itself, so it keeps the task's
    transaction; several run in tasks of their own (which never join a transaction).
    """
    results: dict[str, T] = {}
    failures: dict[str, BaseException] = {}
    if len(shards) == 1:
        shard = shards[0]
        try:
            results[shard] = await run(shard)
        except Exception as exc:
            if not partial:
                raise ShardError(shard, exc) from exc
            failures[shard] = exc
        return results, failures

    # A semaphore per call, not per manager: asyncio primitives bind to the loop that first
    # waits on them, and a manager may be used from several loops over its life.
    semaphore = asyncio.Semaphore(limit)

    async def guarded(shard: str) -> T:
        async with semaphore:
            return await run(shard)

    tasks = {shard: asyncio.ensure_future(guarded(shard)) for shard in shards}
    try:
        pending: set[asyncio.Future[T]] = set(tasks.values())
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            if not partial and any(not t.cancelled() and t.exception() is not None for t in done):
                break
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    for shard, task in tasks.items():
        if task.cancelled():
            continue
        error = task.exception()
        if error is None:
            results[shard] = task.result()
        elif not isinstance(error, Exception):
            raise error  # KeyboardInterrupt and friends are not a shard's failure
        else:
            failures[shard] = error
    if failures and not partial:
        first = next(s for s in shards if s in failures)
        raise ShardError(first, failures[first], failures) from failures[first]
    return results, failures


# -- plans ----------------------------------------------------------------------------------


def _unwrap(node: Any) -> Any:
    unwrap = getattr(node, "unwrap", None)
    return unwrap() if callable(unwrap) else node


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


def _sql_of(node: Any) -> tuple[str, tuple[Any, ...]] | None:
    try:
        sql, params = _pw.Context().sql(node).query()
    except Exception:
        return None
    return sql, tuple(params)


def column_position(node: Any, select: Sequence[Any]) -> int | None:
    """Where ``node`` (an ORDER BY / GROUP BY item) is in the select list, if it is there."""
    inner = _unwrap(node)
    for i, item in enumerate(select):
        if item is node or _unwrap(item) is inner:
            return i
    alias, text = _alias_of(node), _sql_name(node)
    for i, item in enumerate(select):
        item_alias, item_inner = _alias_of(item), _unwrap(item)
        if alias is not None and item_alias == alias:
            return i
        if text is not None:
            if text == item_alias:
                return i
            field_names = (
                (item_inner.name, item_inner.column_name) if isinstance(item_inner, _pw.Field) else ()
            )
            if item_alias is None and text in field_names:
                return i
        if item_alias is None and _same_field(inner, item_inner):
            return i
    if not isinstance(inner, _pw.Field):
        wanted = _sql_of(inner)
        if wanted is not None:
            for i, item in enumerate(select):
                if _sql_of(_unwrap(item)) == wanted:
                    return i
    return None


def _describe(node: Any) -> str:
    found = _sql_of(node)
    return found[0] if found is not None else repr(node)


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
class _OrderColumn:
    position: int
    descending: bool
    nulls_first: bool


@dataclass
class SelectPlan:
    """How a SELECT runs on several shards and how their answers are merged."""

    kind: Literal["rows", "aggregate", "grouped"]
    order: list[_OrderColumn] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    distinct: bool = False
    aggregates: dict[int, str] = field(default_factory=dict)
    group_positions: list[int] = field(default_factory=list)

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


def _aggregate_name(node: Any) -> str | None:
    inner = _unwrap(node)
    if not isinstance(inner, _pw.Function):
        return None
    name = str(inner.name).upper()
    if name == "AVG":
        raise RoutingError(
            f"{_describe(inner)}: AVG cannot be merged across shards; select SUM(x) and COUNT(x)"
            " instead and divide the merged sums"
        )
    if name not in _MERGEABLE:
        return None
    for arg in inner.arguments:
        distinct = (isinstance(arg, _pw.Function) and str(arg.name).upper() == "DISTINCT") or (
            isinstance(arg, _pw.NodeList)
            and arg.nodes
            and _sql_name(arg.nodes[0]) is not None
            and str(_sql_name(arg.nodes[0])).upper() == "DISTINCT"
        )
        if distinct and name in ("COUNT", "SUM"):
            raise RoutingError(
                f"{_describe(inner)}: {name}(DISTINCT ...) cannot be merged across shards"
                " (a value may be on several shards); select the distinct values and count them"
            )
    return name


def _is_window(node: Any) -> bool:
    inner = _unwrap(node)
    return isinstance(inner, _pw.NodeList) and any(_sql_name(n) == "OVER" for n in inner.nodes)


def plan_select(query: Any, dialect: str) -> SelectPlan:
    """Check that ``query`` can be merged across shards and say how; RoutingError if not."""
    if isinstance(query, _pw.CompoundSelectQuery) or not isinstance(query, _pw.Select):
        raise RoutingError("only a plain SELECT can be fanned out (not UNION/INTERSECT/EXCEPT or raw SQL)")
    if query._windows or any(_is_window(item) for item in query._returning):
        raise RoutingError("window functions cannot be merged across shards")
    if query._distinct:  # a non-empty tuple: DISTINCT ON (...)
        raise RoutingError("DISTINCT ON cannot be merged across shards")
    select = list(query._returning)
    aggregates = {i: name for i, item in enumerate(select) if (name := _aggregate_name(item)) is not None}
    plan = SelectPlan(
        kind="rows",
        limit=query._limit,
        offset=query._offset or 0,
        distinct=query._distinct is not None or query._simple_distinct is True,
        aggregates=aggregates,
    )
    if query._group_by:
        plan.kind = "grouped"
        for node in query._group_by:
            position = column_position(node, select)
            if position is None:
                raise RoutingError(
                    f"GROUP BY {_describe(node)}: select it too, to merge the groups across shards"
                )
            plan.group_positions.append(position)
    elif aggregates:
        plan.kind = "aggregate"
    if plan.kind != "rows":
        if query._having is not None:
            raise RoutingError("HAVING cannot be applied across shards; filter the merged groups instead")
        for i, item in enumerate(select):
            if i not in aggregates and i not in plan.group_positions:
                raise RoutingError(
                    f"column {_describe(item)} is neither grouped nor COUNT/SUM/MIN/MAX:"
                    " it cannot be merged across shards"
                )
    for item in query._order_by or ():
        node, descending, nulls = item, False, None
        if isinstance(item, _pw.Ordering):
            node, descending, nulls = item.node, str(item.direction).upper() == "DESC", item.nulls
        position = column_position(node, select)
        if position is None:
            raise RoutingError(
                f"ORDER BY {_describe(node)}: a fan-out merges on the selected columns, so select it too"
            )
        if nulls is not None:
            nulls_first = str(nulls).lower() == "first"
        else:
            nulls_first = (dialect in _NULLS_SMALL) != descending
        plan.order.append(_OrderColumn(position, descending, nulls_first))
    return plan


# -- per-shard queries ------------------------------------------------------------------------


def _raw_rows(cursor: Any) -> list[Any]:
    # Stands in for the cursor wrapper: the "rows" the shard returns are its Result objects.
    return [cursor]


def shard_query(query: Any, plan: SelectPlan) -> Any:
    """The copy of ``query`` each shard runs: it returns raw :class:`Result` objects."""
    clone = query.clone()
    if plan.kind == "rows":
        clone._limit = plan.stop
        clone._offset = None
    else:
        # Every group is needed from every shard; ordering and paging happen after the merge.
        clone._order_by = None
        clone._limit = clone._offset = None
    clone._get_cursor_wrapper = _raw_rows
    return clone


# -- merging materialised results -------------------------------------------------------------


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


def _combine(name: str, values: Iterable[Any]) -> Any:
    present = [value for value in values if value is not None]
    if name == "COUNT":
        return sum(present)
    if not present:
        return None
    if name == "SUM":
        total = present[0]
        for value in present[1:]:
            total = total + value
        return total
    return min(present) if name == "MIN" else max(present)


def _combine_groups(plan: SelectPlan, per_shard: Sequence[Sequence[Any]]) -> list[Any]:
    groups: dict[Any, list[Sequence[Any]]] = {}
    for row in itertools.chain.from_iterable(per_shard):
        groups.setdefault(tuple(row[p] for p in plan.group_positions), []).append(row)
    merged = []
    for rows in groups.values():
        combined = list(rows[0])
        for position, name in plan.aggregates.items():
            combined[position] = _combine(name, (row[position] for row in rows))
        merged.append(tuple(combined))
    return merged


def merge_results(query: Any, plan: SelectPlan, results: Sequence[Any]) -> list[Any]:
    """Merge the shards' raw results (in shard order) and shape them as ``query`` would."""
    raw = [result[0] for result in results if result]
    description = next((r.description for r in raw if r.description is not None), None)
    if description is None:
        return []
    per_shard = [list(r.rows) for r in raw]
    if plan.kind == "rows":
        merged: Iterable[Any] = (
            heapq.merge(*per_shard, key=plan.sort_key) if plan.order else itertools.chain(*per_shard)
        )
        if plan.distinct:
            merged = _unique(merged)
        rows = list(itertools.islice(merged, plan.offset, plan.stop))
    else:
        rows = _combine_groups(plan, per_shard)
        if plan.order:
            rows.sort(key=plan.sort_key)
        rows = rows[plan.offset : plan.stop]
    return list(query._get_cursor_wrapper(Result(rows, description)))


# -- merging streams ---------------------------------------------------------------------------


Source = tuple[str, AsyncIterator[tuple[Any, Any]]]


def _fail(shard: str, exc: Exception, failures: dict[str, BaseException], partial: bool) -> None:
    if not partial:
        raise ShardError(shard, exc, {**failures, shard: exc}) from exc
    failures[shard] = exc


async def _close_all(sources: Sequence[Source]) -> None:
    # Every source must be closed (each holds a shard's connection); a source whose cursor
    # cannot be closed cleanly has already marked its connection broken, so the pool discards it.
    for _, iterator in sources:
        close = getattr(iterator, "aclose", None)
        if close is None:
            continue
        try:
            await close()
        except Exception:
            continue


async def merge_sorted(
    sources: Sequence[Source], *, failures: dict[str, BaseException], partial: bool
) -> AsyncGenerator[Any, None]:
    """K-way merge of async ``(key, item)`` streams that are each sorted by key.

    Holds one item per source; a source advances only after its item was yielded. Items
    with equal keys come in source order. Failed sources raise :class:`ShardError`, or
    with ``partial`` are recorded in ``failures`` and dropped.
    """
    heap: list[tuple[Any, int, Any]] = []

    async def advance(index: int) -> None:
        shard, iterator = sources[index]
        try:
            key, item = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except Exception as exc:
            _fail(shard, exc, failures, partial)
            return
        heapq.heappush(heap, (key, index, item))

    try:
        # The first item of every source at once: each shard opens its cursor concurrently.
        results = await asyncio.gather(*(advance(i) for i in range(len(sources))), return_exceptions=True)
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome
        while heap:
            _, index, item = heapq.heappop(heap)
            yield item
            await advance(index)
    finally:
        await _close_all(sources)


async def chain_sources(
    sources: Sequence[Source], *, failures: dict[str, BaseException], partial: bool
) -> AsyncGenerator[Any, None]:
    """The sources one after another (no ORDER BY): one shard's stream is open at a time."""
    try:
        for shard, iterator in sources:
            try:
                async for _, item in iterator:
                    yield item
            except Exception as exc:
                _fail(shard, exc, failures, partial)
    finally:
        await _close_all(sources)


async def raw_pairs(
    chunks: Any, shape: Callable[[Any], Iterable[Any]], key: Callable[[Sequence[Any]], Any]
) -> AsyncGenerator[tuple[Any, Any], None]:
    """``(sort key, shaped row)`` for each row of a shard's stream of raw chunks."""
    async with chunks as results:
        async for chunk in results:
            raw = list(chunk.rows)
            shaped = list(shape(chunk))
            for raw_row, row in zip(raw, shaped, strict=True):
                yield key(raw_row), row


async def page(rows: AsyncIterator[Any], offset: int, stop: int | None) -> AsyncGenerator[Any, None]:
    """OFFSET/LIMIT over an async stream; stops pulling as soon as the page is full."""
    async with aclosing(rows) as items:  # type: ignore[type-var]
        index = 0
        if stop is not None and stop <= offset:
            return
        async for item in items:
            if index >= offset:
                yield item
            index += 1
            if stop is not None and index >= stop:
                return


class FanOutStream:
    """Rows streamed from one or more shards: ``async for`` it, ideally inside ``async with``.

    ``async with`` closes every shard's cursor (and returns its connection) as soon as the
    block ends, even if the loop stopped early. With ``partial=True``, ``failures`` lists the
    shards that failed mid-stream (their remaining rows are missing).
    """

    def __init__(self, rows: AsyncGenerator[Any, None], failures: dict[str, BaseException]) -> None:
        self._rows = rows
        self.failures = failures

    def __aiter__(self) -> FanOutStream:
        return self

    async def __anext__(self) -> Any:
        return await self._rows.__anext__()

    async def __aenter__(self) -> FanOutStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop streaming and release every shard's connection."""
        await self._rows.aclose()


# -- walking every row in batches ---------------------------------------------------------------

#: Makes a shard's batch stream (a fresh generator per call).
BatchSource = Callable[[], AsyncGenerator[list[Any], None]]
ProgressCallback = Callable[[str, int, int], Any]


class Progress:
    """Calls ``on_progress(shard, rows_done_on_shard, total_done)``, awaiting it if it is async."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.total = 0

    async def report(self, shard: str, done: int) -> None:
        if self.callback is None:
            return
        outcome = self.callback(shard, done, self.total)
        if inspect.isawaitable(outcome):
            await outcome


def walk_order(model: Any, order_by: Any, op: str) -> list[Any]:
    """The fields a walk pages by: ``order_by`` (NOT NULL fields of ``model``) + the primary key."""
    meta: Any = model._meta
    pk_fields = list(meta.get_primary_keys())
    if not pk_fields:
        raise ConfigurationError(f"{op}: {model.__name__} has no primary key to page by")
    if order_by is None:
        given: list[Any] = []
    else:
        given = list(order_by) if isinstance(order_by, (list, tuple)) else [order_by]
    fields = []
    for item in given:
        found = meta.fields.get(item) if isinstance(item, str) else item
        if not isinstance(found, _pw.Field) or found.model is not model:
            raise ConfigurationError(f"{op}: order_by must be fields of {model.__name__}, got {item!r}")
        if found.null:
            # "WHERE (a, id) > (last a, last id)" never matches a NULL: those rows would be skipped.
            raise ConfigurationError(
                f"{op}: order_by field {found.name!r} is nullable; NULLs cannot be paged"
            )
        fields.append(found)
    # The primary key breaks ties, so "the rows after the last one seen" is exact.
    return fields + [f for f in pk_fields if all(f is not g for g in fields)]


async def keyset_batches(
    manager: Manager, model: Any, fields: list[Any], batch_size: int, where: Any
) -> AsyncGenerator[list[Any], None]:
    """A shard's rows in ``fields`` order, ``batch_size`` at a time, by keyset pagination.

    Each batch is its own short query, so no cursor or connection is held between
    batches, however long the caller takes over one.
    """
    last: tuple[Any, ...] | None = None
    while True:
        query = model.select()
        if where is not None:
            query = query.where(where)
        if last is not None:
            query = query.where(fields[0] > last[0] if len(fields) == 1 else _pw.Tuple(*fields) > last)
        rows = await manager.execute(query.order_by(*fields).limit(batch_size))
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        last = tuple(rows[-1].__data__.get(f.name) for f in fields)


async def walk_merged(
    sources: Mapping[str, BatchSource], *, key: Callable[[Any], Any], progress: Progress
) -> AsyncGenerator[Any, None]:
    """Rows of every shard's batches in global ``key`` order (a k-way merge)."""

    async def tagged(shard: str, make: BatchSource) -> AsyncGenerator[tuple[Any, Any], None]:
        done = 0
        async with aclosing(make()) as batches:
            async for batch in batches:
                done += len(batch)
                last = len(batch) - 1
                for i, row in enumerate(batch):
                    yield key(row), (shard, row, done if i == last else None)

    merged = merge_sorted([(s, tagged(s, make)) for s, make in sources.items()], failures={}, partial=False)
    async with aclosing(merged) as items:
        async for shard, row, done in items:
            progress.total += 1
            yield row
            if done is not None:  # the caller is back for more: that batch is consumed
                await progress.report(shard, done)


async def walk_parallel(
    sources: Mapping[str, BatchSource], *, limit: int, progress: Progress
) -> AsyncGenerator[Any, None]:
    """Rows of every shard's batches as the shards deliver them (``limit`` shards at once)."""
    queue: asyncio.Queue[tuple[str, list[Any] | None, Exception | None]] = asyncio.Queue(
        maxsize=max(len(sources), 1)
    )
    semaphore = asyncio.Semaphore(limit)

    async def produce(shard: str, make: BatchSource) -> None:
        try:
            async with semaphore, aclosing(make()) as batches:
                async for batch in batches:
                    await queue.put((shard, batch, None))
        except Exception as exc:
            await queue.put((shard, None, exc))
            return
        await queue.put((shard, None, None))

    tasks = [asyncio.ensure_future(produce(shard, make)) for shard, make in sources.items()]
    done = dict.fromkeys(sources, 0)
    remaining = len(tasks)
    try:
        while remaining:
            shard, batch, error = await queue.get()
            if error is not None:
                raise ShardError(shard, error) from error
            if batch is None:
                remaining -= 1
                continue
            for row in batch:
                progress.total += 1
                yield row
            done[shard] += len(batch)
            await progress.report(shard, done[shard])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def process_batches(
    sources: Mapping[str, BatchSource],
    fn: Callable[[list[Any]], Awaitable[Any]],
    *,
    concurrency: int,
    limit: int,
    progress: Progress,
) -> int:
    """``await fn(batch)`` for every batch, ``concurrency`` at once; the number of rows done."""
    queue: asyncio.Queue[tuple[str, list[Any]] | None] = asyncio.Queue(maxsize=concurrency)
    semaphore = asyncio.Semaphore(limit)
    done = dict.fromkeys(sources, 0)

    async def produce(shard: str, make: BatchSource) -> None:
        try:
            async with semaphore, aclosing(make()) as batches:
                async for batch in batches:
                    await queue.put((shard, batch))
        except Exception as exc:
            raise ShardError(shard, exc) from exc

    async def feed() -> None:
        producers = [asyncio.ensure_future(produce(shard, make)) for shard, make in sources.items()]
        try:
            await asyncio.gather(*producers)
        finally:
            # gather() leaves the other producers running when one fails: stop them.
            for producer in producers:
                producer.cancel()
            await asyncio.gather(*producers, return_exceptions=True)
        for _ in range(concurrency):
            await queue.put(None)  # one "no more batches" per worker

    async def work() -> None:
        while (item := await queue.get()) is not None:
            shard, batch = item
            await fn(batch)
            done[shard] += len(batch)
            progress.total += len(batch)
            await progress.report(shard, done[shard])

    tasks = [asyncio.ensure_future(feed()), *(asyncio.ensure_future(work()) for _ in range(concurrency))]
    try:
        pending: set[asyncio.Future[None]] = set(tasks)
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in finished:
                error = task.exception()
                if error is not None:
                    raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return progress.total
