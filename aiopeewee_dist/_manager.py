"""The Manager: async Peewee over a primary, its replicas and their pools."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import AbstractContextManager, aclosing, asynccontextmanager
from typing import Any, TypeVar

import peewee

from ._consistency import Consistency, ConsistencyMode, Session
from ._deprecations import ManagerDeprecations
from ._dialects import following_database
from ._dispatch import Dispatcher
from ._errors import ConfigurationError, RoutingError
from ._health import HealthMonitor
from ._node import Node, NodeRef, Role
from ._observe import StatementObserver
from ._options import MAX_CHUNK, PoolOptions, ReplicaPolicy, count, parse_weight
from ._protocol import OpensOnEnter
from ._providers import TopologyFollower, TopologyProvider, follow_provider
from ._query import first_page, is_write
from ._rawsql import prepare_raw_sql
from ._router import Router, Strategy, StrategyName
from ._schema import create_tables, drop_tables
from ._shortcuts import ModelShortcuts
from ._streams import RowStream
from ._templates import insert_lookup_for, lookup_for
from ._topology import check_dialects, make_node, replica_items, urls_from_env
from ._transactions import TransactionMethods
from ._verify import open_nodes

__all__ = ["Manager"]

logger = logging.getLogger("aiopeewee_dist.router")
T = TypeVar("T")


class Manager(TransactionMethods, ModelShortcuts, ManagerDeprecations, OpensOnEnter):
    """Async access to ordinary Peewee models on a primary and its read replicas.

    ::

        manager = Manager("postgresql://app:secret@db1/app",
                          replicas=["postgresql://app:secret@db2/app"],
                          max_size=20, acquire_timeout=5.0, max_lag=5.0)
        async with manager:
            user = await manager.create(User, name="ada")   # primary
            users = await manager.execute(User.select())      # primary: read-your-writes
            ...                                               # reads later on: a replica

    Pool options (``min_size``, ``max_size``, ``acquire_timeout``, ``connect_timeout``,
    ``max_lifetime``, ``max_idle``, ``ping_after_idle``, ``query_timeout``) apply to every node; a node's
    URL query string can override them and set its ``name`` and ``weight``
    (``...?name=east&weight=2&max_size=5``). Replica options:

    - ``health_check_interval`` (s, None = no monitor), ``health_check_timeout`` (s),
      ``eject_after`` / ``readmit_after`` (consecutive failed / good checks);
    - ``max_lag`` (s): replicas whose data may be older leave the read rotation;
    - ``fallback``: ``"primary"`` or ``"raise"`` (``NoHealthyReplica``) with no eligible replica;
    - ``read_your_writes``: ``"fresh"`` (replicas proven to hold the context's last write,
      else the primary; see ``_consistency``), ``"causal"``, ``"sticky"`` (deprecated) or None;
    - ``auto_failover``: promote a replica that starts accepting writes while the
      primary is down or read-only.

    All times are in seconds. Nothing connects until the first query or ``connect()``.
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
        query_timeout: float | None = None,
        health_check_interval: float | None = 1.0,
        health_check_timeout: float = 2.0,
        eject_after: int = 2,
        readmit_after: int = 2,
        max_lag: float | None = None,
        fallback: str = "primary",
        read_your_writes: ConsistencyMode | None = "fresh",
        sticky_seconds: float | None = None,
        causal_wait: float = 0.0,
        auto_failover: bool = True,
        log_params: bool = False,
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
                query_timeout=query_timeout,
            )
            policy = ReplicaPolicy(
                health_check_interval=health_check_interval,
                health_check_timeout=health_check_timeout,
                eject_after=eject_after,
                readmit_after=readmit_after,
                max_lag=max_lag,
            )
            self._consistency = Consistency(
                read_your_writes, sticky_seconds=sticky_seconds, causal_wait=causal_wait
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"Manager: {exc}") from None
        self.auto_failover = bool(auto_failover)
        self.telemetry: StatementObserver | None = None  # every node's, also later ones (.telemetry)
        self._log_params = bool(log_params)
        self._build(primary, replicas, policy, strategy=strategy, max_lag=max_lag, fallback=fallback)

    def _build(
        self,
        primary: str,
        replicas: Sequence[str] | Mapping[str, str],
        policy: ReplicaPolicy,
        **routing: Any,
    ) -> None:
        """The nodes, their router and their health monitor."""
        primary_node = self._new_node(primary, default_name="primary", role="primary")
        replica_nodes = [
            self._new_node(url, default_name=f"replica-{i}", role="replica", name=name)
            for i, (name, url) in enumerate(replica_items(replicas), start=1)
        ]
        check_dialects([primary_node, *replica_nodes])
        self._router = Router(primary_node, replica_nodes, consistency=self._consistency, **routing)
        self._monitor = HealthMonitor(
            primary=lambda: self._router.primary,
            replicas=lambda: self._router.replicas,
            interval=policy.health_check_interval or 1.0,
            timeout=policy.health_check_timeout,
            eject_after=policy.eject_after,
            readmit_after=policy.readmit_after,
            on_writable_replica=self._on_writable_replica if self.auto_failover else None,
            enabled=policy.health_check_interval is not None,
        )
        self._replica_count = len(replica_nodes)
        self._dispatch = Dispatcher(
            self._router,
            self._monitor,
            self._consistency,
            before_read=self._ensure_monitor,
        )
        hook = self._dispatch.after_commit if self._consistency.mode is not None else None
        self._database = following_database(lambda: self._router.primary, on_write=hook)
        #: Set by :meth:`from_provider`: keeps the nodes in line with an HA system's view.
        self.follower: TopologyFollower | None = None

    def _new_node(
        self, url: str, *, default_name: str, role: Role, name: str | None = None, weight: float | None = None
    ) -> Node:
        return make_node(
            url, default_name=default_name, role=role, base=self.options, name=name, weight=weight,
            log_params=self._log_params, telemetry=self.telemetry,
        )  # fmt: skip

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
        primary, replicas = urls_from_env(environ, primary_var, replicas_var)
        return cls(primary, replicas, **options)

    @classmethod
    async def from_provider(
        cls, provider: TopologyProvider, *, refresh_interval: float = 1.0, **options: Any
    ) -> Manager:
        """A manager whose primary and replicas come from ``provider`` and follow its changes,
        asked every ``refresh_interval`` seconds (see :mod:`._providers` and docs/ha.md)."""
        return await follow_provider(cls, provider, refresh_interval, options)

    def __repr__(self) -> str:
        names = ", ".join(node.name for node in self._router.nodes)
        return f"<Manager {names}>"

    # -- topology and lifecycle ------------------------------------------------------

    @property
    def primary_node(self) -> Node:
        return self._router.primary

    @property
    def replicas(self) -> list[Node]:
        return list(self._router.replicas)

    @property
    def nodes(self) -> list[Node]:
        return self._router.nodes

    def node(self, name: str) -> Node:
        """The node called ``name`` (``RoutingError`` naming the known ones if none is)."""
        return self._router.node(name)

    @property
    def database(self) -> peewee.Database:
        """A peewee-async database on the current primary: bind ``AioModel`` classes to it.

        Code written for peewee-async 2.1 behaves the same on it (docs/peewee-async.md)."""
        database: peewee.Database = self._database
        return database

    async def connect(self, *, verify: bool = True) -> None:
        """Open the pools and start the monitor; ``verify``: check the primary (see ``_verify``)."""
        await open_nodes(self._router.primary, self._router.replicas, self._monitor, verify=verify)
        self._ensure_monitor()

    async def close(self) -> None:
        """Stop the monitor and close every pool; connections in use close when returned."""
        if self.follower is not None:
            await self.follower.stop()
        await self._monitor.stop()
        await self._router.close()

    def _ensure_monitor(self) -> None:
        if self.follower is not None:
            self.follower.ensure_running()
        if self._monitor.enabled and self._router.replicas and not self._monitor.running:
            self._monitor.ensure_running()

    async def add_replica(self, url: str, *, name: str | None = None, weight: float | None = None) -> Node:
        """Add a read replica at runtime; it takes reads once proven fresh (``HealthMonitor.join``)."""
        default_name = f"replica-{self._replica_count + 1}"
        node = self._new_node(url, default_name=default_name, role="replica", name=name, weight=weight)
        check_dialects([*self._router.nodes, node])
        self._monitor.join([node])
        self._router.add_replica(node)
        self._replica_count += 1
        self._ensure_monitor()
        logger.info("replica %s added (%s)", node.name, node.url.obscured())
        return node

    async def remove_replica(self, name: str, *, timeout: float = 30.0) -> None:
        """Take a replica out: new reads stop at once, reads in progress finish, then its pool closes."""
        node = await self._router.remove_replica(name, drain=timeout)
        logger.info("replica %s removed", node.name)

    def set_weight(self, name: str, weight: float) -> None:
        """Change a replica's share of reads under the ``weighted`` strategy."""
        self._router.set_weight(name, parse_weight(weight))

    async def replace_primary(self, target: str) -> Node:
        """Make ``target`` (a node's name, or a URL) the primary; the old one leaves.

        For failover: after a standby is promoted, writes go to it from the next query
        on, with no restart. Every node's connections are renewed.
        """
        old = self._router.primary
        try:
            new = self._router.node(target)
        except RoutingError:
            if "://" not in target:
                raise
            new = self._new_node(target, default_name=f"primary-{self._replica_count + 1}", role="primary")
            check_dialects([*self._router.replicas, new])
            if new.name in {n.name for n in self._router.replicas}:
                raise ConfigurationError(f"a node named {new.name!r} already exists") from None
        if new is old:
            return old
        logger.warning("primary is now %s (was %s)", new.name, old.name)
        await self._router.replace_primary(new, on_swap=self._monitor.primary_changed)
        return new

    async def _on_writable_replica(self, node: Node) -> None:
        logger.warning("replica %s accepts writes while the primary is unavailable: promoting it", node.name)
        await self.replace_primary(node.name)

    async def check_connections(self) -> list[dict[str, Any]]:
        """Check every node now; per node: name, role, up, latency, lag, position, pool stats."""
        await self._monitor.check()
        report = self._monitor.report
        return [
            {"name": node.name, "role": node.role, **report(node), "pool": node.pool.get_stats()}
            for node in self._router.nodes
        ]

    def stats(self) -> dict[str, Any]:
        """``{node_name: {...}}`` (queries, errors, latency percentiles in ms, pool
        size/available/waiting/acquired, up, lag) plus the router's counters under ``"router"``."""
        now = time.monotonic()
        result: dict[str, Any] = {node.name: node.stats(now) for node in self._router.nodes}
        result["router"] = dict(self._router.counters)
        return result

    @property
    def read_your_writes(self) -> ConsistencyMode | None:
        """The ``read_your_writes`` mode the manager was made with."""
        return self._consistency.mode

    @property
    def sticky_seconds(self) -> float | None:
        """The ``sticky_seconds`` the manager was made with."""
        return self._consistency.sticky_seconds

    # -- routing contexts ------------------------------------------------------------

    def using(self, name: str) -> AbstractContextManager[None]:
        """Send this context's queries to node ``name`` (writes only if it is the primary)."""
        return self._router.using(name)

    def primary(self) -> AbstractContextManager[None]:
        """Send this context's reads to the primary too."""
        return self._router.use_primary()

    def read_only(self) -> AbstractContextManager[None]:
        """Refuse every write in this context with ``ReadOnlyError`` before it reaches a server."""
        return self._router.read_only()

    def consistency(self, token: str | None = None) -> AbstractContextManager[Session]:
        """A fresh read-your-writes session for the block, optionally continuing ``token``.

        ``session.token()`` at the end of the block gives the token for the next request."""
        return self._consistency.scope(token)

    def consistency_token(self) -> str | None:
        """The current context's read-your-writes token (None before any write)."""
        session = self._consistency.current()
        return session.token() if session is not None else None

    @asynccontextmanager
    async def connection(self, *, node: NodeRef = None, write: bool = True) -> AsyncIterator[Any]:
        """Pin one raw driver connection of a node to this task for the block."""
        target = self._router.route(write=write, node=node)
        async with target.connection(write=write) as conn:
            yield conn

    # -- schema ------------------------------------------------------------------------

    async def create_tables(self, models: Sequence[type[peewee.Model]], *, safe: bool = True) -> None:
        """``CREATE TABLE`` (with indexes and sequences) for each model, on the primary."""
        await create_tables(self._router.route(write=True), models, safe=safe)

    async def drop_tables(self, models: Sequence[type[peewee.Model]], *, safe: bool = True) -> None:
        """``DROP TABLE`` for each model (dependents first), on the primary."""
        await drop_tables(self._router.route(write=True), models, safe=safe)

    # -- executing queries -----------------------------------------------------------

    async def execute(self, query: Any, *, node: NodeRef = None) -> Any:
        """Run any Peewee query where the router sends it; return what sync Peewee would.

        Selects return a list (of models, dicts, tuples or namedtuples, as the
        query asks); inserts the new primary key (or the list of keys / rows for
        ``insert_many`` with ``returning``); updates and deletes the row count.
        A read that finds its replica unreachable is retried once elsewhere.
        """
        if is_write(query):
            return await self._dispatch.write(lambda target: target.execute(query, write=True), node)
        return await self._dispatch.read(lambda target: target.execute(query, write=False), node)

    async def _get_rows(
        self, source: Any, query: tuple[Any, ...], filters: dict[str, Any], node: NodeRef
    ) -> list[Any]:
        lookup = lookup_for(source, query, filters, self._select_for) if self._templates_apply() else None
        if lookup is None:
            return await super()._get_rows(source, query, filters, node)

        async def run(target: Node) -> list[Any]:
            template = target.template(lookup)
            if template is None:
                select, _ = self._select_for(source, query, filters)
                rows: list[Any] = await target.execute(first_page(select), write=False)
            else:
                rows = await target.run_template(template, lookup.values, write=False)
            return rows

        return await self._dispatch.read(run, node)

    async def _insert(self, model: Any, data: dict[str, Any]) -> Any:
        lookup = insert_lookup_for(model, data) if self._templates_apply() else None
        if lookup is None:
            return await super()._insert(model, data)

        async def run(target: Node) -> Any:
            template = target.template(lookup)
            if template is None:
                return await target.execute(model.insert(**data), write=True)
            return await target.run_template(template, lookup.values, write=True)

        return await self._dispatch.write(run, None)

    def _templates_apply(self) -> bool:
        # A subclass that overrides execute() (instrumentation, say) must see every query.
        return type(self).execute is Manager.execute

    def iterate(self, query: Any, *, chunk_size: int = 1000, node: NodeRef = None) -> RowStream:
        """Stream a select's rows with bounded memory (server-side cursors where available).

        Use as ``async for row in manager.iterate(q)``; wrap in ``async with`` to
        release the connection at once if you stop early. Routed like ``execute``
        when iteration starts; a failure mid-stream is not retried.
        """
        count("chunk_size", chunk_size, upper=MAX_CHUNK)
        return RowStream(self._iterate(query, chunk_size, node))

    async def _iterate(self, query: Any, chunk_size: int, node: NodeRef) -> AsyncGenerator[Any, None]:
        write = is_write(query)
        if write:
            target = self._router.route(write=True, node=node)
        else:
            target = await self._dispatch.read(_identity, node)
        # Chunks are flattened here only: a generator hop per row in each layer below costs.
        async with aclosing(target.iterate_chunks(query, chunk_size=chunk_size, write=write)) as chunks:
            async for rows, build in chunks:
                if build is None:
                    for row in rows:
                        yield row
                else:
                    for row in rows:
                        yield build(row)

    async def raw_sql(
        self, sql: str, params: Sequence[Any] = (), *, node: NodeRef = None, multiple_statements: bool = False
    ) -> Any:
        """SQL text (``%s`` placeholders, one statement); a list of tuples, or a write's row count."""
        args = tuple(params)
        sql, writes = prepare_raw_sql(sql, self._router.primary.dialect, bool(args), multiple_statements)
        if writes:
            result = await self._dispatch.write(lambda target: target.run_sql(sql, args, write=True), node)
        else:
            result = await self._dispatch.read(lambda target: target.run_sql(sql, args, write=False), node)
        return result.rows if result.description is not None else result.rowcount


async def _identity(node: Node) -> Node:
    return node
