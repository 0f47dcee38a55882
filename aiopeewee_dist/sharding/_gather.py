"""Running one operation on several shards at once, with or without partial results.

The rule for errors is the same everywhere in the sharded manager: an operation that fans out
(``shards=`` given, or more than one target shard) wraps a shard's failure in
:class:`ShardError` naming the shard (the cause chained); a routed operation on one shard
raises that shard's own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from .._errors import ShardError

__all__ = ["FanOutResult", "gather_shards", "record_failure"]

T = TypeVar("T")


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


def record_failure(shard: str, exc: Exception, failures: dict[str, BaseException], partial: bool) -> None:
    """Keep a shard's failure (``partial``) or raise it as :class:`ShardError` naming the shard."""
    if not partial:
        raise ShardError(shard, exc, {**failures, shard: exc}) from exc
    failures[shard] = exc


async def _one(
    shard: str, run: Callable[[str], Awaitable[T]], partial: bool
) -> tuple[dict[str, T], dict[str, BaseException]]:
    results: dict[str, T] = {}
    failures: dict[str, BaseException] = {}
    try:
        results[shard] = await run(shard)
    except Exception as exc:
        record_failure(shard, exc, failures, partial)
    return results, failures


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
    if len(shards) == 1:
        return await _one(shards[0], run, partial)
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
    results: dict[str, T] = {}
    failures: dict[str, BaseException] = {}
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
