"""The Manager: async Peewee over a primary, its replicas and their pools."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, aclosing, asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

import peewee

from . import _context
from ._consistency import Consistency, ConsistencyMode, Session
from ._errors import ConfigurationError, NodeUnavailable, RoutingError
from ._health import HealthMonitor
from ._node import Node, NodeRef, Role
from ._options import MAX_CHUNK, PoolOptions, ReplicaPolicy, count, parse_weight, validate_node_name
from ._query import first_page, is_write
from ._rawsql import prepare_raw_sql
from ._replication import UNKNOWN_POSITION, NodeStatus, Position
from ._router import Router, Strategy, StrategyName
from ._shortcuts import ModelShortcuts
from ._templates import insert_lookup_for, lookup_for
from ._transaction import Transaction
from ._url import DatabaseURL, parse_url
from ._verify import open_nodes

__all__ = ["Manager"]

logger = logging.getLogger("aiopeewee_dist.router")
T = TypeVar("T")


def _pool_overrides(url: DatabaseURL) -> dict[str, str]:
    return {k: v for k, v in url.node_options.items() if k not in ("name", "weight")}


class Manager(ModelShortcuts):
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
    - ``read_your_writes``: ``"fresh"`` (after a write, only replicas the monitor proved
      to hold it serve the context's reads, else the primary; ``sticky_seconds``, if set,
      caps that), ``"causal"`` (replicas that replayed the write's position, read after
      each write; wait up to ``causal_wait``), ``"sticky"`` (deprecated) or None;
    - ``auto_failover``: promote a replica that starts accepting writes while the
      primary is down or read-only;
    - ``log_params``: show parameter values in the ``aiopeewee_dist.sql`` DEBUG lines
      (redacted by default: they may hold personal data).

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
            consistency = Consistency(
                read_your_writes, sticky_seconds=sticky_seconds, causal_wait=causal_wait
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"Manager: {exc}") from None
        self.auto_failover = bool(auto_failover)
        self._log_params = bool(log_params)
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
        self._check_dialects([primary_node, *replica_nodes])
        self.router = Router(
            primary_node,
            replica_nodes,
            strategy=strategy,
            consistency=consistency,
            max_lag=max_lag,
            fallback=fallback,
        )
        self.consistency_policy = consistency
        self.monitor = HealthMonitor(
            primary=lambda: self.router.primary,
            replicas=lambda: self.router.replicas,
            interval=policy.health_check_interval or 1.0,
            timeout=policy.health_check_timeout,
            eject_after=policy.eject_after,
            readmit_after=policy.readmit_after,
            on_writable_replica=self._on_writable_replica if self.auto_failover else None,
        )
        self._monitor_enabled = policy.health_check_interval is not None
        self._replica_count = len(replica_nodes)

    def _make_node(self, url: str, *, default_name: str, role: Role, name: str | None = None) -> Node:
        parsed = parse_url(url)
        node_name = validate_node_name(name or parsed.node_options.get("name") or default_name)
        try:
            options = PoolOptions.from_strings(_pool_overrides(parsed), base=self.options)
            weight = parse_weight(parsed.node_options.get("weight", "1"))
        except ConfigurationError as exc:
            raise ConfigurationError(f"node {node_name!r}: {exc}") from None
        node = Node(parsed, name=node_name, role=role, options=options, weight=weight)
        node.log_params = self._log_params
        return node

    @staticmethod
    def _check_dialects(nodes: Sequence[Node]) -> None:
        dialects = {node.dialect for node in nodes}
        if len(dialects) > 1:
            raise ConfigurationError(f"primary and replicas must share one dialect, got {sorted(dialects)}")

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

    async def connect(self, *, verify: bool = True) -> None:
        """Open every node's pool now (``min_size`` connections each) and start the monitor.

        ``verify`` (default): one authenticated connection to the primary, which raises
        :class:`NodeRejected` (wrong credentials, unknown database or host, TLS refused) or
        :class:`NodeUnavailable` naming the node; unreachable replicas only log a warning.
        """
        eject = self.monitor.record_failure
        timeout = self.router.primary.options.connect_timeout + self.monitor.timeout
        await open_nodes(self.router.primary, self.router.replicas, verify, timeout, eject)
        self._ensure_monitor()

    async def close(self) -> None:
        """Stop the monitor and close every pool; connections in use close when returned."""
        await self.monitor.stop()
        for node in self.router.nodes:
            await node.close()

    async def __aenter__(self) -> Manager:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _ensure_monitor(self) -> None:
        if self._monitor_enabled and self.router.replicas and not self.monitor.running:
            self.monitor.ensure_running()

    async def add_replica(self, url: str, *, name: str | None = None, weight: float | None = None) -> Node:
        """Add a read replica at runtime; it takes reads once it is known to be healthy."""
        node = self._make_node(
            url, default_name=f"replica-{self._replica_count + 1}", role="replica", name=name
        )
        if weight is not None:
            node.weight = parse_weight(weight)
        self._check_dialects([*self.router.nodes, node])
        if node.name in {n.name for n in self.router.nodes}:
            raise ConfigurationError(f"a node named {node.name!r} already exists")
        self._replica_count += 1
        self.router.replicas = [*self.router.replicas, node]
        self._ensure_monitor()
        logger.info("replica %s added (%s)", node.name, node.url.obscured())
        return node

    async def remove_replica(self, name: str, *, timeout: float = 30.0) -> None:
        """Take a replica out: new reads stop at once, reads in progress finish, then its pool closes."""
        node = self.router.node(name)
        if node not in self.router.replicas:
            raise RoutingError(f"node {name!r} is not a replica")
        self.router.replicas = [r for r in self.router.replicas if r is not node]
        await node.drain(timeout)
        await node.close()
        logger.info("replica %s removed", node.name)

    def set_weight(self, name: str, weight: float) -> None:
        """Change a replica's share of reads under the ``weighted`` strategy."""
        self.router.node(name).weight = parse_weight(weight)

    async def replace_primary(self, target: str) -> Node:
        """Make ``target`` (a replica's name, or a URL) the primary; the old one leaves.

        For failover: after a standby is promoted, writes go to it from the next query
        on, with no restart. Every node's connections are renewed.
        """
        old = self.router.primary
        try:
            new = self.router.node(target)
        except RoutingError:
            if "://" not in target:
                raise
            new = self._make_node(target, default_name=f"primary-{self._replica_count + 1}", role="primary")
            self._check_dialects([*self.router.replicas, new])
            if new.name in {n.name for n in self.router.replicas}:
                raise ConfigurationError(f"a node named {new.name!r} already exists") from None
        if new is old:
            return old
        self.router.replicas = [r for r in self.router.replicas if r is not new]
        new.set_role("primary")
        new.health.up = True
        self.router.primary = new
        for node in self.router.replicas:
            node.expire_connections()
        logger.warning("primary is now %s (was %s)", new.name, old.name)
        await old.close()
        return new

    async def promote(self, name: str) -> Node:
        """Alias of :meth:`replace_primary` for a replica given by name."""
        return await self.replace_primary(name)

    async def _on_writable_replica(self, node: Node) -> None:
        logger.warning("replica %s accepts writes while the primary is unavailable: promoting it", node.name)
        await self.replace_primary(node.name)

    async def check_connections(self) -> list[dict[str, Any]]:
        """Check every node now; per node: name, role, up, latency, lag, position, pool stats."""
        await self.monitor.check()
        return [
            {"name": node.name, "role": node.role, **self.monitor.report(node), "pool": node.pool.get_stats()}
            for node in self.router.nodes
        ]

    def stats(self) -> dict[str, Any]:
        """``{node_name: {...}}`` (queries, errors, latency percentiles in ms, pool
        size/available/waiting/acquired, up, lag) plus the router's counters under ``"router"``.
        """
        result: dict[str, Any] = {}
        now = time.monotonic()
        for node in self.router.nodes:
            entry: dict[str, Any] = dict(node.get_stats())
            entry.update(_percentiles_ms(node.latencies))
            entry["role"] = node.role
            entry["up"] = node.healthy
            entry["lag"] = node.health.staleness(now) if node.role == "replica" else 0.0
            result[node.name] = entry
        result["router"] = dict(self.router.counters)
        return result

    get_stats = stats

    # -- routing contexts ------------------------------------------------------------

    def using(self, name: str) -> AbstractContextManager[None]:
        """Send this context's queries to node ``name`` (writes only if it is the primary)."""
        return self.router.using(name)

    def primary(self) -> AbstractContextManager[None]:
        """Send this context's reads to the primary too."""
        return self.router.use_primary()

    def read_only(self) -> AbstractContextManager[None]:
        """Refuse every write in this context with ``ReadOnlyError`` before it reaches a server."""
        return self.router.read_only()

    def consistency(self, token: str | None = None) -> AbstractContextManager[Session]:
        """A fresh read-your-writes session for the block, optionally continuing ``token``.

        ``session.token()`` at the end of the block gives the token for the next request.
        """
        return self.consistency_policy.scope(token)

    def consistency_token(self) -> str | None:
        """The current context's read-your-writes token (None before any write)."""
        session = self.consistency_policy.current()
        return session.token() if session is not None else None

    def transaction(
        self, *, node: NodeRef = None, isolation: str | None = None, read_only: bool = False
    ) -> Transaction:
        """A transaction block (or decorator) pinned to one connection; nested blocks are savepoints.

        It runs on the primary unless ``node`` says otherwise; a ``read_only=True``
        transaction may run on a replica. Inside ``read_only()`` it is read-only.
        """
        router = self.router

        def resolve(read_only: bool) -> Node:
            return router.route(write=not read_only, node=node)

        return Transaction(
            resolve,
            isolation=isolation,
            read_only=read_only,
            # Without read-your-writes a commit records nothing: no callback to await.
            on_commit=self._after_commit if self.consistency_policy.mode is not None else None,
            read_only_context=lambda: router.in_read_only,
        )

    async def _after_commit(self, node: Node) -> None:
        if node.role == "primary":
            policy = self.consistency_policy
            policy.record_write(await self._position_after_write(node) if policy.tracks_positions else None)

    async def _position_after_write(self, node: Node) -> Position | None:
        """Causal mode: the primary's position after this session's write (None otherwise).

        The write is committed whatever happens here, so a failure must not raise;
        it yields a position no replica covers, sending reads to the primary.
        """
        if not self.consistency_policy.tracks_positions:
            return None
        try:
            return await node.current_position() or UNKNOWN_POSITION
        except Exception as exc:
            logger.warning("could not read the position of %s after a write: %s", node.name, exc)
            return UNKNOWN_POSITION

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
        A read that finds its replica unreachable is retried once elsewhere.
        """
        if is_write(query):
            return await self._write(lambda target: target.execute(query, write=True), node)
        return await self._read(lambda target: target.execute(query, write=False), node)

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

        return await self._read(run, node)

    async def _insert(self, model: Any, data: dict[str, Any]) -> Any:
        lookup = insert_lookup_for(model, data) if self._templates_apply() else None
        if lookup is None:
            return await super()._insert(model, data)

        async def run(target: Node) -> Any:
            template = target.template(lookup)
            if template is None:
                return await target.execute(model.insert(**data), write=True)
            return await target.run_template(template, lookup.values, write=True)

        return await self._write(run, None)

    def _templates_apply(self) -> bool:
        # A subclass that overrides execute() (instrumentation, say) must see every query.
        return type(self).execute is Manager.execute

    async def _write(self, run: Callable[[Node], Awaitable[T]], node: NodeRef) -> T:
        target = self.router.route(write=True, node=node)
        policy = self.consistency_policy
        if policy.mode is None or _context.current_transaction() is not None:
            return await run(target)  # inside a transaction, the commit records it
        if not policy.tracks_positions:
            try:
                return await run(target)
            finally:
                # Also when it failed: a write whose outcome is unknown may have committed.
                policy.record_write()
        # The position must be read on the session that wrote (MariaDB's @@last_gtid).
        async with target.connection():
            result = await run(target)
            policy.record_write(await self._position_after_write(target))
        return result

    async def _read(self, run: Callable[[Node], Awaitable[T]], node: NodeRef) -> T:
        self._ensure_monitor()
        if self.consistency_policy.causal_wait and node is None:
            await self._wait_for_causal_replica()
        target = self.router.route(write=False, node=node)
        try:
            return await run(target)
        except NodeUnavailable as exc:
            if target.role != "replica" or not self.router.chooses_freely(node):
                raise
            if self._monitor_enabled:
                self.monitor.record_failure(target, exc, eject_now=True)
            retry = self.router.route(write=False, exclude=(target,))
            self.router.counters[Router.RETRIES] += 1
            logger.warning("read failed on %s (%s); retrying on %s", target.name, exc, retry.name)
            return await run(retry)

    async def _wait_for_causal_replica(self) -> None:
        """Causal mode: give a replica up to ``causal_wait`` to replay this context's last write."""
        needed = self.consistency_policy.required_position()
        if needed is None or not self.router.chooses_freely(None):
            return
        deadline = time.monotonic() + self.consistency_policy.causal_wait
        while True:
            candidates = self.router.eligible_replicas()
            if not candidates or any(
                n.health.position and n.health.position.covers(needed) for n in candidates
            ):
                return
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.005)
            for replica in candidates:
                try:
                    position = await replica.current_position()
                except Exception:  # the monitor deals with broken nodes
                    continue
                if position is not None and replica.health.status is not None:
                    replica.health.status = NodeStatus(replica.health.status.is_replica, position)

    def iterate(self, query: Any, *, chunk_size: int = 1000, node: NodeRef = None) -> _RowStream:
        """Stream a select's rows with bounded memory (server-side cursors where available).

        Use as ``async for row in manager.iterate(q)``; wrap in ``async with`` to
        release the connection at once if you stop early. Routed like ``execute``
        when iteration starts; a failure mid-stream is not retried.
        """
        count("chunk_size", chunk_size, upper=MAX_CHUNK)
        return _RowStream(self._iterate(query, chunk_size, node))

    async def _iterate(self, query: Any, chunk_size: int, node: NodeRef) -> AsyncGenerator[Any, None]:
        write = is_write(query)
        if write:
            target = self.router.route(write=True, node=node)
        else:
            target = await self._read(_identity, node)
        async with aclosing(target.iterate(query, chunk_size=chunk_size, write=write)) as rows:
            async for row in rows:
                yield row

    async def raw_sql(
        self, sql: str, params: Sequence[Any] = (), *, node: NodeRef = None, multiple_statements: bool = False
    ) -> Any:
        """Run SQL text; reads return a list of tuples, writes the row count.

        Placeholders are ``%s`` on every backend (``%%`` for a literal ``%`` with parameters).
        More than one statement is refused unless ``multiple_statements=True``. A write is
        routed to the primary and counts for read-your-writes.
        """
        args = tuple(params)
        sql, writes = prepare_raw_sql(
            sql, self.router.primary.dialect, has_params=bool(args), multiple_statements=multiple_statements
        )
        if writes:
            result = await self._write(lambda target: target.run_sql(sql, args, write=True), node)
        else:
            result = await self._read(lambda target: target.run_sql(sql, args, write=False), node)
        return result.rows if result.description is not None else result.rowcount


async def _identity(node: Node) -> Node:
    return node


def _percentiles_ms(samples: Iterable[float]) -> dict[str, float | None]:
    ordered = sorted(samples)
    if not ordered:
        return {"latency_p50_ms": None, "latency_p95_ms": None, "latency_p99_ms": None}
    last = len(ordered) - 1
    return {
        f"latency_p{p}_ms": round(ordered[min(last, round(last * p / 100))] * 1000, 3) for p in (50, 95, 99)
    }


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
