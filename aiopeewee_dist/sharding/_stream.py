"""The streaming merge: shards' row streams merged lazily into one ``async for``.

A k-way merge holds one row per shard and asks a shard for its next row only after the
previous one was yielded, so memory stays at one chunk per shard whatever the result size.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import Any

from .._compat import cursor_wrapper
from .._errors import ShardError
from .._rows import row_builder
from ._gather import record_failure

__all__ = [
    "FanOutStream",
    "chain_sources",
    "merge_sorted",
    "page",
    "raw_pairs",
    "relay",
    "relay_wrapped",
]

logger = logging.getLogger("aiopeewee_dist.sharding")

Source = tuple[str, AsyncIterator[tuple[Any, Any]]]


async def _close_all(sources: Sequence[Source]) -> None:
    # Every source must be closed (each holds a shard's connection). A cursor that cannot be
    # closed cleanly has already marked its connection broken, so the pool discards it; the
    # error is logged, not raised, so that the other shards' sources are closed too.
    for shard, iterator in sources:
        close = getattr(iterator, "aclose", None)
        if close is None:
            continue
        try:
            await close()
        except Exception:
            logger.warning("shard %s: closing its stream failed", shard, exc_info=True)


async def _next_pair(source: Source, failures: dict[str, BaseException], partial: bool) -> Any:
    """The source's next ``(key, item)``; None at its end, or when it failed (then recorded)."""
    shard, iterator = source
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None
    except Exception as exc:
        record_failure(shard, exc, failures, partial)
        return None


async def _first_pairs(
    sources: Sequence[Source], failures: dict[str, BaseException], partial: bool
) -> list[Any]:
    """Every source's first ``(key, item)`` (or None), awaited at once: each shard opens its
    cursor concurrently."""
    results = await asyncio.gather(
        *(_next_pair(source, failures, partial) for source in sources), return_exceptions=True
    )
    for outcome in results:
        if isinstance(outcome, BaseException):
            raise outcome
    return results


async def merge_sorted(
    sources: Sequence[Source], *, failures: dict[str, BaseException], partial: bool
) -> AsyncGenerator[Any, None]:
    """K-way merge of async ``(key, item)`` streams that are each sorted by key.

    Holds one item per source; a source advances only after its item was yielded. Items
    with equal keys come in source order. Failed sources raise :class:`ShardError`, or
    with ``partial`` are recorded in ``failures`` and dropped.
    """
    try:
        heap = [(p[0], i, p[1]) for i, p in enumerate(await _first_pairs(sources, failures, partial)) if p]
        heapq.heapify(heap)
        while heap:
            _, index, item = heapq.heappop(heap)
            yield item
            pair = await _next_pair(sources[index], failures, partial)
            if pair is not None:
                heapq.heappush(heap, (pair[0], index, pair[1]))
    finally:
        await _close_all(sources)


async def chain_sources(
    sources: Sequence[Source], *, failures: dict[str, BaseException], partial: bool
) -> AsyncGenerator[Any, None]:
    """The sources one after another (no ORDER BY), all started at once.

    Each source's first item is awaited concurrently, as the merge does: every shard opens its
    cursor and, fetching each next chunk ahead (``Manager.iterate``), keeps its server busy
    while the shards before it are yielded. Memory stays at about two chunks per shard.
    """
    try:
        firsts = await _first_pairs(sources, failures, partial)
        for (shard, iterator), first in zip(sources, firsts, strict=True):
            if first is None:
                continue
            yield first[1]
            try:
                async for _, item in iterator:
                    yield item
            except Exception as exc:
                record_failure(shard, exc, failures, partial)
    finally:
        await _close_all(sources)


async def raw_pairs(
    chunks: Any, query: Any, key: Callable[[Sequence[Any]], Any]
) -> AsyncGenerator[tuple[Any, Any], None]:
    """``(sort key, row shaped as query's)`` for each row of a shard's stream of raw chunks.

    A model instance is made as the merge takes its row: a chunk of them alive at once
    outlives young GC passes, which then cost more than the building (see Node._stream).
    """
    async with chunks as results:
        async for chunk in results:
            build = row_builder(query, chunk.description)
            if build is not None:
                for raw_row in chunk.rows:
                    yield key(raw_row), build(raw_row)
                continue
            raw = list(chunk.rows)  # before Peewee's wrapper reads the result
            for raw_row, row in zip(raw, list(cursor_wrapper(query, chunk)), strict=True):
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


async def relay(stream: Any) -> AsyncGenerator[Any, None]:
    """A shard's own stream (a routed ``iterate``): its errors are raised as they are."""
    async with stream as rows:
        async for row in rows:
            yield row


async def relay_wrapped(
    stream: Any, shard: str, failures: dict[str, BaseException], partial: bool
) -> AsyncGenerator[Any, None]:
    """A fan-out that ended up on one shard: failures reported the fan-out way."""
    try:
        async with stream as rows:
            async for row in rows:
                yield row
    except Exception as exc:
        if not partial:
            raise ShardError(shard, exc) from exc
        failures[shard] = exc


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
