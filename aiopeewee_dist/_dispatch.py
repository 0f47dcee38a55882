"""Running a manager's reads and writes where the router sends them.

Between the Manager and the Router: a write is recorded in the caller's read-your-writes
session (with the primary's position, in causal mode, read on the session that wrote); a
read may wait for a replica to replay that position (``causal_wait``), and a read that
finds a freely chosen replica unreachable is retried once on another node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from . import _context
from ._consistency import Consistency
from ._errors import NodeUnavailable
from ._health import HealthMonitor
from ._node import Node, NodeRef
from ._replication import UNKNOWN_POSITION, Position
from ._router import Router

__all__ = ["Dispatcher"]

logger = logging.getLogger("aiopeewee_dist.router")
T = TypeVar("T")


class Dispatcher:
    """Reads and writes of one manager, on the node its router chooses."""

    def __init__(
        self,
        router: Router,
        monitor: HealthMonitor,
        consistency: Consistency,
        *,
        before_read: Callable[[], None],
    ) -> None:
        self._router = router
        self._monitor = monitor
        self._consistency = consistency
        self._before_read = before_read

    async def write(self, run: Callable[[Node], Awaitable[T]], node: NodeRef) -> T:
        target = self._router.route(write=True, node=node)
        policy = self._consistency
        if policy.mode is None or _context.current_transaction() is not None:
            return await run(target)  # inside a transaction, the commit records it
        if not policy.tracks_positions:
            try:
                return await run(target)
            finally:
                # Also when it failed: a write whose outcome is unknown may have committed.
                policy.record_write()
        # The position must be read on the session that wrote (MariaDB's @@last_gtid).
        async with target.connection():
            result = await run(target)
            policy.record_write(await self._position_after_write(target))
        return result

    async def read(self, run: Callable[[Node], Awaitable[T]], node: NodeRef) -> T:
        self._before_read()
        if self._consistency.causal_wait and node is None:
            await self._wait_for_causal_replica()
        target = self._router.route(write=False, node=node)
        try:
            return await run(target)
        except NodeUnavailable as exc:
            if target.role != "replica" or not self._router.chooses_freely(node):
                raise
            if self._monitor.enabled:
                self._monitor.record_failure(target, exc, eject_now=True)
            retry = self._router.reroute_read(target)
            logger.warning("read failed on %s (%s); retrying on %s", target.name, exc, retry.name)
            return await run(retry)

    async def after_commit(self, node: Node) -> None:
        """Record a committed transaction's writes in the session (on its still pinned connection)."""
        if node.role == "primary":
            policy = self._consistency
            policy.record_write(await self._position_after_write(node) if policy.tracks_positions else None)

    async def _position_after_write(self, node: Node) -> Position | None:
        """Causal mode: the primary's position after this session's write (None otherwise).

        The write is committed whatever happens here, so a failure must not raise;
        it yields a position no replica covers, sending reads to the primary.
        """
        if not self._consistency.tracks_positions:
            return None
        try:
            return await node.current_position() or UNKNOWN_POSITION
        except Exception as exc:
            logger.warning("could not read the position of %s after a write: %s", node.name, exc)
            return UNKNOWN_POSITION

    async def _wait_for_causal_replica(self) -> None:
        """Causal mode: give a replica up to ``causal_wait`` to replay this context's last write."""
        needed = self._consistency.required_position()
        if needed is None or not self._router.chooses_freely(None):
            return
        deadline = time.monotonic() + self._consistency.causal_wait
        while True:
            candidates = self._router.eligible_replicas()
            if (
                not candidates
                or any(n.health.covers(needed) for n in candidates)
                or time.monotonic() >= deadline
            ):
                return
            await asyncio.sleep(0.005)
            await self._monitor.refresh_positions(candidates)
