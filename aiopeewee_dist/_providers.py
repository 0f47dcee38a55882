"""Topology providers: a manager whose primary and replicas come from an HA system.

A provider answers one question, "who is the primary and who are the readable replicas now"
(:class:`TopologySnapshot`). :class:`TopologyFollower` asks it every ``refresh_interval`` seconds
and applies the difference through the manager's public runtime methods, the same code paths as
a change made by hand: :meth:`Manager.replace_primary`, :meth:`Manager.add_replica` and
:meth:`Manager.remove_replica`. A failed refresh changes nothing: the manager keeps the last
topology it was given until the provider answers again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._errors import NodeUnavailable
from ._options import seconds
from ._periodic import Periodic

if TYPE_CHECKING:
    from ._manager import Manager

__all__ = [
    "Member",
    "TopologyFollower",
    "TopologyProvider",
    "TopologySnapshot",
    "check_interval",
    "follow_provider",
    "named_url",
]

logger = logging.getLogger("aiopeewee_dist.providers")
M = TypeVar("M", bound="Manager")


@dataclass(frozen=True)
class Member:
    """One server as the provider sees it: its node name and URL, and what it says of it."""

    name: str
    url: str
    state: str = ""
    lag: int | None = None  # provider's unit (Patroni: bytes of WAL behind the leader)


@dataclass(frozen=True)
class TopologySnapshot:
    """The primary (None while the HA system has no leader) and the replicas fit for reads."""

    primary: Member | None
    replicas: tuple[Member, ...] = field(default_factory=tuple)


@runtime_checkable
class TopologyProvider(Protocol):
    """What :meth:`Manager.from_provider` needs: ``fetch()`` the current topology (raising when
    it cannot tell), and ``close()`` whatever it holds open."""

    async def fetch(self) -> TopologySnapshot: ...

    async def close(self) -> None: ...


def named_url(url: str, name: str) -> str:
    """``url`` with the node option ``name=`` set (the manager names the node after it)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "name"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("name", name)])))


async def follow_provider(
    cls: type[M], provider: TopologyProvider, interval: float, options: dict[str, Any]
) -> M:
    """``Manager.from_provider``: a manager built from the provider's first snapshot, with a
    :class:`TopologyFollower` that keeps it in line while the manager is open.

    Nodes are named after the provider's members. ``auto_failover`` defaults to False: the
    provider, not the manager's health monitor, says who the primary is.
    """
    check_interval("refresh_interval", interval, 0.05, 60.0)
    snapshot = await provider.fetch()
    leader = snapshot.primary
    if leader is None:
        raise NodeUnavailable(f"{provider!r} names no primary right now (an election may be running)")
    options.setdefault("auto_failover", False)
    replicas = {m.name: m.url for m in snapshot.replicas if m.name != leader.name}
    manager = cls(named_url(leader.url, leader.name), replicas, **options)
    manager.follower = TopologyFollower(manager, provider, interval=interval)
    return manager


def check_interval(option: str, value: float, low: float, high: float) -> float:
    """``value`` as seconds from ``low`` to ``high``; ConfigurationError naming ``option``."""
    return cast(float, seconds(option, value, positive=False, lower=low, upper=high))


class TopologyFollower(Periodic):
    """Keeps a manager's nodes in line with a provider's snapshots (a background task)."""

    def __init__(
        self, manager: Manager, provider: TopologyProvider, *, interval: float, drain_timeout: float = 5.0
    ) -> None:
        self.manager = manager
        self.provider = provider
        self.interval = check_interval("refresh_interval", interval, 0.05, 60.0)
        self.drain_timeout = drain_timeout
        self.refreshes = 0
        self.changes = 0
        self.last_error: str | None = None
        self._lock = asyncio.Lock()
        super().__init__("aiopeewee_dist.follower", self.refresh, self.interval, logger)

    async def stop(self) -> None:
        await super().stop()
        await self.provider.close()

    async def refresh(self) -> bool:
        """Fetch once and apply; whether the topology changed. A provider error is logged and
        changes nothing."""
        async with self._lock:
            try:
                snapshot = await self.provider.fetch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("topology refresh failed, keeping the current nodes: %s", self.last_error)
                return False
            self.last_error = None
            self.refreshes += 1
            changed = await self.apply(snapshot)
            self.changes += changed
            return changed

    async def apply(self, snapshot: TopologySnapshot) -> bool:
        """Make the manager's primary and replicas those of ``snapshot``."""
        manager = self.manager
        if snapshot.primary is None:
            return False  # no leader right now (an election is running): keep what we have
        changed = False
        leader = snapshot.primary
        if manager.primary_node.name != leader.name:
            known = {node.name for node in manager.replicas}
            target = leader.name if leader.name in known else named_url(leader.url, leader.name)
            logger.warning(
                "the provider names %s as primary (was %s)", leader.name, manager.primary_node.name
            )
            await manager.replace_primary(target)
            changed = True
        wanted = {m.name: m for m in snapshot.replicas if m.name != leader.name}
        for node in manager.replicas:
            if node.name not in wanted:
                logger.warning("replica %s is no longer a readable member: it leaves the rotation", node.name)
                await manager.remove_replica(node.name, timeout=self.drain_timeout)
                changed = True
        present = {node.name for node in manager.replicas}
        for name, member in wanted.items():
            if name not in present:
                await manager.add_replica(member.url, name=name)
                changed = True
        return changed
