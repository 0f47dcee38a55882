"""Which shard(s) an operation goes to: model placements, and routing by shard key.

Routing, first match wins:

1. A model placed ``home="s2"`` goes to s2; a ``reference`` model is read from one shard
   and written to all (see ``_dispatch``).
2. Keyed models: ``shard_key=`` if given, else the key in the create/save data, the
   instance, the ``get()`` filters or the WHERE clause (``==``, ``IN``, AND, OR).
3. No key: ``shards="all"`` (or a list of names) fans out; otherwise ``ShardKeyError``.

Inside ``sharded.transaction(...)`` every operation must resolve to that transaction's
shard; anything else raises :class:`CrossShardError` before a query is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union

import peewee

from .._errors import ConfigurationError, CrossShardError, RoutingError, ShardKeyError
from ._shardkeys import KeyStrategy, Placement, Ranges, key_in_row, keys_in_where
from ._transaction import current_shard

__all__ = ["MISSING", "ShardRouter", "Shards", "model_of"]

#: Which shards a fan-out may use: ``"all"``, one shard's name, or a list of names.
Shards = Union[Literal["all"], str, Sequence[str], None]  # noqa: UP007 (runtime alias on 3.10)


class _Missing:
    def __repr__(self) -> str:
        return "<no shard key>"


#: No ``shard_key=`` was given.
MISSING: Any = _Missing()


def model_of(query: Any) -> Any:
    """The model a query is about; RoutingError for SQL that is not a model query."""
    model = getattr(query, "model", None)
    if not (isinstance(model, type) and issubclass(model, peewee.Model)):
        raise RoutingError(
            f"only model queries can be routed to a shard, got {type(query).__name__};"
            " run other SQL on one shard with sharded.shard(name)"
        )
    return model


class ShardRouter:
    """Placements of models over the shards ``order``, and the routing of operations.

    ``owner`` is the sharded manager whose open transaction (``current_shard``) restricts
    the routes of the task.
    """

    def __init__(self, owner: Any, order: Sequence[str], strategy: Any) -> None:
        self.owner = owner
        self.order = list(order)
        self.strategy: KeyStrategy = self.check_strategy(strategy)
        self.placements: dict[Any, Placement] = {}

    def check_shard(self, name: str) -> str:
        """``name`` if it is a shard, else ``RoutingError`` naming the known shards."""
        if isinstance(name, str) and name in self.order:
            return name
        raise RoutingError(f"no shard named {name!r} (known: {', '.join(map(repr, self.order))})")

    def check_strategy(self, strategy: Any) -> KeyStrategy:
        if strategy == "hash":
            return "hash"
        if isinstance(strategy, Ranges):
            unknown = sorted(set(strategy.shard_names) - set(self.order))
            if unknown:
                raise ConfigurationError(f"Ranges name unknown shards {unknown} (known: {self.order})")
            return strategy
        if callable(strategy):
            return strategy  # type: ignore[no-any-return]
        raise ConfigurationError(f"shard strategy must be 'hash', a Ranges or a function, got {strategy!r}")

    def register(
        self, model: Any, *, key: str | None, strategy: Any, reference: bool, home: str | None
    ) -> None:
        """Place ``model`` (see ``ShardedManager.register``)."""
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
            checked = self.check_strategy(strategy or self.strategy)
            placement = Placement(model, "keyed", field=found, strategy=checked)
        elif reference:
            placement = Placement(model, "reference")
        else:
            assert home is not None
            placement = Placement(model, "home", home=self.check_shard(home))
        self.placements[model] = placement

    def placement(self, model: Any) -> Placement:
        """How ``model`` is placed (registered, or from its Meta); ``ShardKeyError`` if unknown."""
        found = self.placements.get(model)
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
        strategy = getattr(meta, "shard_strategy", None)
        self.register(model, key=key, strategy=strategy, reference=reference, home=home)
        return self.placements[model]

    def current(self) -> str | None:
        return current_shard(self.owner)

    def check_scope(self, targets: Sequence[str], op: str) -> None:
        current = self.current()
        if current is None:
            return
        others = [s for s in targets if s != current]
        if others:
            raise CrossShardError(
                f"{op} would touch shard(s) {', '.join(map(repr, others))} inside a transaction on"
                f" shard {current!r}; nothing was sent"
            )

    def requested(self, shards: Shards) -> list[str] | None:
        """The shards ``shards=`` names, in shard order (None: not given)."""
        if shards is None:
            return None
        if shards == "all":
            return list(self.order)
        names = [shards] if isinstance(shards, str) else list(shards)
        for name in names:
            self.check_shard(name)
        if not names:
            raise RoutingError("shards= names no shard")
        return [name for name in self.order if name in names]

    def route(
        self, placement: Placement, keys: list[Any] | None, shards: Shards, op: str
    ) -> tuple[list[str], bool]:
        """``(target shards in shard order, is this a fan-out)``; checks the transaction."""
        requested = self.requested(shards)
        if placement.kind == "home":
            assert placement.home is not None
            targets = [placement.home]
        elif keys is not None:
            found = {placement.shard_of(key, self.order) for key in keys}
            targets = [s for s in self.order if s in found and (requested is None or s in requested)]
            if not targets:
                # No row can match (contradictory keys, or none on the requested shards):
                # one shard still answers, with the right shape (an empty list, a zero count).
                targets = (requested or self.order)[:1]
        elif requested is not None:
            targets = requested
        else:
            raise ShardKeyError(
                f"{op} on {placement.model.__name__} needs its shard key {placement.label}"
                f" (in the filters, the WHERE clause or shard_key=), or shards='all' to fan out"
            )
        self.check_scope(targets, op)
        return targets, requested is not None or len(targets) > 1

    def where_keys(self, placement: Placement, query: Any, shard_key: Any) -> list[Any] | None:
        """The keys a query's WHERE clause (or ``shard_key=``) allows; None: no restriction."""
        if shard_key is not MISSING:
            return [shard_key]
        if placement.kind != "keyed":
            return None
        return keys_in_where(getattr(query, "_where", None), placement.field)

    def instance_shard(self, placement: Placement, instance: Any, shard_key: Any, op: str) -> str:
        """The shard of a model instance (its key field, or ``shard_key=``)."""
        if placement.kind == "home":
            assert placement.home is not None
            shard = placement.home
        else:
            value = shard_key if shard_key is not MISSING else instance.__data__.get(placement.field.name)
            if value is None:
                raise ShardKeyError(
                    f"{op} of a {placement.model.__name__} without its shard key {placement.label}"
                    f" (set it on the instance, or pass shard_key=)"
                )
            shard = placement.shard_of(value, self.order)
        self.check_scope([shard], op)
        return shard

    @staticmethod
    def default_key(field: Any) -> tuple[bool, Any]:
        """``(found, value)`` of the key field's default (an id generator is called now)."""
        default = field.default
        if default is None:
            return False, None
        return True, default() if callable(default) else default

    def insert_keys(self, query: Any, placement: Placement, shard_key: Any) -> tuple[Any, list[Any] | None]:
        """``(query, keys)`` of an INSERT; the query gets the key's default if it lacked it."""
        if shard_key is not MISSING:
            return query, [shard_key]
        if placement.kind != "keyed":
            return query, None
        field, data = placement.field, query._insert
        if isinstance(data, Mapping):
            found, value = key_in_row(data, field)
            if not found:
                # Peewee would call the key's default (an id generator) while compiling the SQL:
                # too late to route by it. Call it now and insert that value.
                found, value = self.default_key(field)
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
