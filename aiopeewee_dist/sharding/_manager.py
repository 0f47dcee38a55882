"""ShardedManager: data split over several shards, each a full :class:`Manager`.

Every shard is an ordinary Manager (its own primary, replicas, pools, router, health
monitor and transactions); the sharded manager only decides which shard(s) an operation goes
to (``_routing``, ``_dispatch``), runs it there, and merges the answers of a fan-out
(``_plan``, ``_merge``, ``_stream``). See docs/sharding.md.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, TypeVar

import peewee

from .._deprecations import warn
from .._errors import ConfigurationError
from .._manager import Manager
from .._options import count as check_count
from .._options import validate_node_name
from .._protocol import OpensOnEnter
from ._build import ShardSpec, build_manager
from ._dispatch import Dispatcher
from ._gather import gather_shards
from ._queries import ShardedQueries
from ._routing import MISSING, ShardRouter, Shards
from ._shardkeys import KeyStrategy, Placement, shard_by_strategy
from ._transaction import ShardTransaction
from ._walk import (
    BatchSource,
    Progress,
    ProgressCallback,
    keyset_batches,
    process_batches,
    walk_merged,
    walk_order,
    walk_parallel,
)
from ._writes import ShardedWrites

__all__ = ["ShardedManager"]

M = TypeVar("M", bound=peewee.Model)

#: Upper bounds of the integer options (shards or calls at once; rows per batch or chunk).
MAX_CONCURRENCY = 1024
MAX_BATCH = 1_000_000


class ShardedManager(ShardedQueries, ShardedWrites, OpensOnEnter):
    """Models spread over shards by key; each shard is a :class:`Manager` of its own.

    ::

        sharded = ShardedManager(
            {
                "s1": {"primary": "postgresql://app@db1/app", "replicas": ["postgresql://app@db1r/app"]},
                "s2": "postgresql://app@db2/app",
            },
            max_size=10, health_check_interval=1.0,          # options for every shard's Manager
        )
        sharded.register(User, key="id")                     # or Meta: shard_key = "id"
        sharded.register(Order, key="user_id")               # same key values: same shard as the user
        sharded.register(Country, reference=True)            # on every shard
        async with sharded:
            user = await sharded.create(User, id=ids(), name="ada")
            top = await sharded.execute(User.select().order_by(User.score.desc()).limit(10), shards="all")

    The order of ``shards`` is the order of the hash buckets: add new shards at the end
    (jump hash then moves about 1/n of the keys, all to the new shard). A shard is a URL,
    ``{"primary": url, "replicas": [urls], **options}`` or a ready Manager. Node names get
    the shard's prefix (``s1.primary``, ``s1.replica-1``) unless the URL sets ``?name=``.

    ``fanout_concurrency``: shards queried at once by one fan-out; ``shard_strategy``: the
    default strategy for ``register()`` and ``transaction(shard_key=...)``.
    """

    def __init__(
        self,
        shards: Mapping[str, ShardSpec],
        *,
        fanout_concurrency: int = 8,
        shard_strategy: KeyStrategy = "hash",
        **manager_options: Any,
    ) -> None:
        if not isinstance(shards, Mapping) or not shards:
            raise ConfigurationError("shards must be a non-empty {name: url or spec} mapping")
        check_count("fanout_concurrency", fanout_concurrency, upper=MAX_CONCURRENCY)
        self.fanout_concurrency = fanout_concurrency
        self._managers: dict[str, Manager] = {}
        for name, spec in shards.items():
            try:
                validate_node_name(name)
            except ConfigurationError as exc:
                raise ConfigurationError(f"shard name: {exc}") from None
            self._managers[name] = build_manager(name, spec, manager_options)
        self._order: list[str] = list(self._managers)
        dialects = {m.primary_node.dialect for m in self._managers.values()}
        if len(dialects) > 1:
            raise ConfigurationError(f"all shards must share one dialect, got {sorted(dialects)}")
        self.dialect: str = dialects.pop()
        self._router = ShardRouter(self, self._order, shard_strategy)
        self._dispatch = Dispatcher(self._router, self._managers, fanout_concurrency)

    @property
    def shard_strategy(self) -> KeyStrategy:
        """The default strategy of ``register()`` and ``transaction(shard_key=...)``."""
        return self._router.strategy

    def __repr__(self) -> str:
        return f"<ShardedManager {', '.join(self._order)}>"

    # -- topology and lifecycle ------------------------------------------------------

    @property
    def shards(self) -> list[str]:
        """Shard names, in the order given (the hash bucket order)."""
        return list(self._order)

    def shard(self, name: str) -> Manager:
        """The Manager of shard ``name`` (``RoutingError`` naming the known shards if none is)."""
        return self._managers[self._router.check_shard(name)]

    @property
    def managers(self) -> dict[str, Manager]:
        """``{shard name: Manager}`` in shard order."""
        return {name: self._managers[name] for name in self._order}

    async def connect(self) -> None:
        """Open every shard's pools now (see ``Manager.connect``); ``ShardError`` names a failure."""
        await gather_shards(
            self._order, lambda s: self._managers[s].connect(), limit=self.fanout_concurrency, partial=False
        )

    async def close(self) -> None:
        """Close every shard's Manager; all are closed even if one fails (its error is raised)."""
        results = await asyncio.gather(
            *(self._managers[name].close() for name in self._order), return_exceptions=True
        )
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome

    def stats(self) -> dict[str, dict[str, Any]]:
        """``{shard: manager.stats()}``."""
        return {name: self._managers[name].stats() for name in self._order}

    def get_stats(self) -> dict[str, dict[str, Any]]:
        """Deprecated: use ``stats()``."""
        warn("ShardedManager.get_stats()", "use ShardedManager.stats()")
        return self.stats()

    @contextmanager
    def _on_every_shard(self, make: Callable[[Manager], AbstractContextManager[None]]) -> Iterator[None]:
        with ExitStack() as stack:
            for name in self._order:
                stack.enter_context(make(self._managers[name]))
            yield

    def primary(self) -> AbstractContextManager[None]:
        """Send this context's reads on every shard to the shard's primary."""
        return self._on_every_shard(lambda m: m.primary())

    def read_only(self) -> AbstractContextManager[None]:
        """Refuse every write on every shard in this context (``ReadOnlyError``)."""
        return self._on_every_shard(lambda m: m.read_only())

    # -- placement ---------------------------------------------------------------------

    def register(
        self,
        model: type[M],
        *,
        key: str | None = None,
        strategy: KeyStrategy | None = None,
        reference: bool = False,
        home: str | None = None,
    ) -> type[M]:
        """Place ``model``: by ``key`` (a field name) with ``strategy`` (default: the manager's
        ``shard_strategy``), as a ``reference`` table on every shard, or on shard ``home``.

        Instead of calling this, a model may say so in its Meta: ``shard_key = "user_id"``
        (and optionally ``shard_strategy``), ``shard_reference = True`` or ``shard_home = "s2"``.
        Returns the model.
        """
        self._router.register(model, key=key, strategy=strategy, reference=reference, home=home)
        return model

    def placement(self, model: Any) -> Placement:
        """How ``model`` is placed (registered, or from its Meta); ``ShardKeyError`` if unknown."""
        return self._router.placement(model)

    def shard_for(self, model: Any, key: Any) -> str:
        """The shard that holds (or would hold) ``model``'s row with shard key ``key``."""
        return self._router.placement(model).shard_of(key, self._order)

    def current_shard(self) -> str | None:
        """The shard of the task's open ``sharded.transaction()``, if any."""
        return self._router.current()

    # -- transactions -------------------------------------------------------------------

    def transaction(
        self,
        *,
        shard: str | None = None,
        shard_key: Any = MISSING,
        model: Any = None,
        isolation: str | None = None,
        read_only: bool = False,
    ) -> ShardTransaction:
        """A transaction on one shard: ``shard="s1"``, or the shard of ``shard_key``.

        The key is placed with ``model``'s strategy if given, else the manager's
        ``shard_strategy``. Inside the block, an operation that would touch another shard
        raises :class:`CrossShardError` before anything is sent.
        """
        if (shard is None) == (shard_key is MISSING):
            raise ConfigurationError("transaction() needs exactly one of shard= or shard_key=")
        if shard is None:
            if model is not None:
                shard = self._router.placement(model).shard_of(shard_key, self._order)
            else:
                shard = shard_by_strategy(self.shard_strategy, shard_key, self._order, label="shard_key")
        self._router.check_shard(shard)
        return ShardTransaction(self, shard, isolation=isolation, read_only=read_only)

    # -- schema -----------------------------------------------------------------------------

    async def _each_shard_models(
        self, models: Sequence[Any] | None, run: Callable[[Manager, list[Any]], Awaitable[None]]
    ) -> None:
        chosen = list(self._router.placements) if models is None else list(models)

        async def on(shard: str) -> None:
            placements = [self._router.placement(model) for model in chosen]
            here = [p.model for p in placements if p.kind != "home" or p.home == shard]
            if here:
                await run(self._managers[shard], here)

        await gather_shards(self._order, on, limit=self.fanout_concurrency, partial=False)

    async def create_tables(self, models: Sequence[Any] | None = None, *, safe: bool = True) -> None:
        """Create each model's table on the shards it lives on (default: every registered model)."""
        await self._each_shard_models(models, lambda m, here: m.create_tables(here, safe=safe))

    async def drop_tables(self, models: Sequence[Any] | None = None, *, safe: bool = True) -> None:
        """Drop each model's table on the shards it lives on (default: every registered model)."""
        await self._each_shard_models(models, lambda m, here: m.drop_tables(here, safe=safe))

    # -- distributed processing -------------------------------------------------------------

    def _walk_sources(
        self, model: Any, order_by: Any, shards: Shards, batch_size: int, where: Any, op: str
    ) -> tuple[dict[str, BatchSource], list[Any]]:
        """``({shard: batch source}, order fields)`` for walking ``model``'s rows."""
        check_count("batch_size", batch_size, upper=MAX_BATCH)
        placement = self._router.placement(model)
        if placement.kind == "reference":  # every shard has all rows: walk one copy
            targets = [self._router.current() or self._order[0]]
        elif placement.kind == "home":
            assert placement.home is not None
            targets = [placement.home]
        else:
            targets = self._router.requested(shards or "all") or []
        self._router.check_scope(targets, op)
        fields = walk_order(model, order_by, op)
        sources: dict[str, BatchSource] = {
            shard: functools.partial(keyset_batches, self._managers[shard], model, fields, batch_size, where)
            for shard in targets
        }
        return sources, fields

    def walk(
        self,
        model: Any,
        *,
        batch_size: int = 1000,
        order_by: Any = None,
        parallel: bool = False,
        on_progress: ProgressCallback | None = None,
        where: Any = None,
        shards: Shards = "all",
    ) -> AsyncGenerator[Any, None]:
        """Every row of ``model`` across its shards, read ``batch_size`` rows per query.

        By default in global ``order_by`` order (ascending; the primary key if not given,
        and always as the tie-breaker): a k-way merge of the shards' batches. With
        ``parallel=True`` the shards are read concurrently (``fanout_concurrency`` at once)
        and rows come batch by batch as the shards answer, in no global order.
        ``on_progress(shard, rows_done_on_shard, total_done)`` (sync or async) is called
        after the caller has consumed each batch. Each batch is a short query of its own
        (keyset pagination), so a slow consumer holds no cursor or connection open.
        """
        sources, fields = self._walk_sources(model, order_by, shards, batch_size, where, "walk")
        progress = Progress(on_progress)
        if parallel:
            return walk_parallel(sources, limit=self.fanout_concurrency, progress=progress)

        def key(row: Any) -> tuple[Any, ...]:
            return tuple(row.__data__.get(f.name) for f in fields)

        return walk_merged(sources, key=key, progress=progress)

    async def process(
        self,
        model: Any,
        fn: Callable[[list[Any]], Awaitable[Any]],
        *,
        concurrency: int = 4,
        batch_size: int = 1000,
        order_by: Any = None,
        where: Any = None,
        on_progress: ProgressCallback | None = None,
        shards: Shards = "all",
    ) -> int:
        """``await fn(batch)`` for every batch of ``model``'s rows, ``concurrency`` calls at once.

        The shards are read concurrently (``fanout_concurrency`` at once), each by keyset
        pagination; at most ``concurrency`` batches wait in memory. The first error (of
        ``fn``, or a shard's :class:`ShardError`) stops everything and is raised. Returns
        the number of rows processed.
        """
        check_count("concurrency", concurrency, upper=MAX_CONCURRENCY)
        sources, _ = self._walk_sources(model, order_by, shards, batch_size, where, "process")
        return await process_batches(
            sources,
            fn,
            concurrency=concurrency,
            limit=self.fanout_concurrency,
            progress=Progress(on_progress),
        )
