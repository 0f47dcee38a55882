"""The Manager: async Peewee over a primary, its replicas and their pools."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, aclosing, asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

import peewee

from ._errors import ConfigurationError
from ._node import Node, Role
from ._options import PoolOptions, parse_weight, validate_node_name
from ._query import is_write, is_write_sql
from ._router import Router, Strategy, StrategyName
from ._transaction import Transaction
from ._url import DatabaseURL, parse_url

__all__ = ["Manager"]

M = TypeVar("M", bound=peewee.Model)
# peewee's type stubs leave out the model and schema internals used below.
_pw: Any = peewee
NodeRef = str | Node | None


def _pool_overrides(url: DatabaseURL) -> dict[str, str]:
    return {k: v for k, v in url.node_options.items() if k not in ("name", "weight")}


class Manager:
    """Async access to ordinary Peewee models on a primary and its read replicas.

    ::

        manager = Manager("postgresql://app:secret@db1/app",
                          replicas=["postgresql://app:secret@db2/app"],
                          max_size=20, acquire_timeout=5.0)
        async with manager:
            user = await manager.create(User, name="ada")   # primary
            users = await manager.execute(User.select())      # a replica

    Pool options given here (``min_size``, ``max_size``, ``acquire_timeout``,
    ``connect_timeout``, ``max_lifetime``, ``max_idle``, ``ping_after_idle``; all
    times in seconds) apply to every node; a node's URL query string can override
    them and set its ``name`` and ``weight`` (``...?name=east&weight=2&max_size=5``).
    Nothing connects until the first query or ``await manager.connect()``.
    """

    def __init__(
        self,
        primary: str,
        replicas: Sequence[str] | Mapping[str, str] = (),
        *,
        strategy: StrategyName | Strategy = "round_robin",
        min_size: int = 0,
        max_size: int = 10,
        acquire_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        max_lifetime: float = 3600.0,
        max_idle: float = 600.0,
        ping_after_idle: float | None = 5.0,
    ) -> None:
        try:
            self.options = PoolOptions(
                min_size=min_size,
                max_size=max_size,
                acquire_timeout=acquire_timeout,
                connect_timeout=connect_timeout,
                max_lifetime=max_lifetime,
                max_idle=max_idle,
                ping_after_idle=ping_after_idle,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"Manager: {exc}") from None
        primary_node = self._make_node(primary, default_name="primary", role="primary")
        if isinstance(replicas, str):
            raise ConfigurationError(
                "replicas must be a list of URLs (or a {name: url} mapping), not one string"
            )
        items: Iterable[tuple[str | None, str]] = (
            replicas.items() if isinstance(replicas, Mapping) else ((None, url) for url in replicas)
        )
        replica_nodes = [
            self._make_node(url, default_name=f"replica-{i}", role="replica", name=name)
            for i, (name, url) in enumerate(items, start=1)
        ]
        dialects = {node.dialect for node in [primary_node, *replica_nodes]}
        if len(dialects) > 1:
            raise ConfigurationError(f"primary and replicas must share one dialect, got {sorted(dialects)}")
        self.router = Router(primary_node, replica_nodes, strategy=strategy)

    def _make_node(self, url: str, *, default_name: str, role: Role, name: str | None = None) -> Node:
        parsed = parse_url(url)
        node_name = validate_node_name(name or parsed.node_options.get("name") or default_name)
        try:
            options = PoolOptions.from_strings(_pool_overrides(parsed), base=self.options)
            weight = parse_weight(parsed.node_options.get("weight", "1"))
        except ConfigurationError as exc:
            raise ConfigurationError(f"node {node_name!r}: {exc}") from None
        return Node(parsed, name=node_name, role=role, options=options, weight=weight)

    @classmethod
    def from_env(
        cls,
        *,
        primary_var: str = "DATABASE_URL",
        replicas_var: str = "DATABASE_REPLICA_URLS",
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Manager:
        """A manager from ``DATABASE_URL`` and the comma-separated ``DATABASE_REPLICA_URLS``."""
        env = os.environ if environ is None else environ
        primary = env.get(primary_var, "").strip()
        if not primary:
            raise ConfigurationError(f"environment variable {primary_var} is not set")
        replicas = [url.strip() for url in env.get(replicas_var, "").split(",") if url.strip()]
        return cls(primary, replicas, **options)

    def __repr__(self) -> str:
        names = ", ".join(node.name for node in self.router.nodes)
        return f"<Manager {names}>"

    # -- topology and lifecycle ------------------------------------------------------

    @property
    def primary_node(self) -> Node:
        return self.router.primary

    @property
    def replicas(self) -> list[Node]:
        return list(self.router.replicas)

    @property
    def nodes(self) -> list[Node]:
        return self.router.nodes

    def node(self, name: str) -> Node:
        """The node called ``name`` (``RoutingError`` naming the known ones if none is)."""
        return self.router.node(name)

    @property
    def database(self) -> peewee.Database:
        """The primary's peewee-async database: bind ``AioModel`` classes to it if you like."""
        database: peewee.Database = self.router.primary.database
        return database

    async def connect(self) -> None:
        """Open every node's pool now (``min_size`` connections each)."""
        for node in self.router.nodes:
            await node.open()

    async def close(self) -> None:
        """Close every pool; connections in use close when they are returned."""
        for node in self.router.nodes:
            await node.close()

    async def __aenter__(self) -> Manager:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def get_stats(self) -> dict[str, Any]:
        """``{node_name: node stats}`` plus the router's counters under ``"router"``."""
        stats: dict[str, Any] = {node.name: node.get_stats() for node in self.router.nodes}
        stats["router"] = dict(self.router.counters)
        return stats

    # -- routing contexts ------------------------------------------------------------

    def using(self, name: str) -> AbstractContextManager[None]:
        """Send this context's queries to node ``name`` (writes only if it is the primary)."""
        return self.router.using(name)

    def primary(self) -> AbstractContextManager[None]:
        """Send this context's reads to the primary too (e.g. right after a write)."""
        return self.router.use_primary()

    def read_only(self) -> AbstractContextManager[None]:
        """Refuse every write in this context with ``ReadOnlyError`` before it reaches a server."""
        return self.router.read_only()

    def transaction(
        self, *, node: NodeRef = None, isolation: str | None = None, read_only: bool = False
    ) -> Transaction:
        """A transaction block (or decorator) pinned to one connection; nested blocks are savepoints.

        It runs on the primary unless ``node`` says otherwise; a ``read_only=True``
        transaction may run on a replica. Inside ``read_only()`` it is read-only.
        """
        router = self.router
        read_only = read_only or router.in_read_only

        def resolve() -> Node:
            return router.route(write=not read_only, node=node)

        return Transaction(resolve, isolation=isolation, read_only=read_only)

    @asynccontextmanager
    async def connection(self, *, node: NodeRef = None, write: bool = True) -> AsyncIterator[Any]:
        """Pin one raw driver connection of a node to this task for the block."""
        target = self.router.route(write=write, node=node)
        async with target.connection(write=write) as conn:
            yield conn

    # -- executing queries -----------------------------------------------------------

    async def execute(self, query: Any, *, node: NodeRef = None) -> Any:
        """Run any Peewee query where the router sends it; return what sync Peewee would.

        Selects return a list (of models, dicts, tuples or namedtuples, as the
        query asks); inserts the new primary key (or the list of keys / rows for
        ``insert_many`` with ``returning``); updates and deletes the row count.
        """
        write = is_write(query)
        target = self.router.route(write=write, node=node)
        return await target.execute(query, write=write)

    def iterate(self, query: Any, *, chunk_size: int = 1000, node: NodeRef = None) -> _RowStream:
        """Stream a select's rows with bounded memory (server-side cursors where available).

        Use as ``async for row in manager.iterate(q)``; wrap in ``async with`` to
        release the connection at once if you stop early.
        """
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        write = is_write(query)
        target = self.router.route(write=write, node=node)
        return _RowStream(target.iterate(query, chunk_size=chunk_size, write=write))

    async def raw_sql(self, sql: str, params: Sequence[Any] = (), *, node: NodeRef = None) -> Any:
        """Run SQL text; reads return a list of tuples, writes the row count."""
        write = is_write_sql(sql)
        target = self.router.route(write=write, node=node)
        result = await target.run_sql(sql, tuple(params), write=write)
        return result.rows if result.description is not None else result.rowcount

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
            clone._limit = clone._offset = None
        simple = (
            clone._having is None
            and clone._group_by is None
            and clone._windows is None
            and clone._distinct is None
            and clone._simple_distinct is not True
        )
        if simple:
            clone = clone.select(_pw.SQL("1"))
        wrapped = _pw.Select([clone], [_pw.fn.COUNT(_pw.SQL("1"))])
        return int(await self.scalar(wrapped, node=node) or 0)

    async def exists(self, query: Any, *, node: NodeRef = None) -> bool:
        clone = query.columns(_pw.SQL("1"))
        clone._limit = 1
        clone._offset = None
        return bool(await self.scalar(clone, node=node))

    async def get(self, source: type[M] | Any, *query: Any, node: NodeRef = None, **filters: Any) -> Any:
        """One model by expressions or ``field=value`` filters; raises ``Model.DoesNotExist``.

        ``source`` is a model class or a select query.
        """
        select, model = self._select_for(source, query, filters)
        rows = await self.execute(select.limit(1), node=node)
        if rows:
            return rows[0]
        sql, params = self.router.primary.database.get_sql_context().sql(select).query()
        raise model.DoesNotExist(
            f"{model.__name__} instance matching query does not exist:\nSQL: {sql}\nParams: {params}"
        )

    async def get_or_none(
        self, source: type[M] | Any, *query: Any, node: NodeRef = None, **filters: Any
    ) -> Any:
        select, _ = self._select_for(source, query, filters)
        rows = await self.execute(select.limit(1), node=node)
        return rows[0] if rows else None

    async def get_by_id(self, model: type[M], pk: Any, *, node: NodeRef = None) -> M:
        result: M = await self.get(model, model._meta.primary_key == pk, node=node)
        return result

    @staticmethod
    def _select_for(source: Any, query: tuple[Any, ...], filters: dict[str, Any]) -> tuple[Any, Any]:
        if isinstance(source, type) and issubclass(source, peewee.Model):
            model, select = source, source.select()
        elif isinstance(source, _pw.SelectBase):
            select, model = source, source.model
        else:
            raise TypeError(f"expected a model class or a select query, got {source!r}")
        if query:
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
            pk_field, pk_value = meta.primary_key, obj._pk
        else:
            pk_field = pk_value = None
        if only is not None:
            field_dict = obj._prune_fields(field_dict, only)
        elif meta.only_save_dirty and not force_insert:
            field_dict = obj._prune_fields(field_dict, obj.dirty_fields)
            if not field_dict:
                obj._dirty.clear()
                return False
        obj._populate_unsaved_relations(field_dict)
        rows = 1
        if meta.auto_increment and pk_value is None:
            field_dict.pop(pk_field.name, None)
        if pk_value is not None and not force_insert:
            for name in pk_field.field_names if meta.composite_key else [pk_field.name]:
                field_dict.pop(name, None)
            if not field_dict:
                raise ValueError("no data to save!")
            rows = await self.execute(type(obj).update(**field_dict).where(obj._pk_expr()))
        elif pk_field is not None:
            pk = await self.execute(type(obj).insert(**field_dict))
            if pk is not None and (meta.auto_increment or pk_value is None):
                obj._pk = pk
                obj._dirty.discard(pk_field.name)
        else:
            await self.execute(type(obj).insert(**field_dict))
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
        return int(await self.execute(type(obj).delete().where(obj._pk_expr())))

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
        returns_keys = self.router.primary.database.returning_clause and meta.primary_key is not False
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

    # -- schema ------------------------------------------------------------------------

    async def create_tables(self, models: Sequence[type[peewee.Model]], *, safe: bool = True) -> None:
        """``CREATE TABLE`` (with indexes and sequences) for each model, on the primary."""
        node = self.router.route(write=True)
        database = node.database
        for model in _pw.sort_models(models):
            schema = _pw.SchemaManager(model, database=database)
            # No "IF NOT EXISTS" for indexes in this dialect: skip tables already there.
            if (
                safe
                and not database.safe_create_index
                and model._meta.table_name in await database.aio_get_tables(schema=model._meta.schema)
            ):
                continue
            if database.sequences:
                for field in model._meta.sorted_fields:
                    if field.sequence:
                        create = schema._create_context().literal("CREATE SEQUENCE IF NOT EXISTS ")
                        await node.execute(create.sql(schema._sequence_for_field(field)))
            await node.execute(schema._create_table(safe=safe))
            for index in schema._create_indexes(safe=safe):
                await node.execute(index)

    async def drop_tables(self, models: Sequence[type[peewee.Model]], *, safe: bool = True) -> None:
        """``DROP TABLE`` for each model (dependents first), on the primary."""
        node = self.router.route(write=True)
        for model in reversed(_pw.sort_models(models)):
            schema = _pw.SchemaManager(model, database=node.database)
            await node.execute(schema._drop_table(safe=safe))


class _RowStream:
    """An async iterator over streamed rows that is also an ``async with`` block."""

    def __init__(self, rows: AsyncGenerator[Any, None]) -> None:
        self._rows = aclosing(rows)
        self._iter = rows

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iter

    async def __aenter__(self) -> AsyncIterator[Any]:
        return await self._rows.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._rows.__aexit__(*exc_info)

    async def aclose(self) -> None:
        await self._iter.aclose()
