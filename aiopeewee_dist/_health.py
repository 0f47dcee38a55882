"""Health and freshness of every node, checked in the background.

Each round the monitor asks the primary for its position, then every replica for
its replayed position (one status query per node, see :mod:`._replication`). The
primary's positions are kept with the time they were read, so a replica's freshness
is exact rather than estimated: a replica that has replayed position P taken at time
T holds every commit acknowledged before T. A read at time ``now`` therefore sees
data at most ``now - T`` old, which is what ``max_lag`` bounds (the time since the
check counts too, so the bound holds between checks).

The same pairs carry wall-clock times too (``fresh_since``): read-your-writes compares
them with the time a context's last write was acknowledged, which a token carries to
other requests and processes (see :mod:`._consistency`).

A node is ejected after ``eject_after`` consecutive failed checks, or at once when
a query finds it unreachable, and readmitted after ``readmit_after`` good ones.

A replica that joins the rotation while the manager runs (added by a provider, or kept
across a change of primary) takes reads only once a check has proven that it holds every
commit acknowledged before it joined: a member rejoining after a failover, or still
following the old primary's timeline, would otherwise serve reads from the past.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._errors import PoolTimeout
from ._periodic import Periodic
from ._replication import NodeStatus, Position, parse_status, status_sql, surviving_position
from ._verify import rejection

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["HealthMonitor", "NodeHealth"]

logger = logging.getLogger("aiopeewee_dist.health")

# How far back the primary's positions are kept: a replica further behind than this is "stale
# by an unknown amount" (no freshness bound), which no sane max_lag accepts anyway.
_HISTORY_SECONDS = 120.0
_HISTORY_MIN = 16


class NodeHealth:
    """What the monitor knows about one node."""

    __slots__ = (
        "catching_up_to",
        "checked_at",
        "ejections",
        "failures",
        "fresh_as_of",
        "fresh_since",
        "last_error",
        "latency",
        "readmissions",
        "status",
        "successes",
        "up",
    )

    def __init__(self) -> None:
        self.up = True
        self.failures = 0
        self.successes = 0
        self.latency: float | None = None
        self.last_error: str | None = None
        self.status: NodeStatus | None = None
        self.checked_at: float | None = None
        #: Monotonic time T such that the node holds every commit acknowledged before T.
        self.fresh_as_of: float | None = None
        #: Times the node was taken out of / brought back into the rotation (for telemetry).
        self.ejections = 0
        self.readmissions = 0
        #: The same instant in wall-clock time (``time.time()``), comparable with write tokens.
        self.fresh_since: float | None = None
        #: Monotonic time the node must be proven fresh as of before it takes reads (it joined
        #: the rotation then); None once it is, or when it needs no proof.
        self.catching_up_to: float | None = None

    @property
    def serves_reads(self) -> bool:
        """Up, and not still catching up with the primary it joined."""
        return self.up and self.catching_up_to is None

    @property
    def position(self) -> Position | None:
        return self.status.position if self.status else None

    def readmit(self) -> None:
        """Take the node as up again now (it became the primary)."""
        self.up = True
        self.catching_up_to = None

    def record_position(self, position: Position) -> None:
        """A replayed position read outside the monitor's rounds (a causal read waiting)."""
        if self.status is not None:
            self.status = replace(self.status, position=position)

    def staleness(self, now: float) -> float | None:
        """Upper bound on how old the node's data is at ``now``; None if unknown."""
        return None if self.fresh_as_of is None else max(now - self.fresh_as_of, 0.0)

    def covers(self, needed: Position) -> bool:
        """Whether the node's last known replayed position includes ``needed`` (causal reads)."""
        position = self.status.comparable if self.status else None
        return position is not None and position.covers(needed)

    def holds_writes_before(self, written_at: float) -> bool:
        """Proven: the node holds every commit acknowledged before wall-clock ``written_at``.

        Strictly after: the check that dated the position started after the write was
        acknowledged, so the primary's position it read includes that write.
        """
        return self.fresh_since is not None and self.fresh_since > written_at


class HealthMonitor(Periodic):
    """Background checks of a set of nodes (one primary, its replicas)."""

    def __init__(
        self,
        *,
        primary: Callable[[], Node],
        replicas: Callable[[], Sequence[Node]],
        interval: float,
        timeout: float,
        eject_after: int,
        readmit_after: int,
        on_writable_replica: Callable[[Node], Awaitable[None]] | None = None,
        enabled: bool = True,
    ) -> None:
        self._primary = primary
        self._replicas = replicas
        self.interval = interval
        self.timeout = timeout
        self.eject_after = eject_after
        self.readmit_after = readmit_after
        self._on_writable_replica = on_writable_replica
        #: False: no rounds run (``health_check_interval=None``), so nothing is proven either.
        self.enabled = enabled
        # (monotonic time, wall-clock time, primary position read by a check started then)
        self._history: deque[tuple[float, float, Position]] = deque(
            maxlen=max(_HISTORY_MIN, math.ceil(_HISTORY_SECONDS / interval))
        )
        self._history_of: Node | None = None  # the primary whose positions _history holds
        super().__init__("aiopeewee_dist.health", self.check, interval, logger)
        self.rounds = 0

    # -- checks ----------------------------------------------------------------------

    def join(self, nodes: Sequence[Node]) -> None:
        """``nodes`` join the rotation now: they take reads once proven to hold every commit
        acknowledged before this moment (see the module's docstring). Without rounds to prove
        it, they take reads at once."""
        if not self.enabled:
            return
        now = time.monotonic()
        for node in nodes:
            node.health.catching_up_to = now

    def primary_changed(self) -> None:
        """The old primary's positions date nothing in the new one's stream (another timeline,
        another server's binlog): forget them, and let every replica prove itself again."""
        self._history.clear()
        self._history_of = self._primary()
        self.join(self._replicas())

    async def check(self) -> None:
        """One round: the primary first (its position dates the replicas'), then the replicas."""
        primary = self._primary()
        started, started_wall = time.monotonic(), time.time()
        primary_status = await self._check(primary)
        position = primary_status.position if primary_status and not primary_status.is_replica else None
        # Not replaced while its check ran: a position of the old primary would date nothing.
        if position is not None and primary is self._primary():
            self._record_primary_position(primary, started, started_wall, position)
            primary.health.fresh_as_of = started
            primary.health.fresh_since = started_wall
        replicas = list(self._replicas())
        statuses = await asyncio.gather(*(self._check(node) for node in replicas))
        if position is None and not primary.health.up and primary is self._primary():
            # A primary that is down commits nothing: what survives of its stream is the most
            # any replica holds, received or replayed (a synchronous standby acknowledges what
            # it has only flushed). Dated against that, reads stay on the replicas that have
            # replayed it, and max_lag keeps them off those it left behind when it went down.
            survivor = surviving_position(statuses)
            if survivor is not None:
                self._record_primary_position(primary, started, started_wall, survivor)
        for node, status in zip(replicas, statuses, strict=True):
            comparable = status.comparable if status else None
            if comparable is not None:
                self._date_replica(node, comparable)
        self.rounds += 1
        await self._detect_failover(primary, primary_status, replicas, statuses)

    def _record_primary_position(
        self, primary: Node, checked_at: float, wall: float, position: Position
    ) -> None:
        if self._history_of is not primary:
            self._history.clear()
            self._history_of = primary
        # Unchanged since the last check (an idle primary): a replica at this position holds
        # every commit acknowledged before the newer check too, so the newer time replaces
        # the older one and an idle primary does not fill the history.
        if self._history and self._history[-1][2] == position:
            self._history[-1] = (checked_at, wall, position)
        else:
            self._history.append((checked_at, wall, position))

    def _covered(self, replayed: Position) -> tuple[float, float] | None:
        """(monotonic, wall) time of the newest primary position that ``replayed`` covers."""
        for checked_at, wall, position in reversed(self._history):
            if replayed.covers(position):
                return checked_at, wall
        return None

    def _fresh_as_of(self, replayed: Position) -> float | None:
        covered = self._covered(replayed)
        return None if covered is None else covered[0]

    def _date_replica(self, node: Node, replayed: Position) -> None:
        """Set the replica's freshness from the newest primary position it covers (never backwards)."""
        covered = self._covered(replayed)
        if covered is not None:
            health = node.health
            health.fresh_as_of = max(covered[0], health.fresh_as_of or covered[0])
            health.fresh_since = max(covered[1], health.fresh_since or covered[1])
            if health.catching_up_to is not None and health.fresh_as_of >= health.catching_up_to:
                health.catching_up_to = None
                logger.info("replica %s has caught up with the primary: it takes reads", node.name)

    async def _check(self, node: Node) -> NodeStatus | None:
        sql = status_sql(node.replication_dialect)
        start = time.perf_counter()
        try:
            row = await node.probe(sql or "SELECT 1", self.timeout)
        except PoolTimeout:
            return None  # busy, not broken: no verdict this round, and no position to date
        except Exception as exc:
            self.record_failure(node, exc)
            return None
        node.health.latency = time.perf_counter() - start
        node.health.checked_at = time.monotonic()
        status = parse_status(node.replication_dialect, row) if sql else NodeStatus(False, None)
        node.health.status = status
        if not sql:
            node.health.catching_up_to = None  # no position to prove anything with: up is all we know
        self._record_success(node)
        return status

    def _record_success(self, node: Node) -> None:
        health = node.health
        health.failures = 0
        health.successes += 1
        health.last_error = None
        if not health.up and health.successes >= self.readmit_after:
            health.up = True
            health.readmissions += 1
            logger.warning("node %s is back: readmitted after %d good checks", node.name, health.successes)

    def record_failure(self, node: Node, exc: BaseException, *, eject_now: bool = False) -> None:
        """Count a failed check, or (``eject_now``) a query that found the node unreachable."""
        health = node.health
        health.successes = 0
        health.failures += 1
        health.last_error = f"{type(exc).__name__}: {exc}"
        # A node that refuses us for good (credentials, database, host, TLS) is down now:
        # waiting for eject_after failures would report it "up" with an auth error meanwhile.
        eject_now = eject_now or rejection(exc) is not None
        if health.up and (eject_now or health.failures >= self.eject_after):
            health.up = False
            health.ejections += 1
            logger.warning("node %s ejected: %s", node.name, health.last_error)

    async def _detect_failover(
        self,
        primary: Node,
        primary_status: NodeStatus | None,
        replicas: list[Node],
        statuses: list[NodeStatus | None],
    ) -> None:
        """A primary that is down or read-only, and exactly one replica that now takes writes."""
        if primary_status is not None and not primary_status.is_replica:
            return
        if primary_status is not None:
            logger.warning("primary %s has become read-only (external failover?)", primary.name)
            # Behind a stable address (VIP, proxy) new connections may reach the new primary.
            primary.expire_connections()
        elif primary.health.up:
            return  # one failed check is not an outage: wait for eject_after of them
        writable = [n for n, s in zip(replicas, statuses, strict=True) if s is not None and not s.is_replica]
        if len(writable) == 1 and self._on_writable_replica is not None:
            await self._on_writable_replica(writable[0])
        elif len(writable) > 1:
            names = ", ".join(node.name for node in writable)
            logger.warning("several replicas accept writes (%s); not choosing a primary", names)

    async def refresh_positions(self, nodes: Sequence[Node]) -> None:
        """Read the replayed position of ``nodes`` now (a failure is left to the next round)."""
        for node in nodes:
            try:
                position = await node.current_position()
            except Exception as exc:  # the rounds deal with broken nodes
                logger.debug("node %s: reading its position failed: %r", node.name, exc)
                continue
            if position is not None:
                node.health.record_position(position)

    def report(self, node: Node) -> dict[str, Any]:
        """The node's state as of its last check; ``lag`` is its staleness at that check."""
        health = node.health
        lag: float | None = 0.0
        if node.role == "replica":
            lag = health.staleness(health.checked_at) if health.checked_at is not None else None
        return {
            "up": health.up,
            # Whether the server says it is a replica (in recovery / read_only); None if unknown.
            "read_only": health.status.is_replica if health.status is not None else None,
            "latency": health.latency,
            "lag": lag,
            "position": str(health.position) if health.position else None,
            "last_error": health.last_error,
        }
