"""The object ``Manager.iterate()`` returns."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

__all__ = ["RowStream"]


class RowStream:
    """An async iterator over streamed rows that is also an ``async with`` block.

    ``async with`` closes the stream (and returns its connection) at once when the block
    ends, also when the loop stopped early.
    """

    def __init__(self, rows: AsyncGenerator[Any, None]) -> None:
        self._rows = aclosing(rows)
        self._iter = rows

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iter

    async def __aenter__(self) -> AsyncIterator[Any]:
        return await self._rows.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._rows.__aexit__(*exc_info)

    async def aclose(self) -> None:
        await self._iter.aclose()
