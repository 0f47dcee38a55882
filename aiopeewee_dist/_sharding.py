"""ShardedManager: data split over several shards, each a full :class:`Manager`.

Every shard is an ordinary Manager (its own primary, replicas, pools, router, health
monitor and transactions); this module only decides which shard(s) an operation goes to,
runs it there, and merges the answers of a fan-out. See docs/sharding.md.

Routing, first match wins:

1. A model placed ``home="s2"`` goes to s2; a ``reference`` model is read from one shard
   (the transaction's, else the first that answers) and written to all, in one transaction
   per shard.
2. Keyed models: ``shard_key=`` if given, else the key in the create/save data, the
   instance, the ``get()`` filters or the WHERE clause (``==``, ``IN``, AND, OR).
3. No key: ``shards="all"`` (or a list of names) fans out; otherwise ``ShardKeyError``.

Inside ``sharded.transaction(...)`` every operation must resolve to that transaction's
shard; anything else raises :class:`CrossShardError` before a query is sent.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, AsyncExitStack, ExitStack, contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar, Union

import peewee

from ._errors import (
    ConfigurationError,
    CrossShardError,
    NodeUnavailable,
    PoolError,
    RoutingError,
    ShardError,
    ShardKeyError,
    TransactionError,
)
from ._fanout import (
    BatchSource,
    FanOutResult,
    FanOutStream,
    Progress,
    ProgressCallback,
    chain_sources,
    gather_shards,
    keyset_batches,
    merge_results,
    merge_sorted,
    page,
    plan_select,
    process_batches,
    raw_pairs,
    shard_query,
    walk_merged,
    walk_order,
    walk_parallel,
)
from ._manager import Manager
from ._options import validate_node_name
from ._query import is_write
from ._shardkeys import KeyStrategy, Placement, Ranges, key_in_row, keys_in_where, shard_by_strategy
from ._shortcuts import ModelShortcuts
from ._transaction import Transaction
from ._url import parse_url

__all__ = ["ShardTransaction", "ShardedManager", "Shards"]

# peewee's type stubs leave out the query and model internals used below.
_pw: Any = peewee
T = TypeVar("T")
M = TypeVar("M", bound=peewee.Model)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

#: Which shards a fan-out may use: ``"all"``, one shard's name, or a list of names.
Shards = Union[Literal["all"], str, Sequence[str], None]  # noqa: UP007 (runtime alias on 3.10)
ShardSpec = Union[str, Mapping[str, Any], Manager]  # noqa: UP007


class _Missing:
    def __repr__(self) -> str:
        return "<no shard key>"


_MISSING: Any = _Missing()


# -- the transaction's shard, per task ----------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    shard: str
    task: asyncio.Task[Any] | None


_NO_SCOPES: dict[Any, _Scope] = {}  # never mutated: every change copies it
# {sharded manager: its open transaction's shard} for this context; undone by reset(token).
_scopes: ContextVar[dict[Any, _Scope]] = ContextVar("aiopeewee_dist.shard_scope", default=_NO_SCOPES)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: nothing can be inside a transaction
        return None


class ShardTransaction:
    """A transaction on one shard (its Manager's :class:`Transaction`), as a block or decorator.

    While it is open, the task's operations on other shards raise :class:`CrossShardError`.
    Tasks spawned inside do not join it (they are not restricted either), as with
    ``Manager.transaction()``.
    """

    def __init__(
        self, sharded: ShardedManager, shard: str, *, isolation: str | None = None, read_only: bool = False
    ) -> None:
        self.sharded = sharded
        self.shard = shard
        self.isolation = isolation
        self.read_only = read_only
        self._inner: Transaction | None = None
        self._token: Token[dict[Any, _Scope]] | None = None

    def __repr__(self) -> str:
        return f"<ShardTransaction shard={self.shard!r}>"

    @property
    def manager(self) -> Manager:
        """The shard's Manager."""
        return self.sharded.shard(self.shard)

    async def __aenter__(self) -> ShardTransaction:
        if self._inner is not None:
            raise TransactionError("a ShardTransaction can be entered once at a time; create a new one")
        current = self.sharded.current_shard()
        if current is not None and current != self.shard:
            raise CrossShardError(
                f"cannot open a transaction on shard {self.shard!r} inside one on shard {current!r}"
            )
        inner = self.manager.transaction(isolation=self.isolation, read_only=self.read_only)
        token = _scopes.set({**_scopes.get(), self.sharded: _Scope(self.shard, _current_task())})
        try:
            await inner.__aenter__()
        except BaseException:
            _scopes.reset(token)
            raise
        self._inner, self._token = inner, token
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        inner, token = self._inner, self._token
        if inner is None or token is None:
            raise TransactionError("ShardTransaction exited without being entered")
        self._inner = self._token = None
        try:
            await inner.__aexit__(exc_type, exc, tb)
        finally:
            _scopes.reset(token)

    def __call__(self, func: F) -> F:
        """Run each call of ``func`` in its own transaction on this shard."""

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            async with ShardTransaction(
                self.sharded, self.shard, isolation=self.isolation, read_only=self.read_only
            ):
                return await func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


# -- building the shards ------------------------------------------------------------------


def _with_node_name(url: str, name: str) -> str:
    """``url`` with ``?name=`` set, unless it names its node itself."""
    if "name" in parse_url(url).node_options:
        return url
    return f"{url}{'&' if '?' in url else '?'}name={name}"


def _build_manager(shard: str, spec: ShardSpec, options: Mapping[str, Any]) -> Manager:
    if isinstance(spec, Manager):
        return spec
    extra: dict[str, Any] = {}
    if isinstance(spec, str):
        primary: Any = spec
        replicas: Any = ()
    elif isinstance(spec, Mapping):
        extra = dict(spec)
        primary = extra.pop("primary", None)
        replicas = extra.pop("replicas", ())
    else:
        raise ConfigurationError(
            f"shard {shard!r}: expected a URL, {{'primary': url, 'replicas': [...]}} or a Manager,"
            f" got {type(spec).__name__}"
        )
    try:
        if not isinstance(primary, str):
            raise ConfigurationError("the 'primary' URL is missing")
        if isinstance(replicas, str):
            raise ConfigurationError("'replicas' must be a list of URLs (or a {name: url} mapping)")
        # Node names carry the shard ("s1.primary", "s1.replica-1") so logs, stats and errors
        # say which shard a node belongs to; names given explicitly are kept as they are.
        if isinstance(replicas, Mapping):
            named: dict[str, str] = dict(replicas)
        else:
            named = {}
            for i, url in enumerate(replicas, start=1):
                named[parse_url(url).node_options.get("name") or f"{shard}.replica-{i}"] = url
        return Manager(_with_node_name(primary, f"{shard}.primary"), named, **{**options, **extra})
    except ConfigurationError as exc:
        raise ConfigurationError(f"shard {shard!r}: {exc}") from None


def _combine(results: Sequence[Any]) -> Any:
    """One answer for a write (or raw query) that ran on several shards."""
    if all(isinstance(r, int) and not isinstance(r, bool) for r in results):
        return sum(results)
    if all(isinstance(r, list) for r in results):
        return [row for result in results for row in result]
    return list(results)


class ShardedManager:
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
        if (
            not isinstance(fanout_concurrency, int)
            or isinstance(fanout_concurrency, bool)
            or fanout_concurrency < 1
        ):
            raise ConfigurationError(
                f"fanout_concurrency must be a positive integer, got {fanout_concurrency!r}"
            )
        self.fanout_concurrency = fanout_concurrency
        self._order: list[str] = []
        self._managers: dict[str, Manager] = {}
        for name, spec in shards.items():
            try:
                validate_node_name(name)
            except ConfigurationError as exc:
                raise ConfigurationError(f"shard name: {exc}") from None
            self._order.append(name)
            self._managers[name] = _build_manager(name, spec, manager_options)
        dialects = {m.primary_node.dialect for m in self._managers.values()}
        if len(dialects) > 1:
            raise ConfigurationError(f"all shards must share one dialect, got {sorted(dialects)}")
        self.dialect: str = dialects.pop()
        self.shard_strategy = self._check_strategy(shard_strategy)
        self._placements: dict[Any, Placement] = {}

    def __repr__(self) -> str:
        return f"<ShardedManager {', '.join(self._order)}>"

    # -- topology and lifecycle ------------------------------------------------------

    @property
    def shards(self) -> list[str]:
        """Shard names, in the order given (the hash bucket order)."""
        return list(self._order)

    def shard(self, name: str) -> Manager:
        """The Manager of shard ``name`` (``RoutingError`` naming the known shards if none is)."""
        try:
            return self._managers[name]
        except (KeyError, TypeError):
            known = ", ".join(map(repr, self._order))
            raise RoutingError(f"no shard named {name!r} (known: {known})") from None

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

    async def __aenter__(self) -> ShardedManager:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def stats(self) -> dict[str, dict[str, Any]]:
        """``{shard: manager.stats()}``."""
        return {name: self._managers[name].stats() for name in self._order}

    get_stats = stats

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

    def _check_strategy(self, strategy: Any) -> KeyStrategy:
        if strategy == "hash":
            return "hash"
        if isinstance(strategy, Ranges):
            unknown = sorted(set(strategy.shard_names) - set(self._order))
            if unknown:
                raise ConfigurationError(f"Ranges name unknown shards {unknown} (known: {self._order})")
            return strategy
        if callable(strategy):
            return strategy  # type: ignore[no-any-return]
        raise ConfigurationError(f"shard strategy must be 'hash', a Ranges or a function, got {strategy!r}")

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
        if not (isinstance(model, type) and issubclass(model, peewee.Model)):
            raise ConfigurationError(f"expected a peewee model class, got {model!r}")
        chosen = [k for k, given in (("key", key), ("reference", reference), ("home", home)) if given]
        if len(chosen) != 1:
            raise ConfigurationError(
                f"register({model.__name__}): give exactly one of key=, reference=True or home=, got {chosen}"
            )
        if strategy is not None and key is None:
            raise ConfigurationError(f"register({model.__name__}): strategy= only applies with key=")
        meta: Any = model._meta
        if key is not None:
            found = meta.fields.get(key) or meta.combined.get(key)
            if found is None:
                raise ConfigurationError(f"{model.__name__} has no field {key!r} to use as shard key")
            placement = Placement(
                model, "keyed", field=found, strategy=self._check_strategy(strategy or self.shard_strategy)
            )
        elif reference:
            placement = Placement(model, "reference")
        else:
            assert home is not None
            self.shard(home)
            placement = Placement(model, "home", home=home)
        self._placements[model] = placement
        return model

    def placement(self, model: Any) -> Placement:
        """How ``model`` is placed (registered, or from its Meta); ``ShardKeyError`` if unknown."""
        found = self._placements.get(model)
        if found is not None:
            return found
        meta: Any = getattr(model, "_meta", None)
        key = getattr(meta, "shard_key", None)
        reference = bool(getattr(meta, "shard_reference", False))
        home = getattr(meta, "shard_home", None)
        if key is None and not reference and home is None:
            name = getattr(model, "__name__", repr(model))
            raise ShardKeyError(
                f"model {name} has no shard placement: call sharded.register({name}, key=...),"
                f" reference=True or home=..., or set Meta.shard_key"
            )
        self.register(
            model, key=key, strategy=getattr(meta, "shard_strategy", None), reference=reference, home=home
        )
        return self._placements[model]

    def shard_for(self, model: Any, key: Any) -> str:
        """The shard that holds (or would hold) ``model``'s row with shard key ``key``."""
        return self.placement(model).shard_of(key, self._order)

    # -- routing -------------------------------------------------------------------------

    def current_shard(self) -> str | None:
        """The shard of the task's open ``sharded.transaction()``, if any."""
        scope = _scopes.get().get(self)
        if scope is not None and scope.task is _current_task():
            return scope.shard
        return None

    def _check_scope(self, targets: Sequence[str], op: str) -> None:
        current = self.current_shard()
        if current is None:
            return
        others = [s for s in targets if s != current]
        if others:
            raise CrossShardError(
                f"{op} would touch shard(s) {', '.join(map(repr, others))} inside a transaction on"
                f" shard {current!r}; nothing was sent"
            )

    def _requested(self, shards: Shards) -> list[str] | None:
        if shards is None:
            return None
        if shards == "all":
            return list(self._order)
        names = [shards] if isinstance(shards, str) else list(shards)
        for name in names:
            self.shard(name)
        if not names:
            raise RoutingError("shards= names no shard")
        return [name for name in self._order if name in names]

    def _route(
        self, placement: Placement, keys: list[Any] | None, shards: Shards, op: str
    ) -> tuple[list[str], bool]:
        """``(target shards in shard order, is this a fan-out)``; checks the transaction."""
        requested = self._requested(shards)
        if placement.kind == "home":
            assert placement.home is not None
            targets = [placement.home]
        elif keys is not None:
            found = {placement.shard_of(key, self._order) for key in keys}
            targets = [s for s in self._order if s in found and (requested is None or s in requested)]
            if not targets:
                # No row can match (contradictory keys, or none on the requested shards):
                # one shard still answers, with the right shape (an empty list, a zero count).
                targets = (requested or self._order)[:1]
        elif requested is not None:
            targets = requested
        else:
            assert placement.field is not None
            raise ShardKeyError(
                f"{op} on {placement.model.__name__} needs its shard key {placement.label}"
                f" (in the filters, the WHERE clause or shard_key=), or shards='all' to fan out"
            )
        self._check_scope(targets, op)
        return targets, requested is not None or len(targets) > 1

    def _where_keys(self, placement: Placement, query: Any, shard_key: Any) -> list[Any] | None:
        if shard_key is not _MISSING:
            return [shard_key]
        if placement.kind != "keyed":
            return None
        return keys_in_where(getattr(query, "_where", None), placement.field)

    def _instance_shard(self, placement: Placement, instance: Any, shard_key: Any, op: str) -> str:
        if placement.kind == "home":
            assert placement.home is not None
            shard = placement.home
        else:
            value = shard_key if shard_key is not _MISSING else instance.__data__.get(placement.field.name)
            if value is None:
                raise ShardKeyError(
                    f"{op} of a {placement.model.__name__} without its shard key {placement.label}"
                    f" (set it on the instance, or pass shard_key=)"
                )
            shard = placement.shard_of(value, self._order)
        self._check_scope([shard], op)
        return shard

    def _default_key(self, field: Any) -> tuple[bool, Any]:
        default = field.default
        if default is None:
            return False, None
        return True, default() if callable(default) else default

    # -- reference tables -------------------------------------------------------------

    async def _reference_read(self, run: Callable[[Manager], Awaitable[T]]) -> T:
        """Read a reference table from the transaction's shard, else the first that answers."""
        current = self.current_shard()
        if current is not None:
            return await run(self._managers[current])

        def looks_up(name: str) -> bool:
            manager = self._managers[name]
            return manager.primary_node.healthy or any(node.healthy for node in manager.replicas)

        # Shards the health monitor reports down go last, not out: it may be out of date.
        ordered = sorted(self._order, key=lambda name: not looks_up(name))
        failures: dict[str, BaseException] = {}
        for name in ordered:
            try:
                return await run(self._managers[name])
            except (NodeUnavailable, PoolError) as exc:  # unreachable, exhausted or closed: try the next copy
                failures[name] = exc
        first = ordered[0]
        raise ShardError(first, failures[first], failures) from failures[first]

    async def _reference_write(self, run: Callable[[Manager], Awaitable[T]], op: str) -> T:
        """Write a reference table on every shard, in one transaction per shard.

        The transactions commit one after another once every shard has done its part, so
        an error on any shard before that rolls back all of them. There is no two-phase
        commit: a shard failing during the commits leaves the copies different.
        """
        current = self.current_shard()
        if current is not None and len(self._order) > 1:
            raise CrossShardError(
                f"{op} of a reference table writes every shard: not inside a transaction on shard {current!r}"
            )
        results: list[T] = []
        async with AsyncExitStack() as stack:
            for name in self._order:
                try:
                    await stack.enter_async_context(self._managers[name].transaction())
                except Exception as exc:
                    raise ShardError(name, exc) from exc
            for name in self._order:
                try:
                    results.append(await run(self._managers[name]))
                except Exception as exc:
                    raise ShardError(name, exc) from exc
        return results[0]

    # -- executing queries -----------------------------------------------------------

    async def execute(
        self, query: Any, *, shards: Shards = None, shard_key: Any = _MISSING, partial: bool = False
    ) -> Any:
        """Run a model query on the shard(s) it belongs to; return what sync Peewee would.

        A SELECT with several target shards (``shards="all"``, a list, or an IN on the key)
        is merged: global ORDER BY, LIMIT/OFFSET after the merge, COUNT/SUM/MIN/MAX and
        GROUP BY combined. A shard failure raises :class:`ShardError`; with ``partial=True``
        (reads only) a :class:`FanOutResult` holds the other shards' rows and the failures.
        Updates and deletes on several shards return the summed row count.
        """
        placement = self.placement(_model_of(query))
        if isinstance(query, _pw.SelectBase):
            return await self._select(query, placement, shards, shard_key, partial)
        if partial:
            raise ValueError("partial=True is for reads: a write must not half-succeed silently")
        if isinstance(query, _pw.RawQuery):
            return await self._raw(query, placement, shards, shard_key)
        if placement.kind == "reference":
            return await self._reference_write(lambda m: m.execute(query), "write")
        if isinstance(query, _pw.Insert):
            query, keys = self._insert_keys(query, placement, shard_key)
            if placement.kind == "keyed" and keys is None:
                raise ShardKeyError(
                    f"insert into {placement.model.__name__} needs its shard key {placement.label}"
                    " in every row (or shard_key=)"
                )
            targets, _ = self._route(placement, keys, None, "insert")
            if len(targets) > 1:
                raise ShardKeyError(
                    f"this insert has rows for shards {targets}: use sharded.insert_many(), which splits them"
                )
            return await self._managers[targets[0]].execute(query)
        keys = self._where_keys(placement, query, shard_key)
        op = (
            "delete"
            if isinstance(query, _pw.Delete)
            else "update"
            if isinstance(query, _pw.Update)
            else "write"
        )
        targets, fan = self._route(placement, keys, shards, op)
        if not fan:
            return await self._managers[targets[0]].execute(query)
        results, _ = await gather_shards(
            targets, lambda s: self._managers[s].execute(query), limit=self.fanout_concurrency, partial=False
        )
        return _combine([results[s] for s in targets])

    def _insert_keys(self, query: Any, placement: Placement, shard_key: Any) -> tuple[Any, list[Any] | None]:
        if shard_key is not _MISSING:
            return query, [shard_key]
        if placement.kind != "keyed":
            return query, None
        field, data = placement.field, query._insert
        if isinstance(data, Mapping):
            found, value = key_in_row(data, field)
            if not found:
                # Peewee would call the key's default (an id generator) while compiling the SQL:
                # too late to route by it. Call it now and insert that value.
                found, value = self._default_key(field)
                if found:
                    query = query.clone()
                    query._insert = {**data, field: value}
            return query, [value] if found else None
        if isinstance(data, (list, tuple)):
            keys = []
            for row in data:
                found, value = key_in_row(row, field, query._columns)
                if not found:
                    return query, None
                keys.append(value)
            return query, keys
        return query, None  # INSERT ... SELECT: no key to read

    async def _raw(self, query: Any, placement: Placement, shards: Shards, shard_key: Any) -> Any:
        if placement.kind == "reference":
            if is_write(query):
                return await self._reference_write(lambda m: m.execute(query), "raw write")
            return await self._reference_read(lambda m: m.execute(query))
        keys = [shard_key] if shard_key is not _MISSING else None
        targets, fan = self._route(placement, keys, shards, "raw query")
        if not fan:
            return await self._managers[targets[0]].execute(query)
        results, _ = await gather_shards(
            targets, lambda s: self._managers[s].execute(query), limit=self.fanout_concurrency, partial=False
        )
        return _combine([results[s] for s in targets])

    async def _select(
        self, query: Any, placement: Placement, shards: Shards, shard_key: Any, partial: bool
    ) -> Any:
        if placement.kind == "reference":
            rows = await self._reference_read(lambda m: m.execute(query))
            return FanOutResult(rows) if partial else rows
        keys = self._where_keys(placement, query, shard_key)
        targets, fan = self._route(placement, keys, shards, "select")
        if not fan:
            return await self._managers[targets[0]].execute(query)
        return await self._fan_out_select(query, targets, partial)

    async def _fan_out_select(self, query: Any, targets: list[str], partial: bool) -> Any:
        if len(targets) == 1:  # the query runs as it is: nothing to merge, nothing to refuse
            plan = None
            runnable = query
        else:
            plan = plan_select(query, self.dialect)
            runnable = shard_query(query, plan)
        results, failures = await gather_shards(
            targets,
            lambda s: self._managers[s].execute(runnable),
            limit=self.fanout_concurrency,
            partial=partial,
        )
        if plan is None:
            rows = list(results.get(targets[0], []))
        else:
            rows = merge_results(query, plan, [results[s] for s in targets if s in results])
        return FanOutResult(rows, failures) if partial else rows

    def iterate(
        self,
        query: Any,
        *,
        chunk_size: int = 1000,
        shards: Shards = None,
        shard_key: Any = _MISSING,
        partial: bool = False,
    ) -> FanOutStream:
        """Stream a select's rows from its shard(s) with bounded memory.

        With several shards and an ORDER BY, an async k-way merge of the shards' streams
        (``Manager.iterate``) yields rows in global order, holding at most one chunk per
        shard; each shard keeps one connection (and cursor) open while the stream is open.
        Without ORDER BY the shards are streamed one after another. Aggregates and GROUP BY
        are computed as in :meth:`execute` and then yielded. Use ``async with`` to release
        every connection at once when stopping early.
        """
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        placement = self.placement(_model_of(query))
        failures: dict[str, BaseException] = {}
        if placement.kind == "reference":
            shard = self.current_shard() or self._order[0]
            return FanOutStream(_relay(self._managers[shard].iterate(query, chunk_size=chunk_size)), failures)
        keys = self._where_keys(placement, query, shard_key)
        targets, fan = self._route(placement, keys, shards, "iterate")
        if not fan or len(targets) == 1:
            stream = self._managers[targets[0]].iterate(query, chunk_size=chunk_size)
            rows = _relay(stream) if not fan else _relay_wrapped(stream, targets[0], failures, partial)
            return FanOutStream(rows, failures)
        plan = plan_select(query, self.dialect)
        if plan.kind != "rows":
            return FanOutStream(self._materialised(query, targets, partial, failures), failures)
        if plan.distinct:
            raise RoutingError(
                "DISTINCT cannot be streamed across shards (it would remember every row); use execute()"
            )
        clone = shard_query(query, plan)
        key: Callable[[Sequence[Any]], Any] = plan.sort_key if plan.order else (lambda row: None)
        sources = [
            (
                s,
                raw_pairs(
                    self._managers[s].iterate(clone, chunk_size=chunk_size), query._get_cursor_wrapper, key
                ),
            )
            for s in targets
        ]
        merge = merge_sorted if plan.order else chain_sources
        merged = merge(sources, failures=failures, partial=partial)
        return FanOutStream(page(merged, plan.offset, plan.stop), failures)

    async def _materialised(
        self, query: Any, targets: list[str], partial: bool, failures: dict[str, BaseException]
    ) -> AsyncGenerator[Any, None]:
        rows = await self._fan_out_select(query, targets, partial)
        if isinstance(rows, FanOutResult):
            failures.update(rows.failures)
        for row in rows:
            yield row

    # -- model shortcuts ------------------------------------------------------------------

    async def get(
        self, source: Any, *query: Any, shard_key: Any = _MISSING, shards: Shards = None, **filters: Any
    ) -> Any:
        """One model by expressions or ``field=value`` filters; raises ``Model.DoesNotExist``.

        Routed by the key in the filters/expressions (or ``shard_key=``); ``shards="all"``
        searches every shard (the first row by the query's ORDER BY, if it has one).
        """
        select, model = ModelShortcuts._select_for(source, query, filters)
        found = await self._get(select, model, shard_key, shards)
        if found is _MISSING:
            sql, params = self._managers[self._order[0]].database.get_sql_context().sql(select).query()
            raise model.DoesNotExist(
                f"{model.__name__} instance matching query does not exist:\nSQL: {sql}\nParams: {params}"
            )
        return found

    async def get_or_none(
        self, source: Any, *query: Any, shard_key: Any = _MISSING, shards: Shards = None, **filters: Any
    ) -> Any:
        """As :meth:`get`, but None when no row matches."""
        select, model = ModelShortcuts._select_for(source, query, filters)
        found = await self._get(select, model, shard_key, shards)
        return None if found is _MISSING else found

    async def _get(self, select: Any, model: Any, shard_key: Any, shards: Shards) -> Any:
        placement = self.placement(model)
        if placement.kind == "reference":
            rows = await self._reference_read(lambda m: m.execute(select.limit(1)))
        else:
            keys = self._where_keys(placement, select, shard_key)
            targets, fan = self._route(placement, keys, shards, "get")
            if fan:
                rows = await self._fan_out_select(select.limit(1), targets, partial=False)
            else:
                rows = await self._managers[targets[0]].execute(select.limit(1))
        return rows[0] if rows else _MISSING

    async def get_by_id(
        self, model: Any, pk: Any, *, shard_key: Any = _MISSING, shards: Shards = None
    ) -> Any:
        """The row with primary key ``pk`` (routed by it when the primary key is the shard key)."""
        return await self.get(model, model._meta.primary_key == pk, shard_key=shard_key, shards=shards)

    async def create(self, model: type[M], *, shard_key: Any = _MISSING, **data: Any) -> M:
        """Insert a row on its shard (every shard for a reference model); return the instance.

        The key comes from ``data`` or the key field's default (e.g. an id generator).
        """
        instance: Any = model(**data)
        await self._save(instance, force_insert=True, only=None, shard_key=shard_key, op="create")
        return instance  # type: ignore[no-any-return]

    async def save(
        self, instance: Any, *, force_insert: bool = False, only: Any = None, shard_key: Any = _MISSING
    ) -> int | bool:
        """Insert or update ``instance`` on its shard, as Peewee's ``Model.save`` does.

        The shard key must not change: a row does not move between shards (delete it and
        create it again).
        """
        return await self._save(
            instance, force_insert=force_insert, only=only, shard_key=shard_key, op="save"
        )

    async def _save(
        self, instance: Any, *, force_insert: bool, only: Any, shard_key: Any, op: str
    ) -> int | bool:
        placement = self.placement(type(instance))
        if placement.kind == "reference":
            # Decide insert-or-update once: after the first shard's insert the instance has
            # its primary key, and a second plain save() would UPDATE nothing elsewhere.
            insert = force_insert or (placement.model._meta.primary_key is not False and instance._pk is None)
            dirty = set(instance._dirty)

            async def save_on(manager: Manager) -> int | bool:
                instance._dirty = set(dirty)
                return await manager.save(instance, force_insert=insert, only=only)

            return await self._reference_write(save_on, op)
        shard = self._instance_shard(placement, instance, shard_key, op)
        return await self._managers[shard].save(instance, force_insert=force_insert, only=only)

    async def delete_instance(
        self,
        instance: Any,
        *,
        recursive: bool = False,
        delete_nullable: bool = False,
        shard_key: Any = _MISSING,
    ) -> int:
        """Delete ``instance``'s row on its shard (dependents too with ``recursive``, on that shard)."""
        placement = self.placement(type(instance))
        if placement.kind == "reference":
            return await self._reference_write(
                lambda m: m.delete_instance(instance, recursive=recursive, delete_nullable=delete_nullable),
                "delete_instance",
            )
        shard = self._instance_shard(placement, instance, shard_key, "delete_instance")
        return await self._managers[shard].delete_instance(
            instance, recursive=recursive, delete_nullable=delete_nullable
        )

    async def get_or_create(
        self,
        model: type[M],
        *,
        defaults: Mapping[str, Any] | None = None,
        shard_key: Any = _MISSING,
        **lookup: Any,
    ) -> tuple[M, bool]:
        """``(instance, created)`` on the shard of the key, which must be in ``lookup``."""
        placement = self.placement(model)
        if placement.kind == "reference":
            found = await self.get_or_none(model, **lookup)
            if found is not None:
                return found, False
            return await self.create(model, **{**lookup, **(defaults or {})}), True
        if placement.kind == "keyed" and shard_key is _MISSING and placement.field.name not in lookup:
            # Without the key the lookup could only search one shard, and miss the row elsewhere.
            raise ShardKeyError(
                f"get_or_create on {placement.model.__name__} needs its shard key {placement.label}"
                " in the lookup (or shard_key=)"
            )
        probe: Any = model(**lookup)
        shard = self._instance_shard(placement, probe, shard_key, "get_or_create")
        return await self._managers[shard].get_or_create(model, defaults=defaults, **lookup)

    async def insert_many(self, model: Any, rows: Iterable[Any], fields: Any = None) -> int:
        """Insert rows (dicts, or tuples with ``fields``), each on its shard; returns how many.

        One INSERT per shard, run concurrently: rows on different shards are not atomic together.
        """
        placement = self.placement(model)
        batch = list(rows)
        if placement.kind == "reference":
            await self._reference_write(lambda m: m.insert_many(model, batch, fields), "insert_many")
            return len(batch)
        groups: dict[str, list[Any]] = {}
        for row in batch:
            if placement.kind == "home":
                assert placement.home is not None
                shard = placement.home
            else:
                found, value = key_in_row(row, placement.field, fields)
                if not found and isinstance(row, Mapping):
                    found, value = self._default_key(placement.field)
                    row = {**row, placement.field.name: value}
                if not found:
                    raise ShardKeyError(f"insert_many into {model.__name__}: a row has no {placement.label}")
                shard = placement.shard_of(value, self._order)
            groups.setdefault(shard, []).append(row)
        targets = [s for s in self._order if s in groups]
        self._check_scope(targets, "insert_many")
        if len(targets) == 1:
            await self._managers[targets[0]].insert_many(model, groups[targets[0]], fields)
        elif targets:
            await gather_shards(
                targets,
                lambda s: self._managers[s].insert_many(model, groups[s], fields),
                limit=self.fanout_concurrency,
                partial=False,
            )
        return len(batch)

    async def count(
        self, query: Any, *, clear_limit: bool = False, shards: Shards = None, shard_key: Any = _MISSING
    ) -> int:
        """``SELECT COUNT(*)`` over the query; summed over the shards of a fan-out."""
        placement = self.placement(_model_of(query))
        if placement.kind == "reference":
            return await self._reference_read(lambda m: m.count(query, clear_limit=clear_limit))
        keys = self._where_keys(placement, query, shard_key)
        targets, fan = self._route(placement, keys, shards, "count")
        if not fan:
            return await self._managers[targets[0]].count(query, clear_limit=clear_limit)
        if query._group_by or query._distinct is not None or query._simple_distinct:
            # Groups and distinct rows can repeat across shards: count the merged result.
            clone = query.clone()
            if clear_limit:
                clone._limit = clone._offset = None
            return len(await self._fan_out_select(clone, targets, partial=False))
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
        self, query: Any, *, as_tuple: bool = False, shards: Shards = None, shard_key: Any = _MISSING
    ) -> Any:
        """The first column of the first (merged) row, or the whole row with ``as_tuple``."""
        rows = await self.execute(query.tuples(), shards=shards, shard_key=shard_key)
        if not rows:
            return None
        return rows[0] if as_tuple else rows[0][0]

    # -- transactions -------------------------------------------------------------------

    def transaction(
        self,
        *,
        shard: str | None = None,
        shard_key: Any = _MISSING,
        model: Any = None,
        isolation: str | None = None,
        read_only: bool = False,
    ) -> ShardTransaction:
        """A transaction on one shard: ``shard="s1"``, or the shard of ``shard_key``.

        The key is placed with ``model``'s strategy if given, else the manager's
        ``shard_strategy``. Inside the block, an operation that would touch another shard
        raises :class:`CrossShardError` before anything is sent.
        """
        if (shard is None) == (shard_key is _MISSING):
            raise ConfigurationError("transaction() needs exactly one of shard= or shard_key=")
        if shard is None:
            if model is not None:
                shard = self.placement(model).shard_of(shard_key, self._order)
            else:
                shard = shard_by_strategy(self.shard_strategy, shard_key, self._order, label="shard_key")
        self.shard(shard)
        return ShardTransaction(self, shard, isolation=isolation, read_only=read_only)

    # -- schema -----------------------------------------------------------------------------

    def _models_on(self, shard: str, models: Sequence[Any]) -> list[Any]:
        placements = [self.placement(model) for model in models]
        return [p.model for p in placements if p.kind != "home" or p.home == shard]

    async def create_tables(self, models: Sequence[Any] | None = None, *, safe: bool = True) -> None:
        """Create each model's table on the shards it lives on (default: every registered model)."""
        chosen = list(self._placements) if models is None else list(models)

        async def run(shard: str) -> None:
            here = self._models_on(shard, chosen)
            if here:
                await self._managers[shard].create_tables(here, safe=safe)

        await gather_shards(self._order, run, limit=self.fanout_concurrency, partial=False)

    async def drop_tables(self, models: Sequence[Any] | None = None, *, safe: bool = True) -> None:
        """Drop each model's table on the shards it lives on (default: every registered model)."""
        chosen = list(self._placements) if models is None else list(models)

        async def run(shard: str) -> None:
            here = self._models_on(shard, chosen)
            if here:
                await self._managers[shard].drop_tables(here, safe=safe)

        await gather_shards(self._order, run, limit=self.fanout_concurrency, partial=False)

    # -- distributed processing -------------------------------------------------------------

    def _walk_sources(
        self, model: Any, order_by: Any, shards: Shards, batch_size: int, where: Any, op: str
    ) -> tuple[dict[str, BatchSource], list[Any]]:
        """``({shard: batch source}, order fields)`` for walking ``model``'s rows."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
        placement = self.placement(model)
        if placement.kind == "reference":  # every shard has all rows: walk one copy
            targets = [self.current_shard() or self._order[0]]
        elif placement.kind == "home":
            assert placement.home is not None
            targets = [placement.home]
        else:
            targets = self._requested(shards or "all") or []
        self._check_scope(targets, op)
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
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a positive integer, got {concurrency!r}")
        sources, _ = self._walk_sources(model, order_by, shards, batch_size, where, "process")
        return await process_batches(
            sources,
            fn,
            concurrency=concurrency,
            limit=self.fanout_concurrency,
            progress=Progress(on_progress),
        )


def _model_of(query: Any) -> Any:
    model = getattr(query, "model", None)
    if not (isinstance(model, type) and issubclass(model, peewee.Model)):
        raise RoutingError(
            f"only model queries can be routed to a shard, got {type(query).__name__};"
            " run other SQL on one shard with sharded.shard(name)"
        )
    return model


async def _relay(stream: Any) -> AsyncGenerator[Any, None]:
    async with stream as rows:
        async for row in rows:
            yield row


async def _relay_wrapped(
    stream: Any, shard: str, failures: dict[str, BaseException], partial: bool
) -> AsyncGenerator[Any, None]:
    # A fan-out that ended up on one shard still reports failures the fan-out way.
    try:
        async with stream as rows:
            async for row in rows:
                yield row
    except Exception as exc:
        if not partial:
            raise ShardError(shard, exc) from exc
        failures[shard] = exc
