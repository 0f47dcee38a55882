"""Bounding a driver call in time, even when the driver's own cancellation handling waits.

``asyncio.wait_for`` cancels the call on timeout and then waits for it to end, however long
that takes. psycopg 3 answers a cancellation by sending the server a cancel request and
waiting for the statement to stop, up to 5 + 5 seconds: against a server that stopped
answering, a ``query_timeout`` of 1 s then fired after 11 s, and a health probe's timeout of
0.5 s held the monitor's whole round as long. :func:`bounded` gives the driver a short grace
to end the call cleanly, then cancels it again, on which drivers give up at once (psycopg
closes the connection; the caller discards a timed-out connection anyway).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["CANCEL_GRACE", "bounded"]

T = TypeVar("T")

#: Seconds a driver gets to end a cancelled call cleanly (psycopg: a cancel request to the
#: server, which on a live server takes milliseconds) before it is cancelled again.
CANCEL_GRACE = 1.0
_RETRY = 0.1


def _retrieve(task: asyncio.Future[Any]) -> None:
    # A call abandoned by a cancelled caller ends in the background: never log its error.
    if not task.cancelled():
        task.exception()


async def bounded(call: Awaitable[T], timeout: float) -> T:
    """``await call``, raising ``asyncio.TimeoutError`` after ``timeout`` seconds.

    Returns or raises within ``timeout + CANCEL_GRACE`` (plus loop turns); the caller's own
    cancellation is bounded by ``CANCEL_GRACE`` in the same way. A call that completes
    although it was cancelled returns its result, as ``asyncio.wait_for`` does.
    """
    task = asyncio.ensure_future(call)
    task.add_done_callback(_retrieve)
    try:
        await asyncio.wait((task,), timeout=timeout)
    except BaseException:  # the caller was cancelled
        await _stop(task)
        raise
    if not task.done():
        await _stop(task)
        if task.cancelled() or task.exception() is not None:
            # An error here is the driver's answer to the cancellation (e.g. QueryCanceled).
            raise asyncio.TimeoutError from None
    return task.result()


async def _stop(task: asyncio.Future[Any]) -> None:
    task.cancel()
    await asyncio.wait((task,), timeout=CANCEL_GRACE)
    # Cancel until done: a second cancellation interrupts the driver's cleanup, and a
    # cancellation can be lost when the call completes in the same loop turn.
    while not task.done():
        task.cancel()
        await asyncio.wait((task,), timeout=_RETRY)
