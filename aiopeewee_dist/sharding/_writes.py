"""The model-instance writes of ShardedManager: create, save, delete_instance, get_or_create,
insert_many. Keyed rows go to the shard of their key; reference rows to every shard."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import peewee

from .._compat import model_pk
from .._errors import ShardKeyError
from ._dispatch import Dispatcher
from ._gather import gather_shards
from ._routing import MISSING, ShardRouter
from ._shardkeys import Placement, key_in_row

if TYPE_CHECKING:
    from .._manager import Manager

__all__ = ["ShardedWrites"]

M = TypeVar("M", bound=peewee.Model)


class ShardedWrites:
    """Mixin of :class:`ShardedManager`: writing model instances and rows where they belong."""

    _dispatch: Dispatcher
    _router: ShardRouter
    _managers: dict[str, Manager]
    fanout_concurrency: int

    async def create(self, model: type[M], *, shard_key: Any = MISSING, **data: Any) -> M:
        """Insert a row on its shard (every shard for a reference model); return the instance.

        The key comes from ``data`` or the key field's default (e.g. an id generator).
        """
        instance: Any = model(**data)
        await self._save(instance, force_insert=True, only=None, shard_key=shard_key, op="create")
        return instance  # type: ignore[no-any-return]

    async def save(
        self, instance: Any, *, force_insert: bool = False, only: Any = None, shard_key: Any = MISSING
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
        placement = self._router.placement(type(instance))
        if placement.kind == "reference":
            # Decide insert-or-update once: after the first shard's insert the instance has
            # its primary key, and a second plain save() would UPDATE nothing elsewhere.
            insert = force_insert or (
                placement.model._meta.primary_key is not False and model_pk(instance) is None
            )
            dirty = set(instance._dirty)

            async def save_on(manager: Manager) -> int | bool:
                instance._dirty = set(dirty)
                return await manager.save(instance, force_insert=insert, only=only)

            return await self._dispatch.reference_write(save_on, op)
        shard = self._router.instance_shard(placement, instance, shard_key, op)
        return await self._managers[shard].save(instance, force_insert=force_insert, only=only)

    async def delete_instance(
        self,
        instance: Any,
        *,
        recursive: bool = False,
        delete_nullable: bool = False,
        shard_key: Any = MISSING,
    ) -> int:
        """Delete ``instance``'s row on its shard (dependents too with ``recursive``, on that shard)."""
        placement = self._router.placement(type(instance))

        def delete(manager: Manager) -> Any:
            return manager.delete_instance(instance, recursive=recursive, delete_nullable=delete_nullable)

        if placement.kind == "reference":
            return await self._dispatch.reference_write(delete, "delete_instance")
        shard = self._router.instance_shard(placement, instance, shard_key, "delete_instance")
        return int(await delete(self._managers[shard]))

    async def get_or_create(
        self,
        model: type[M],
        *,
        defaults: Mapping[str, Any] | None = None,
        shard_key: Any = MISSING,
        **lookup: Any,
    ) -> tuple[M, bool]:
        """``(instance, created)`` on the shard of the key, which must be in ``lookup``."""
        placement = self._router.placement(model)
        if placement.kind == "reference":
            found = await self._dispatch.reference_read(lambda m: m.get_or_none(model, **lookup))
            if found is not None:
                return found, False
            return await self.create(model, **{**lookup, **(defaults or {})}), True
        if placement.kind == "keyed" and shard_key is MISSING and placement.field.name not in lookup:
            # Without the key the lookup could only search one shard, and miss the row elsewhere.
            raise ShardKeyError(
                f"get_or_create on {placement.model.__name__} needs its shard key {placement.label}"
                " in the lookup (or shard_key=)"
            )
        probe: Any = model(**lookup)
        shard = self._router.instance_shard(placement, probe, shard_key, "get_or_create")
        return await self._managers[shard].get_or_create(model, defaults=defaults, **lookup)

    def _row_shard(self, placement: Placement, row: Any, fields: Any) -> tuple[str, Any]:
        if placement.kind == "home":
            assert placement.home is not None
            return placement.home, row
        found, value = key_in_row(row, placement.field, fields)
        if not found and isinstance(row, Mapping):
            found, value = self._router.default_key(placement.field)
            row = {**row, placement.field.name: value}
        if not found:
            raise ShardKeyError(
                f"insert_many into {placement.model.__name__}: a row has no {placement.label}"
            )
        return placement.shard_of(value, self._router.order), row

    async def insert_many(self, model: Any, rows: Iterable[Any], fields: Any = None) -> int:
        """Insert rows (dicts, or tuples with ``fields``), each on its shard; returns how many.

        One INSERT per shard, run concurrently: rows on different shards are not atomic together.
        """
        placement = self._router.placement(model)
        batch = list(rows)
        if placement.kind == "reference":
            await self._dispatch.reference_write(lambda m: m.insert_many(model, batch, fields), "insert_many")
            return len(batch)
        groups: dict[str, list[Any]] = {}
        for row in batch:
            shard, row = self._row_shard(placement, row, fields)
            groups.setdefault(shard, []).append(row)
        targets = [s for s in self._router.order if s in groups]
        self._router.check_scope(targets, "insert_many")
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
