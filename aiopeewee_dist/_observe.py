"""What a node tells about its statements: the telemetry seam and latency percentiles.

A node with no observer (aiopeewee_dist.telemetry) pays one attribute check per statement;
the observer, when set, sees every statement with the time it waited for a connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._node import Node
    from ._pool import ConnectionPool, PooledConnection
    from ._sharing import SharedCheckout

__all__ = ["Observation", "StatementObserver", "acquire_timed", "percentiles_ms"]


class Observation(Protocol):
    """One statement being observed."""

    def waited(self, seconds: float) -> None:
        """The statement waited ``seconds`` for a connection (0 on a pinned one)."""


class StatementObserver(Protocol):
    """Told about every statement a node runs (``Node.telemetry``)."""

    def statement(self, node: Node, sql: str, params: Sequence[Any]) -> AbstractContextManager[Observation]:
        """A block around one statement; an exception leaving it is the statement's error."""


async def acquire_timed(pool: ConnectionPool | SharedCheckout, observation: Observation) -> PooledConnection:
    """``pool.acquire()``, telling ``observation`` how long it waited."""
    start = time.perf_counter()
    pc = await pool.acquire()
    observation.waited(time.perf_counter() - start)
    return pc


def percentiles_ms(samples: Iterable[float]) -> dict[str, float | None]:
    """p50/p95/p99 of latency samples (seconds), in milliseconds, as ``stats()`` reports them."""
    ordered = sorted(samples)
    if not ordered:
        return {"latency_p50_ms": None, "latency_p95_ms": None, "latency_p99_ms": None}
    last = len(ordered) - 1
    return {
        f"latency_p{p}_ms": round(ordered[min(last, round(last * p / 100))] * 1000, 3) for p in (50, 95, 99)
    }
