"""The one dispatcher of sharded operations: placement -> keys -> route -> one shard or fan-out.

Every operation of the sharded manager resolves its :class:`Route` here and then runs in one
of three ways (:meth:`Dispatcher.pick`): on a reference model's copy, on its one shard (the
shard's own errors raised as they are), or fanned out (each shard's failure wrapped in
:class:`ShardError`, see ``_gather``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import CrossShardError, NodeUnavailable, PoolError, ShardError
from ._gather import gather_shards
from ._routing import MISSING, ShardRouter, Shards, model_of
from ._shardkeys import Placement

if TYPE_CHECKING:
    from .._manager import Manager

__all__ = ["WHERE", "Dispatcher", "Route", "combine_writes"]

T = TypeVar("T")

#: Read the keys from the query's WHERE clause (or ``shard_key=``).
WHERE: Any = object()


@dataclass(frozen=True)
class Route:
    """Where one operation goes: a reference model's copy, one shard, or a fan-out."""

    placement: Placement
    targets: tuple[str, ...] = ()
    fan: bool = False

    @property
    def reference(self) -> bool:
        return self.placement.kind == "reference"


def combine_writes(results: Sequence[Any]) -> Any:
    """One answer for a write (or raw query) that ran on several shards."""
    if all(isinstance(r, int) and not isinstance(r, bool) for r in results):
        return sum(results)
    if all(isinstance(r, list) for r in results):
        return [row for result in results for row in result]
    return list(results)


class Dispatcher:
    """Routes operations with ``router`` and runs them on ``managers`` (``limit`` at once)."""

    def __init__(self, router: ShardRouter, managers: Mapping[str, Manager], limit: int) -> None:
        self.router = router
        self.managers = managers
        self.limit = limit

    def route(
        self, query: Any, op: str, *, shards: Shards = None, shard_key: Any = MISSING, keys: Any = WHERE
    ) -> Route:
        """The route of a model query (``keys``: given, or read from its WHERE clause)."""
        placement = self.router.placement(model_of(query))
        if placement.kind == "reference":
            return Route(placement)
        if keys is WHERE:
            keys = self.router.where_keys(placement, query, shard_key)
        targets, fan = self.router.route(placement, keys, shards, op)
        return Route(placement, tuple(targets), fan)

    def pick(
        self,
        route: Route,
        *,
        one: Callable[[Manager], T],
        many: Callable[[list[str]], T],
        reference: Callable[[], T],
    ) -> T:
        """The one way ``route`` runs: ``reference()``, ``one(manager)`` or ``many(targets)``."""
        if route.reference:
            return reference()
        if route.fan:
            return many(list(route.targets))
        return one(self.managers[route.targets[0]])

    async def run(
        self,
        route: Route,
        call: Callable[[Manager], Awaitable[T]],
        *,
        many: Callable[[list[str]], Awaitable[Any]] | None = None,
        reference: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """``call(manager)`` where ``route`` says; by default a fan-out combines the answers
        (:func:`combine_writes`) and a reference model is read from one copy."""
        return await self.pick(
            route,
            one=call,
            many=many or (lambda targets: self.each(targets, call)),
            reference=reference or (lambda: self.reference_read(call)),
        )

    async def each(self, targets: Sequence[str], call: Callable[[Manager], Awaitable[Any]]) -> Any:
        """``call`` on every target concurrently; the answers combined."""
        results, _ = await gather_shards(
            targets, lambda s: call(self.managers[s]), limit=self.limit, partial=False
        )
        return combine_writes([results[s] for s in targets])

    async def reference_read(self, call: Callable[[Manager], Awaitable[T]]) -> T:
        """Read a reference table from the transaction's shard, else the first that answers."""
        current = self.router.current()
        if current is not None:
            return await call(self.managers[current])

        def looks_up(name: str) -> bool:
            manager = self.managers[name]
            return manager.primary_node.healthy or any(node.healthy for node in manager.replicas)

        # Shards the health monitor reports down go last, not out: it may be out of date.
        ordered = sorted(self.router.order, key=lambda name: not looks_up(name))
        failures: dict[str, BaseException] = {}
        for name in ordered:
            try:
                return await call(self.managers[name])
            except (NodeUnavailable, PoolError) as exc:  # unreachable, exhausted or closed: try the next copy
                failures[name] = exc
        first = ordered[0]
        raise ShardError(first, failures[first], failures) from failures[first]

    async def reference_write(self, call: Callable[[Manager], Awaitable[T]], op: str) -> T:
        """Write a reference table on every shard, in one transaction per shard.

        The transactions commit one after another once every shard has done its part, so
        an error on any shard before that rolls back all of them. There is no two-phase
        commit: a shard failing during the commits leaves the copies different.
        """
        current = self.router.current()
        if current is not None and len(self.router.order) > 1:
            raise CrossShardError(
                f"{op} of a reference table writes every shard: not inside a transaction on shard {current!r}"
            )
        results: list[T] = []
        async with AsyncExitStack() as stack:
            for name in self.router.order:
                try:
                    await stack.enter_async_context(self.managers[name].transaction())
                except Exception as exc:
                    raise ShardError(name, exc) from exc
            for name in self.router.order:
                try:
                    results.append(await call(self.managers[name]))
                except Exception as exc:
                    raise ShardError(name, exc) from exc
        return results[0]
