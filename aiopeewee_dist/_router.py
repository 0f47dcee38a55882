"""Choosing the node for each query: writes to the primary, reads to replicas.

Order of precedence, first match wins:

1. ``read_only()`` context: any write raises :class:`ReadOnlyError` before it is sent.
2. A per-call ``node=`` argument.
3. The task's open transaction on one of this router's nodes: everything goes there.
4. A ``using(name)`` / ``primary()`` context.
5. Writes and locking reads (``FOR UPDATE`` / ``FOR SHARE``) go to the primary.
6. Reads after a write in the same context go only to replicas proven to hold it
   (``fresh``, ``causal``), else to the primary; see :mod:`._consistency`.
7. Other reads go to an eligible replica (up, and within ``max_lag``) chosen by the
   strategy; with none, to the primary (``fallback="primary"``) or
   :class:`NoHealthyReplica` (``fallback="raise"``).

A write can never be sent to a replica: that raises :class:`RoutingError`.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Literal, Union

from . import _context
from ._consistency import Consistency
from ._errors import ConfigurationError, NoHealthyReplica, ReadOnlyError, RoutingError
from ._node import Node

__all__ = ["STRATEGIES", "Router", "Strategy", "StrategyName", "make_strategy"]

logger = logging.getLogger("aiopeewee_dist.router")

Strategy = Callable[[Sequence[Node]], Node]
StrategyName = Literal["round_robin", "random", "weighted", "least_busy"]


def _round_robin() -> Strategy:
    counter = itertools.count()

    def choose(nodes: Sequence[Node]) -> Node:
        return nodes[next(counter) % len(nodes)]

    return choose


def _random() -> Strategy:
    return random.choice


def _weighted() -> Strategy:
    def choose(nodes: Sequence[Node]) -> Node:
        weights = [node.weight for node in nodes]
        if not any(weights):
            return random.choice(nodes)
        return random.choices(nodes, weights)[0]

    return choose


def _least_busy() -> Strategy:
    # Ties rotate, so an idle set of replicas still shares the load.
    counter = itertools.count()

    def choose(nodes: Sequence[Node]) -> Node:
        start = next(counter) % len(nodes)
        rotated = [*nodes[start:], *nodes[:start]]
        return min(rotated, key=lambda node: node.busy)

    return choose


STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "round_robin": _round_robin,
    "random": _random,
    "weighted": _weighted,
    "least_busy": _least_busy,
}


def make_strategy(strategy: StrategyName | Strategy) -> Strategy:
    if callable(strategy):
        return strategy
    try:
        return STRATEGIES[strategy]()
    except (KeyError, TypeError):
        raise ConfigurationError(
            f"unknown routing strategy {strategy!r} (expected one of {', '.join(STRATEGIES)} or a callable)"
        ) from None


class _Primary:
    """Marker for "the primary", resolved when routing (the primary may change)."""

    def __repr__(self) -> str:
        return "PRIMARY"


PRIMARY = _Primary()


@dataclass(frozen=True)
class _Override:
    target: Union[str, _Primary, None] = None  # noqa: UP007 (runtime alias on 3.10)
    read_only: bool = False


_NO_OVERRIDE = _Override()
# {router: override} for the current context; copied on change, undone by reset(token).
_NO_OVERRIDES: dict[Router, _Override] = {}  # never mutated: every change copies it
_overrides: ContextVar[dict[Router, _Override]] = ContextVar("aiopeewee_dist.routing", default=_NO_OVERRIDES)


class Router:
    """Holds a manager's nodes and picks one for each query."""

    READS = "reads"
    WRITES = "writes"
    FALLBACKS = "replica_fallbacks"
    RETRIES = "retries"
    STICKY_HITS = "sticky_hits"
    CAUSAL_PRIMARY = "causal_primary_reads"
    CAUSAL_REPLICA = "causal_replica_reads"
    FRESH_PRIMARY = "fresh_primary_reads"
    FRESH_REPLICA = "fresh_replica_reads"
    FALLBACK_POLICIES = ("primary", "raise")

    def __init__(
        self,
        primary: Node,
        replicas: Sequence[Node],
        *,
        strategy: StrategyName | Strategy = "round_robin",
        consistency: Consistency | None = None,
        max_lag: float | None = None,
        fallback: str = "primary",
    ) -> None:
        if fallback not in self.FALLBACK_POLICIES:
            raise ConfigurationError(f"fallback must be 'primary' or 'raise', got {fallback!r}")
        self.primary = primary
        # Replaced, never mutated, when the topology changes: readers may be iterating it.
        self.replicas: list[Node] = list(replicas)
        self.strategy = make_strategy(strategy)
        self.consistency = consistency or Consistency(None, sticky_seconds=0, causal_wait=0)
        self.max_lag = max_lag
        self.fallback = fallback
        self.counters: Counter[str] = Counter()
        self._check_names()

    def _check_names(self) -> None:
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ConfigurationError(f"two nodes are named {node.name!r}; node names must be unique")
            seen.add(node.name)

    @property
    def nodes(self) -> list[Node]:
        return [self.primary, *self.replicas]

    def node(self, name: str | Node) -> Node:
        """The node called ``name``; :class:`RoutingError` listing the known names if none is."""
        if isinstance(name, Node):
            if name in self.nodes:
                return name
            name = name.name
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(repr(node.name) for node in self.nodes)
        raise RoutingError(f"no node named {name!r} (known: {known})")

    # -- topology: replaced lists, never mutated ones (readers may be iterating) -----

    def add_replica(self, node: Node) -> None:
        if node.name in {n.name for n in self.nodes}:
            raise ConfigurationError(f"a node named {node.name!r} already exists")
        self.replicas = [*self.replicas, node]

    async def remove_replica(self, name: str, *, drain: float) -> Node:
        """Take a replica out of the read rotation at once, let its reads in progress finish
        (at most ``drain`` seconds), close it; returns it."""
        node = self.node(name)
        if node not in self.replicas:
            raise RoutingError(f"node {name!r} is not a replica")
        self.replicas = [r for r in self.replicas if r is not node]
        await node.drain(drain)
        await node.close()
        return node

    def set_weight(self, name: str, weight: float) -> None:
        self.node(name).weight = weight

    async def replace_primary(self, new: Node, *, on_swap: Callable[[], None] = lambda: None) -> None:
        """Make ``new`` the primary (it leaves the replicas) and close the old one.

        Every replica's connections are renewed: after a failover they may follow the old
        primary's timeline. ``on_swap`` runs as soon as ``new`` is the primary, before any
        other task can route a query.
        """
        old = self.primary
        self.replicas = [r for r in self.replicas if r is not new]
        new.set_role("primary")
        self.primary = new
        on_swap()
        for node in self.replicas:
            node.expire_connections()
        await old.close()

    async def open(self) -> None:
        """Open every node's pool(s) now (``min_size`` connections each)."""
        for node in self.nodes:
            await node.open()

    async def close(self) -> None:
        """Close every node's pool(s); connections in use close when returned."""
        for node in self.nodes:
            await node.close()

    # -- overrides -----------------------------------------------------------------

    @contextmanager
    def _override(self, **changes: object) -> Iterator[None]:
        current = _overrides.get()
        override = replace(current.get(self, _NO_OVERRIDE), **changes)  # type: ignore[arg-type]
        token = _overrides.set({**current, self: override})
        try:
            yield
        finally:
            _overrides.reset(token)

    def using(self, name: str) -> AbstractContextManager[None]:
        self.node(name)  # fail now, naming the node, not at the first query
        return self._override(target=name)

    def use_primary(self) -> AbstractContextManager[None]:
        return self._override(target=PRIMARY)

    def read_only(self) -> AbstractContextManager[None]:
        return self._override(read_only=True)

    @property
    def in_read_only(self) -> bool:
        return _overrides.get().get(self, _NO_OVERRIDE).read_only

    def chooses_freely(self, node: str | Node | None) -> bool:
        """Whether a read would be placed by the router (so it may be retried elsewhere)."""
        override = _overrides.get().get(self, _NO_OVERRIDE)
        return node is None and override.target is None and _context.current_transaction() is None

    # -- routing -------------------------------------------------------------------

    def route(self, *, write: bool, node: str | Node | None = None, exclude: Sequence[Node] = ()) -> Node:
        """The node that must run a query (``write`` = it may change data).

        ``exclude``: replicas not to choose (one that just failed a read).
        """
        override = _overrides.get().get(self, _NO_OVERRIDE)
        if write and override.read_only:
            raise ReadOnlyError("write attempted inside manager.read_only()")
        if node is not None:
            target = self.node(node)
        else:
            tx = _context.current_transaction()
            if tx is not None and tx.node in self.nodes:
                # A write inside a read-only transaction is the caller's mistake whichever node
                # the transaction landed on (a replica, too): ReadOnlyError says so, where the
                # replica check below would only say "write to replica".
                if write and tx.read_only:
                    raise ReadOnlyError(f"write inside a read-only transaction on node {tx.node.name!r}")
                target = tx.node
            elif isinstance(override.target, _Primary):
                target = self.primary
            elif override.target is not None:
                target = self.node(override.target)
            elif write:
                target = self.primary
            else:
                target = self._read_target(exclude)
        if write:
            if target.role != "primary":
                raise RoutingError(f"refusing to send a write to replica node {target.name!r}")
            self.counters[self.WRITES] += 1
        else:
            self.counters[self.READS] += 1
            self.counters[f"reads:{target.name}"] += 1
        return target

    def reroute_read(self, failed: Node) -> Node:
        """Another node for a read that found ``failed`` unreachable (counted as a retry)."""
        retry = self.route(write=False, exclude=(failed,))
        self.counters[self.RETRIES] += 1
        return retry

    def eligible_replicas(self, exclude: Sequence[Node] = ()) -> list[Node]:
        """Replicas that are up, open, not excluded and (with ``max_lag``) fresh enough now."""
        max_lag = self.max_lag
        now = time.monotonic()
        eligible = []
        for node in self.replicas:
            if not node.healthy or node.closed or node in exclude:
                continue
            if max_lag is not None:
                staleness = node.health.staleness(now)
                if staleness is None or staleness > max_lag:
                    continue
            eligible.append(node)
        return eligible

    def _read_target(self, exclude: Sequence[Node]) -> Node:
        if not self.replicas:
            return self.primary
        consistency = self.consistency
        if consistency.primary_required():
            self.counters[self.STICKY_HITS] += 1
            return self.primary
        candidates = self.eligible_replicas(exclude)
        proven = consistency.proven_replicas(candidates) if candidates else None
        if proven is not None:
            prefix = "fresh" if consistency.mode == "fresh" else "causal"
            if not proven:
                self.counters[f"{prefix}_primary_reads"] += 1  # CAUSAL_PRIMARY / FRESH_PRIMARY
                return self.primary
            self.counters[f"{prefix}_replica_reads"] += 1
            candidates = proven
        if not candidates:
            if self.fallback == "raise":
                raise NoHealthyReplica(self._no_replica_reason(exclude))
            self.counters[self.FALLBACKS] += 1
            logger.debug("no eligible replica; reading from primary %s", self.primary.name)
            return self.primary
        chosen = self.strategy(candidates)
        if chosen not in candidates:
            raise RoutingError(f"routing strategy returned {chosen!r}, which is not an eligible replica")
        return chosen

    def _no_replica_reason(self, exclude: Sequence[Node]) -> str:
        now = time.monotonic()
        reasons = []
        for node in self.replicas:
            if node in exclude:
                why = "just failed"
            elif not node.healthy:
                why = "down"
            elif node.closed:
                why = "closed"
            else:
                staleness = node.health.staleness(now)
                lag = "unknown" if staleness is None else f"{staleness:.3f}s"
                why = f"lag {lag} > max_lag {self.max_lag}s"
            reasons.append(f"{node.name}: {why}")
        return "no eligible replica (" + "; ".join(reasons) + ")"
