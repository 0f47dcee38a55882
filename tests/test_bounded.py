"""aiopeewee_dist._bounded: a call is bounded in time even when it is slow to accept cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from aiopeewee_dist._bounded import CANCEL_GRACE, bounded


async def _stubborn(log: list[str]) -> str:
    """Like psycopg on a silent server: a first cancellation starts a long cleanup, a second
    one ends it at once."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        log.append("cancelled")
        try:
            await asyncio.sleep(10)  # "sending the server a cancel request"
        except asyncio.CancelledError:
            log.append("cancelled again")
        raise
    return "never"


async def test_a_stubborn_call_times_out_within_the_grace() -> None:
    log: list[str] = []
    start = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await bounded(_stubborn(log), 0.2)
    took = time.monotonic() - start
    assert 0.2 <= took < 0.2 + CANCEL_GRACE + 1.0, took
    assert log == ["cancelled", "cancelled again"]


async def test_a_cooperative_call_gets_its_grace_and_only_one_cancel() -> None:
    log: list[str] = []

    async def polite() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # a quick cancel request that succeeds
            log.append("cleaned up")
            raise

    start = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await bounded(polite(), 0.1)
    assert time.monotonic() - start < 0.1 + CANCEL_GRACE
    assert log == ["cleaned up"]


async def test_results_and_errors_pass_through() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        raise KeyError("x")

    assert await bounded(answer(), 1.0) == 42
    with pytest.raises(KeyError):
        await bounded(fail(), 1.0)


async def test_the_callers_cancellation_is_bounded_too() -> None:
    log: list[str] = []
    caller = asyncio.create_task(bounded(_stubborn(log), 60))
    await asyncio.sleep(0.05)
    start = time.monotonic()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert time.monotonic() - start < CANCEL_GRACE + 1.0
    assert log == ["cancelled", "cancelled again"]
