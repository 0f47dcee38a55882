"""The query methods of ShardedManager: execute, count, scalar, iterate, get and friends.

Each resolves its route with the one dispatcher (``_dispatch``) and says what it does on one
shard, on a fan-out and on a reference model's copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import peewee

from .._compat import set_limit
from .._errors import ConfigurationError, ShardKeyError
from .._options import count as check_count
from .._query import first_page, is_write
from .._shortcuts import ModelShortcuts
from ._dispatch import Dispatcher, Route
from ._fanout import fan_out_select, fan_out_stream
from ._gather import FanOutResult, gather_shards
from ._routing import MISSING, ShardRouter, Shards, model_of
from ._stream import FanOutStream, relay

if TYPE_CHECKING:
    from .._manager import Manager

__all__ = ["ShardedQueries"]

# peewee's type stubs leave out the query internals used below.
_pw: Any = peewee


def _write_op(query: Any) -> str:
    if isinstance(query, _pw.Delete):
        return "delete"
    return "update" if isinstance(query, _pw.Update) else "write"


class ShardedQueries:
    """Mixin of :class:`ShardedManager`: running model queries where they belong."""

    _dispatch: Dispatcher
    _router: ShardRouter
    _managers: dict[str, Manager]
    dialect: str
    fanout_concurrency: int

    async def execute(
        self, query: Any, *, shards: Shards = None, shard_key: Any = MISSING, partial: bool = False
    ) -> Any:
        """Run a model query on the shard(s) it belongs to; return what sync Peewee would.

        A SELECT with several target shards (``shards="all"``, a list, or an IN on the key)
        is merged: global ORDER BY, LIMIT/OFFSET after the merge, COUNT/SUM/MIN/MAX/TOTAL and
        expressions over them, GROUP BY combined. A shard failure raises :class:`ShardError`;
        with ``partial=True`` (reads only) a :class:`FanOutResult` holds the other shards' rows
        and the failures. Updates and deletes on several shards return the summed row count.
        """
        if isinstance(query, _pw.SelectBase):
            return await self._select(query, shards, shard_key, partial)
        if partial:
            raise ConfigurationError("partial=True is for reads: a write must not half-succeed silently")
        if isinstance(query, _pw.RawQuery):
            return await self._raw(query, shards, shard_key)
        if isinstance(query, _pw.Insert):
            return await self._insert(query, shard_key)
        route = self._dispatch.route(query, _write_op(query), shards=shards, shard_key=shard_key)
        return await self._dispatch.run(
            route,
            lambda m: m.execute(query),
            reference=lambda: self._dispatch.reference_write(lambda m: m.execute(query), "write"),
        )

    async def _insert(self, query: Any, shard_key: Any) -> Any:
        placement = self._router.placement(model_of(query))
        if placement.kind == "reference":
            return await self._dispatch.reference_write(lambda m: m.execute(query), "write")
        # The keys are in the rows (or the key field's default), not in a WHERE clause.
        query, keys = self._router.insert_keys(query, placement, shard_key)
        if placement.kind == "keyed" and keys is None:
            raise ShardKeyError(
                f"insert into {placement.model.__name__} needs its shard key"
                f" {placement.label} in every row (or shard_key=)"
            )
        route = self._dispatch.route(query, "insert", keys=keys)
        if len(route.targets) > 1:
            raise ShardKeyError(
                f"this insert has rows for shards {list(route.targets)}: use sharded.insert_many(),"
                " which splits them"
            )
        return await self._managers[route.targets[0]].execute(query)

    async def _raw(self, query: Any, shards: Shards, shard_key: Any) -> Any:
        keys = [shard_key] if shard_key is not MISSING else None
        route = self._dispatch.route(query, "raw query", shards=shards, keys=keys)

        def run(manager: Manager) -> Any:
            return manager.execute(query)

        if is_write(query):
            return await self._dispatch.run(
                route, run, reference=lambda: self._dispatch.reference_write(run, "raw write")
            )
        return await self._dispatch.run(route, run)

    async def _select(self, query: Any, shards: Shards, shard_key: Any, partial: bool) -> Any:
        route = self._dispatch.route(query, "select", shards=shards, shard_key=shard_key)

        async def on_reference() -> Any:
            rows = await self._dispatch.reference_read(lambda m: m.execute(query))
            return FanOutResult(rows) if partial else rows

        return await self._dispatch.run(
            route,
            lambda m: m.execute(query),
            many=lambda targets: self._fan_out(query, targets, partial),
            reference=on_reference,
        )

    async def _fan_out(self, query: Any, targets: list[str], partial: bool) -> Any:
        return await fan_out_select(
            self._managers,
            query,
            targets,
            dialect=self.dialect,
            limit=self.fanout_concurrency,
            partial=partial,
        )

    async def count(
        self, query: Any, *, clear_limit: bool = False, shards: Shards = None, shard_key: Any = MISSING
    ) -> int:
        """``SELECT COUNT(*)`` over the query; summed over the shards of a fan-out."""
        route = self._dispatch.route(query, "count", shards=shards, shard_key=shard_key)
        return int(
            await self._dispatch.run(
                route,
                lambda m: m.count(query, clear_limit=clear_limit),
                many=lambda targets: self._fan_out_count(query, targets, clear_limit),
            )
        )

    async def _fan_out_count(self, query: Any, targets: list[str], clear_limit: bool) -> int:
        if query._group_by or query._distinct is not None or query._simple_distinct:
            # Groups and distinct rows can repeat across shards: count the merged result.
            clone = query.clone()
            if clear_limit:
                set_limit(clone, None, None)
            return len(await self._fan_out(clone, targets, partial=False))
        results, _ = await gather_shards(
            targets,
            lambda s: self._managers[s].count(query, clear_limit=True),
            limit=self.fanout_concurrency,
            partial=False,
        )
        total = sum(results.values())
        if not clear_limit:
            total = max(0, total - (query._offset or 0))
            if query._limit is not None:
                total = min(total, query._limit)
        return total

    async def scalar(
        self, query: Any, *, as_tuple: bool = False, shards: Shards = None, shard_key: Any = MISSING
    ) -> Any:
        """The first column of the first (merged) row, or the whole row with ``as_tuple``."""
        rows = await self.execute(query.tuples(), shards=shards, shard_key=shard_key)
        if not rows:
            return None
        return rows[0] if as_tuple else rows[0][0]

    def iterate(
        self,
        query: Any,
        *,
        chunk_size: int = 1000,
        shards: Shards = None,
        shard_key: Any = MISSING,
        partial: bool = False,
    ) -> FanOutStream:
        """Stream a select's rows from its shard(s) with bounded memory.

        With several shards and an ORDER BY, an async k-way merge of the shards' streams
        (``Manager.iterate``) yields rows in global order, holding about two chunks per shard
        (each fetches its next one ahead); each shard keeps one connection (and cursor) open
        while the stream is open. Without ORDER BY the shards are yielded one after another,
        all started at once. Aggregates and GROUP BY are computed as in :meth:`execute` and
        then yielded. Use ``async with`` to release every connection at once when stopping early.
        """
        check_count("chunk_size", chunk_size, upper=1_000_000)
        route = self._dispatch.route(query, "iterate", shards=shards, shard_key=shard_key)
        return self._dispatch.pick(
            route,
            one=lambda m: FanOutStream(relay(m.iterate(query, chunk_size=chunk_size)), {}),
            many=lambda targets: fan_out_stream(
                self._managers,
                query,
                targets,
                chunk_size=chunk_size,
                dialect=self.dialect,
                limit=self.fanout_concurrency,
                partial=partial,
            ),
            reference=lambda: self._stream_reference(query, chunk_size),
        )

    def _stream_reference(self, query: Any, chunk_size: int) -> FanOutStream:
        shard = self._router.current() or self._router.order[0]
        return FanOutStream(relay(self._managers[shard].iterate(query, chunk_size=chunk_size)), {})

    # -- model shortcuts ------------------------------------------------------------------

    async def get(
        self, source: Any, *query: Any, shard_key: Any = MISSING, shards: Shards = None, **filters: Any
    ) -> Any:
        """One model by expressions or ``field=value`` filters; raises ``Model.DoesNotExist``.

        Routed by the key in the filters/expressions (or ``shard_key=``); ``shards="all"``
        searches every shard (the first row by the query's ORDER BY, if it has one). As with
        Peewee's ``query.get()``, a query's own LIMIT and OFFSET are replaced by
        ``paginate(1, 1)``: the first row.
        """
        select, model = ModelShortcuts._select_for(source, query, filters)
        rows = await self._first(select, shard_key, shards)
        if not rows:
            context = self._managers[self._router.order[0]].database.get_sql_context()
            sql, params = context.sql(first_page(select)).query()
            raise model.DoesNotExist(
                f"{model} instance matching query does not exist:\nSQL: {sql}\nParams: {params}"
            )
        return rows[0]

    async def get_or_none(
        self, source: Any, *query: Any, shard_key: Any = MISSING, shards: Shards = None, **filters: Any
    ) -> Any:
        """As :meth:`get`, but None when no row matches."""
        select, _ = ModelShortcuts._select_for(source, query, filters)
        rows = await self._first(select, shard_key, shards)
        return rows[0] if rows else None

    async def _first(self, select: Any, shard_key: Any, shards: Shards) -> Any:
        first = first_page(select)
        route: Route = self._dispatch.route(first, "get", shards=shards, shard_key=shard_key)
        return await self._dispatch.run(
            route,
            lambda m: m.execute(first),
            many=lambda targets: self._fan_out(first, targets, partial=False),
        )

    async def get_by_id(self, model: Any, pk: Any, *, shard_key: Any = MISSING, shards: Shards = None) -> Any:
        """The row with primary key ``pk`` (routed by it when the primary key is the shard key)."""
        return await self.get(model, model._meta.primary_key == pk, shard_key=shard_key, shards=shards)
