"""Fetching a stream's next chunk while its consumer handles the current one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, TypeVar

from ._drivers import rooted

__all__ = ["read_ahead"]

T = TypeVar("T")
_END: Any = object()


async def _next(chunks: AsyncGenerator[T, None]) -> T:
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        end: T = _END  # a task cannot end with StopAsyncIteration
        return end


async def read_ahead(chunks: AsyncGenerator[T, None], *, ahead: bool = True) -> AsyncGenerator[T, None]:
    """``chunks``, each next one requested (in a task) as soon as the current one is handed out
    (with ``ahead``; else as they are).

    The consumer's work on a chunk and the server's work on the next one overlap, and several
    streams consumed in turn (a fan-out) all keep their servers busy. Only for a stream that
    holds its connection alone: the request runs while the consumer may send other queries.
    The first chunk is taken in the caller's task (it opens the stream, which may read the
    task's state); an early exit waits for the request in flight, so that ``chunks`` is
    closed cleanly, with its connection reusable.
    """
    async with aclosing(chunks):
        if not ahead:
            async for item in chunks:
                yield item
            return
        item = await _next(chunks)
        pending: asyncio.Future[T] | None = None
        try:
            while item is not _END:
                # Rooted: a request waiting on a driver's socket may be reachable only through
                # reference cycles (the loop holds tasks weakly) once the stream is abandoned.
                pending = asyncio.ensure_future(rooted(_next(chunks)))
                yield item
                item = await pending
                pending = None
        finally:
            if pending is not None:
                await _settle(pending)


async def _settle(pending: asyncio.Future[Any]) -> None:
    """Wait until ``pending`` ended: ``chunks`` cannot be closed while the request runs, nor its
    connection given back. Cancelled meanwhile, cancel the request, wait for it, then raise."""
    cancelled = False
    while not pending.done():
        try:
            await asyncio.wait([pending])
        except asyncio.CancelledError:
            cancelled = True
            pending.cancel()
    if not pending.cancelled():
        pending.exception()  # retrieved: the early exit is what the caller sees
    if cancelled:
        raise asyncio.CancelledError
