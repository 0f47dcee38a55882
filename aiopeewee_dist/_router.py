"""Choosing the node for each query: writes to the primary, reads to replicas.

Order of precedence, first match wins:

1. ``read_only()`` context: any write raises :class:`ReadOnlyError` before it is sent.
2. A per-call ``node=`` argument.
3. The task's open transaction on one of this router's nodes: everything goes there.
4. A ``using(name)`` / ``primary()`` context.
5. Writes and locking reads (``FOR UPDATE`` / ``FOR SHARE``) go to the primary.
6. Reads go to an eligible replica chosen by the strategy, else to the primary.

A write can never be sent to a replica: that raises :class:`RoutingError`.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Literal, Union

from . import _context
from ._errors import ConfigurationError, ReadOnlyError, RoutingError
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

    def __init__(self, primary: Node, replicas: Sequence[Node], *, strategy: StrategyName | Strategy) -> None:
        self.primary = primary
        self.replicas: list[Node] = list(replicas)
        self.strategy = make_strategy(strategy)
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

    # -- routing -------------------------------------------------------------------

    def route(self, *, write: bool, node: str | Node | None = None) -> Node:
        """The node that must run a query (``write`` = it may change data)."""
        override = _overrides.get().get(self, _NO_OVERRIDE)
        if write and override.read_only:
            raise ReadOnlyError("write attempted inside manager.read_only()")
        if node is not None:
            target = self.node(node)
        else:
            tx = _context.current_transaction()
            if tx is not None and tx.node in self.nodes:
                target = tx.node
            elif isinstance(override.target, _Primary):
                target = self.primary
            elif override.target is not None:
                target = self.node(override.target)
            elif write:
                target = self.primary
            else:
                target = self.choose_replica()
        if write:
            if target.role != "primary":
                raise RoutingError(f"refusing to send a write to replica node {target.name!r}")
            self.counters[self.WRITES] += 1
        else:
            self.counters[self.READS] += 1
        return target

    def eligible_replicas(self) -> list[Node]:
        return [node for node in self.replicas if node.healthy and not node.closed]

    def choose_replica(self) -> Node:
        candidates = self.eligible_replicas()
        if not candidates:
            if self.replicas:
                self.counters[self.FALLBACKS] += 1
                logger.debug("no eligible replica; reading from primary %s", self.primary.name)
            return self.primary
        chosen = self.strategy(candidates)
        if chosen not in candidates:
            raise RoutingError(f"routing strategy returned {chosen!r}, which is not an eligible replica")
        return chosen
