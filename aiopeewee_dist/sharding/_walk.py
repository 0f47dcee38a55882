"""Walking every row of a model, shard by shard, in keyset-paginated batches.

Each batch is its own short query, so a slow consumer holds no cursor, connection or snapshot
open. Batches are merged by key (:func:`walk_merged`), handed on as the shards deliver them
(:func:`walk_parallel`), or given to a function with bounded concurrency
(:func:`process_batches`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import peewee

from .._errors import ConfigurationError, ShardError
from ._stream import merge_sorted

if TYPE_CHECKING:
    from .._manager import Manager

__all__ = [
    "BatchSource",
    "Progress",
    "ProgressCallback",
    "keyset_batches",
    "process_batches",
    "walk_merged",
    "walk_order",
    "walk_parallel",
]

# peewee's type stubs leave out the model internals read below.
_pw: Any = peewee


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
