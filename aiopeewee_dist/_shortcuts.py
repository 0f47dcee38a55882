"""Peewee's model-level shortcuts (get, create, save, prefetch, ...) as awaitables.

They build ordinary Peewee queries (no I/O) and run them through the manager's
``execute``, so each one is routed like any other query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import peewee

from ._compat import (
    aggregates,
    model_pk,
    model_pk_expr,
    populate_unsaved_relations,
    prune_fields,
    set_limit,
    set_model_pk,
)
from ._query import first_page
from ._transaction import Transaction

if TYPE_CHECKING:
    from ._node import NodeRef

__all__ = ["ModelShortcuts", "QueryRunner"]

M = TypeVar("M", bound=peewee.Model)
# peewee's type stubs leave out the model and schema internals used below.
_pw: Any = peewee


class QueryRunner(Protocol):
    """What the shortcuts build on: the class they are mixed into (``Manager``) provides it."""

    async def execute(self, query: Any, *, node: NodeRef = None) -> Any: ...

    def primary(self) -> AbstractContextManager[None]: ...

    def transaction(
        self, *, node: NodeRef = None, isolation: str | None = None, read_only: bool = False
    ) -> Transaction: ...

    @property
    def database(self) -> peewee.Database:
        """The database object that compiles SQL for the primary's dialect."""
        ...


class ModelShortcuts(QueryRunner):
    """Awaitable versions of Peewee's ``Model`` and query shortcuts."""

    async def scalar(self, query: Any, *, as_tuple: bool = False, node: NodeRef = None) -> Any:
        """The first column of the first row (the whole row with ``as_tuple``), or None."""
        rows = await self.execute(query.tuples(), node=node)
        if not rows:
            return None
        return rows[0] if as_tuple else rows[0][0]

    async def count(self, query: Any, *, clear_limit: bool = False, node: NodeRef = None) -> int:
        """``SELECT COUNT(*)`` over the query, as Peewee's ``query.count()``."""
        clone = query.order_by().alias("_wrapped")
        if clear_limit:
            set_limit(clone, None, None)
        if not aggregates(clone):
            clone = clone.select(_pw.SQL("1"))
        wrapped = _pw.Select([clone], [_pw.fn.COUNT(_pw.SQL("1"))])
        return int(await self.scalar(wrapped, node=node) or 0)

    async def exists(self, query: Any, *, node: NodeRef = None) -> bool:
        clone = query.columns(_pw.SQL("1"))
        set_limit(clone, 1, None)
        return bool(await self.scalar(clone, node=node))

    async def get(self, source: type[M] | Any, *query: Any, node: NodeRef = None, **filters: Any) -> Any:
        """One model by expressions or ``field=value`` filters; raises ``Model.DoesNotExist``.

        ``source`` is a model class or a select query; as Peewee's ``Model.get()`` and
        ``query.get()``: the first row of the query's first page of one row (its own LIMIT and
        OFFSET are replaced), and a single integer is a primary-key lookup.
        """
        rows = await self._get_rows(source, query, filters, node)
        if rows:
            return rows[0]
        select, model = self._select_for(source, query, filters)
        sql, params = self.database.get_sql_context().sql(first_page(select)).query()
        raise model.DoesNotExist(
            f"{model} instance matching query does not exist:\nSQL: {sql}\nParams: {params}"
        )

    async def get_or_none(
        self, source: type[M] | Any, *query: Any, node: NodeRef = None, **filters: Any
    ) -> Any:
        rows = await self._get_rows(source, query, filters, node)
        return rows[0] if rows else None

    async def get_by_id(self, model: type[M], pk: Any, *, node: NodeRef = None) -> M:
        result: M = await self.get(model, model._meta.primary_key == pk, node=node)
        return result

    async def _get_rows(
        self, source: Any, query: tuple[Any, ...], filters: dict[str, Any], node: NodeRef
    ) -> list[Any]:
        """The rows of ``get``'s ``SELECT ... LIMIT 1``."""
        select, _ = self._select_for(source, query, filters)
        return list(await self.execute(first_page(select), node=node))

    async def _insert(self, model: Any, data: dict[str, Any]) -> Any:
        """``model.insert(**data)`` of ``save``; what ``execute`` returns for it."""
        return await self.execute(model.insert(**data))

    @staticmethod
    def _select_for(source: Any, query: tuple[Any, ...], filters: dict[str, Any]) -> tuple[Any, Any]:
        if isinstance(source, type) and issubclass(source, peewee.Model):
            model, select = source, source.select()
        elif isinstance(source, _pw.SelectBase):
            select, model = source, source.model
        else:
            raise TypeError(f"expected a model class or a select query, got {source!r}")
        if len(query) == 1 and isinstance(query[0], int) and model._meta.auto_increment:
            # Peewee's Model.get(5): a lone integer is the primary key.
            select = select.where(model._meta.primary_key == query[0])
        elif query:
            select = select.where(*query)
        if filters:
            select = select.filter(**filters)
        return select, model

    async def create(self, model: type[M], **data: Any) -> M:
        """Insert a new row and return it as a model instance with its primary key set."""
        instance = model(**data)
        await self.save(instance, force_insert=True)
        return instance

    async def get_or_create(
        self, model: type[M], *, defaults: Mapping[str, Any] | None = None, **lookup: Any
    ) -> tuple[M, bool]:
        """``(instance, created)``; safe against a concurrent create of the same row.

        Runs on the primary so the lookup sees rows just written.
        """
        query = model.select()
        for field, value in lookup.items():
            query = query.where(getattr(model, field) == value)
        with self.primary():
            found = await self.get_or_none(query)
            if found is not None:
                return found, False
            try:
                async with self.transaction():
                    return await self.create(model, **{**lookup, **(defaults or {})}), True
            except _pw.IntegrityError:
                found = await self.get_or_none(query)
                if found is None:
                    raise
                return found, False

    async def save(
        self, instance: peewee.Model, *, force_insert: bool = False, only: Any = None
    ) -> int | bool:
        """Insert or update ``instance`` as Peewee's ``Model.save`` does; returns rows saved."""
        obj: Any = instance  # peewee's stubs omit Model internals
        meta = obj._meta
        field_dict = obj.__data__.copy()
        if meta.primary_key is not False:
            pk_field, pk_value = meta.primary_key, model_pk(obj)
        else:
            pk_field = pk_value = None
        if only is not None:
            field_dict = prune_fields(obj, field_dict, only)
        elif meta.only_save_dirty and not force_insert:
            field_dict = prune_fields(obj, field_dict, obj.dirty_fields)
            if not field_dict:
                obj._dirty.clear()
                return False
        populate_unsaved_relations(obj, field_dict)
        rows = 1
        if meta.auto_increment and pk_value is None:
            field_dict.pop(pk_field.name, None)
        if pk_value is not None and not force_insert:
            for name in pk_field.field_names if meta.composite_key else [pk_field.name]:
                field_dict.pop(name, None)
            if not field_dict:
                raise ValueError("no data to save!")
            rows = await self.execute(type(obj).update(**field_dict).where(model_pk_expr(obj)))
        elif pk_field is not None:
            pk = await self._insert(type(obj), field_dict)
            if pk is not None and (meta.auto_increment or pk_value is None):
                set_model_pk(obj, pk)
                obj._dirty.discard(pk_field.name)
        else:
            await self._insert(type(obj), field_dict)
        obj._dirty -= set(field_dict)
        return int(rows)

    async def delete_instance(
        self, instance: peewee.Model, *, recursive: bool = False, delete_nullable: bool = False
    ) -> int:
        """Delete ``instance``'s row (and, with ``recursive``, rows that depend on it)."""
        obj: Any = instance  # peewee's stubs omit Model internals
        if recursive:
            for query, fk in obj.dependencies(exclude_null_children=not delete_nullable):
                if fk.null and not delete_nullable:
                    await self.execute(fk.model.update(**{fk.name: None}).where(query))
                else:
                    await self.execute(fk.model.delete().where(query))
        return int(await self.execute(type(obj).delete().where(model_pk_expr(obj))))

    async def insert_many(self, model: type[peewee.Model], rows: Iterable[Any], fields: Any = None) -> Any:
        """``INSERT`` many rows in one statement; returns what Peewee's ``insert_many`` does."""
        return await self.execute(model.insert_many(rows, fields=fields))

    async def bulk_create(
        self, model: type[M], instances: Sequence[M], *, batch_size: int | None = None
    ) -> None:
        """Insert model instances in batches; sets their primary keys where the server returns them."""
        meta: Any = model._meta
        field_names = list(meta.sorted_field_names)
        if meta.auto_increment:
            field_names.remove(meta.primary_key.name)
        fields = [meta.fields[name] for name in field_names]
        attrs = [f.object_id_name if isinstance(f, _pw.ForeignKeyField) else f.name for f in fields]
        returns_keys = self.database.returning_clause and meta.primary_key is not False
        pk_fields = meta.get_primary_keys() if returns_keys else None
        step = batch_size or max(len(instances), 1)
        for start in range(0, len(instances), step):
            batch = instances[start : start + step]
            query = model.insert_many([[getattr(obj, a) for a in attrs] for obj in batch], fields=fields)
            if pk_fields:
                query = query.returning(*pk_fields).tuples()
            result = await self.execute(query)
            if pk_fields and result:
                for row, obj in zip(result, batch, strict=True):
                    for pk_field, value in zip(pk_fields, row, strict=True):
                        setattr(obj, pk_field.name, value)

    async def prefetch(self, query: Any, *subqueries: Any, node: NodeRef = None) -> list[Any]:
        """Peewee's ``prefetch``: one query per relation, related rows attached to each model."""
        if not subqueries:
            return list(await self.execute(query, node=node))
        fixed = _pw.prefetch_add_subquery(query, subqueries, _pw.PREFETCH_TYPE.WHERE)
        deps: dict[Any, dict[Any, Any]] = {}
        rel_map: dict[Any, list[Any]] = {}
        rows: list[Any] = []
        for pq in reversed(fixed):
            if pq.fields:
                for rel_model in pq.rel_models:
                    rel_map.setdefault(rel_model, []).append(pq)
            id_map = deps.setdefault(pq.model, {})
            rows = await self.execute(pq.query, node=node)
            for instance in rows:
                if pq.fields:
                    pq.store_instance(instance, id_map)
                for rel in rel_map.get(pq.model, ()):
                    rel.populate_instance(instance, deps[rel.model])
        return rows

    async def related(self, instance: peewee.Model, name: str, *, node: NodeRef = None) -> Any:
        """Load one relation of ``instance`` asynchronously: what ``instance.<name>`` gives in Peewee.

        A foreign key (``await manager.related(post, "author")``) gives the related model
        instance (None if the key is NULL) and caches it on ``instance``, so ``post.author``
        works afterwards without a query; a back-reference (``await manager.related(user,
        "posts")``) gives the list of related instances.
        """
        obj: Any = instance  # peewee's stubs omit Model internals
        meta = obj._meta
        field = meta.fields.get(name)
        if isinstance(field, _pw.ForeignKeyField):
            if name in obj.__rel__:
                return obj.__rel__[name]
            key = obj.__data__.get(field.name)
            if key is None:
                return None
            target = await self.get(field.rel_model, field.rel_field == key, node=node)
            setattr(obj, name, target)
            return target
        backref = getattr(type(obj), name, None)
        if isinstance(backref, _pw.BackrefAccessor):
            return list(await self.execute(getattr(obj, name), node=node))
        relations = sorted(
            [f.name for f in meta.fields.values() if isinstance(f, _pw.ForeignKeyField)]
            + [fk.backref for fk in meta.backrefs if fk.backref != "+"]
        )
        raise AttributeError(
            f"{type(obj).__name__} has no relation {name!r} (its relations: {', '.join(relations) or 'none'})"
        )
