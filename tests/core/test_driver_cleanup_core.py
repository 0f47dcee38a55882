"""A stream's cleanup run by the event loop's finalizer survives garbage collection (no server)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncGenerator
from typing import Any

from aiopeewee_dist._drivers._base import rooted


class Reader:
    """Stands for aiomysql's asyncio StreamReader, which its transport reaches only weakly."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    async def read(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter


async def test_rooted_cleanup_of_an_abandoned_stream_survives_garbage_collection() -> None:
    """The finalizer's task waits on a future only a reference cycle reaches; without rooted()
    gc.collect() destroys it ('Task was destroyed but it is pending') and the cleanup never ends."""
    loop = asyncio.get_running_loop()
    failures: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: failures.append(context))
    readers: list[weakref.ref[Reader]] = []
    cleaned: list[bool] = []

    async def stream() -> AsyncGenerator[int, None]:
        reader = Reader()
        readers.append(weakref.ref(reader))
        try:
            yield 1
            yield 2
        finally:
            await rooted(reader.read())  # as the aiomysql driver drains an unbuffered result
            cleaned.append(True)

    try:
        async for _ in stream():
            break  # abandoned: the loop's async-generator finalizer closes it in a task of its own
        for _ in range(5):
            await asyncio.sleep(0)
        started = readers[0]()
        assert started is not None and started.waiter is not None, "the cleanup did not start"
        del started
        gc.collect()
        reader = readers[0]()
        assert reader is not None and reader.waiter is not None, failures
        reader.waiter.set_result(None)  # the server's answer arrives
        del reader
        for _ in range(5):
            await asyncio.sleep(0)
        assert not failures, failures
        assert cleaned == [True]
    finally:
        loop.set_exception_handler(None)
