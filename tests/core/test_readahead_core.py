"""``_readahead.read_ahead``: each next chunk requested while the consumer handles the current one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

import pytest

from aiopeewee_dist._readahead import read_ahead


class Source:
    """Chunks 0..count-1; each request waits for ``release`` when ``gate`` is set."""

    def __init__(self, count: int, gate: bool = False) -> None:
        self.count = count
        self.requested: list[int] = []
        self.served: list[int] = []
        self.tasks: list[asyncio.Task[object] | None] = []
        self.closed = False
        self.second_requested = asyncio.Event()
        self.release = asyncio.Event()
        if not gate:
            self.release.set()

    async def chunks(self) -> AsyncGenerator[int, None]:
        try:
            for n in range(self.count):
                self.requested.append(n)
                self.tasks.append(asyncio.current_task())
                if n == 1:
                    self.second_requested.set()
                await self.release.wait()
                self.served.append(n)
                yield n
        finally:
            self.closed = True


async def test_the_next_chunk_is_requested_while_the_consumer_holds_the_current_one() -> None:
    source = Source(3)
    async with aclosing(read_ahead(source.chunks())) as chunks:
        assert await chunks.__anext__() == 0
        await asyncio.sleep(0)  # the request's task takes its first step
        assert source.requested == [0, 1]
        assert [n async for n in chunks] == [1, 2]
    assert source.closed


async def test_the_first_chunk_is_taken_in_the_callers_task() -> None:
    source = Source(2)
    async with aclosing(read_ahead(source.chunks())) as chunks:
        assert [n async for n in chunks] == [0, 1]
    assert source.tasks[0] is asyncio.current_task()
    assert source.tasks[1] is not asyncio.current_task()


async def test_without_ahead_nothing_is_requested_before_it_is_asked_for() -> None:
    source = Source(3)
    async with aclosing(read_ahead(source.chunks(), ahead=False)) as chunks:
        assert await chunks.__anext__() == 0
        await asyncio.sleep(0)
        assert source.requested == [0]
    assert source.closed


async def test_an_early_exit_waits_for_the_request_in_flight_then_closes_the_source() -> None:
    source = Source(3, gate=True)
    source.release.set()
    chunks = read_ahead(source.chunks())
    assert await chunks.__anext__() == 0
    source.release.clear()  # chunk 1's request is now in flight and waits
    await asyncio.sleep(0)
    closing = asyncio.create_task(chunks.aclose())
    await asyncio.sleep(0)
    assert not closing.done() and not source.closed  # the request runs on: it is not cancelled
    source.release.set()
    await asyncio.wait_for(closing, 5)
    assert source.served == [0, 1] and source.closed


async def test_a_cancelled_consumer_cancels_the_request_and_closes_the_source() -> None:
    source = Source(3, gate=True)
    source.release.set()

    async def consume() -> None:
        async with aclosing(read_ahead(source.chunks())) as chunks:
            async for _ in chunks:
                source.release.clear()  # every later request waits

    task = asyncio.create_task(consume())
    await asyncio.wait_for(source.second_requested.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert source.served == [0] and source.closed


async def test_an_error_in_a_request_reaches_the_consumer() -> None:
    async def failing() -> AsyncGenerator[int, None]:
        yield 0
        raise ValueError("chunk 1 failed")

    with pytest.raises(ValueError, match="chunk 1 failed"):
        async with aclosing(read_ahead(failing())) as chunks:
            async for _ in chunks:
                pass
