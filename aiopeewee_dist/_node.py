"""A node: one database server (primary, replica or shard member) with its pool."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any, Literal

from . import _context
from ._bounded import bounded
from ._cache import LRUCache
from ._compat import cursor_wrapper, exception_wrapper
from ._dialects import dialect_for
from ._drivers import Result, get_driver
from ._errors import NodeUnavailable, NotPrimary, PoolTimeout, QueryTimeout, ReadOnlyError
from ._health import NodeHealth
from ._observe import Observation, StatementObserver, acquire_timed, percentiles_ms
from ._options import PoolOptions
from ._pool import ConnectionPool, PooledConnection
from ._query import compile_query, shape_result
from ._readahead import read_ahead
from ._replication import Position, parse_position, position_sql
from ._rows import RowBuilder, row_builder
from ._server_errors import not_ready, refuses_writes
from ._shapes import shape_of, statement_for
from ._sharing import SharedCheckout
from ._sqllog import SQL_LOGGER, log_statement
from ._templates import Lookup, Template, template_for
from ._transaction import Transaction
from ._url import DatabaseURL

__all__ = ["Node", "NodeRef", "Role"]

Role = Literal["primary", "replica"]

Chunks = AsyncGenerator[tuple[list[Any], RowBuilder | None], None]  # see iterate_chunks
_LATENCY_SAMPLES = 1024
_MAX_COMPILED = 2048


class Node:
    """One server: its URL, role, pool(s) and the peewee-async database that compiles its SQL.

    SQLite nodes get a single writer connection (SQLite allows one writer at a time)
    and a pool of read-only reader connections; WAL mode lets both work at once.
    """

    QUERIES = "queries"
    ERRORS = "errors"

    def __init__(
        self,
        url: DatabaseURL,
        *,
        name: str,
        role: Role = "primary",
        options: PoolOptions | None = None,
        weight: float = 1.0,
    ) -> None:
        self.url = url
        self.name = name
        self.role: Role = role
        self.weight = weight
        self.log_params = False  # whether aiopeewee_dist.sql's DEBUG lines show parameter values
        self.driver = get_driver(url.backend)
        options = options or PoolOptions()
        self._read_pool: ConnectionPool | None = None
        in_flight = options.max_size  # statements at once, also where they share a connection
        if url.backend == "aiosqlite":
            writer = options.replace(max_size=1, min_size=1 if url.is_memory else min(options.min_size, 1))
            if not url.is_memory:
                self._read_pool = ConnectionPool(
                    name=f"{name}/readers", driver=self.driver, url=url, options=options, read_only=True
                )
            options = writer
        self.options = options
        self.pool = ConnectionPool(
            name=name,
            driver=self.driver,
            url=url,
            options=options,
            read_only=role == "replica",
            # An in-memory SQLite database lives exactly as long as its one connection.
            keep_forever=url.is_memory,
        )
        # Where a one-statement checkout of the writer pool comes from (see _sharing).
        shared = SharedCheckout(self.pool, limit=in_flight) if self.driver.queues_statements else None
        self._statements = shared or self.pool
        self.database = dialect_for(self)
        # Shortcut lookups (_templates) and execute() shapes (_shapes); a lookup's key starts with its class.
        self._compiled: LRUCache[Any, Template] = LRUCache(_MAX_COMPILED)
        self.closed = False
        self.health = NodeHealth()
        self._counters: Counter[str] = Counter()
        # Recent statement latencies (seconds) for the percentiles in stats().
        self.latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self.shared_binding: _context.Binding | None = None  # every task's (``_context.bound``)
        self.telemetry: StatementObserver | None = None  # None: off, one check per statement

    def __repr__(self) -> str:
        return f"<Node {self.name!r} {self.role} {self.url.obscured()}>"

    @property
    def dialect(self) -> str:
        return self.url.dialect

    @property
    def replication_dialect(self) -> str:
        """The dialect of the replication status and position queries this node answers."""
        return self.driver.replication_dialect or self.url.dialect

    @property
    def healthy(self) -> bool:
        """Whether the health monitor lets reads come here."""
        return self.health.serves_reads

    def set_role(self, role: Role) -> None:
        """Change role (failover): its connections are replaced; made primary, it is taken as up."""
        self.role = role
        self.pool.read_only = role == "replica"
        if role == "primary":
            self.health.readmit()
        self.expire_connections()

    @property
    def is_open(self) -> bool:
        """Whether a pool of this node is open: opened (``open()`` or first use), not closed since."""
        return any(pool.is_open for pool in self.pools())

    def pools(self) -> list[ConnectionPool]:
        return [self.pool] if self._read_pool is None else [self.pool, self._read_pool]

    async def open(self) -> None:
        """Open the pool(s) now (``min_size`` connections), instead of on first use."""
        self.closed = False
        for pool in self.pools():
            await pool.open()

    async def close(self) -> None:
        self.closed = True
        for pool in self.pools():
            await pool.close()

    def expire_connections(self) -> None:
        for pool in self.pools():
            pool.expire_connections()

    def pool_for(self, write: bool) -> ConnectionPool:
        return self.pool if write or self._read_pool is None else self._read_pool

    # -- connections ---------------------------------------------------------------

    def pin(self, *, write: bool = True, read_only: bool | None = None, bind: bool = True) -> _context.Pin:
        """Hold one connection of this node for a block (see :class:`._context.Pin`). ``write``: from
        the writer pool (a SQLite node's readers otherwise); ``read_only``: refuse writes on it (default:
        only a reader connection does); ``bind``: pin it to the task (its queries here run on it)."""
        return _context.Pin(self, write=write, bind=bind, read_only=read_only)

    @asynccontextmanager
    async def connection(self, *, write: bool = True) -> AsyncIterator[Any]:
        """Pin one connection of this node to the task for the block: inside, the task's queries
        to this node (and only this node) run on it. Re-entrant: a pinned connection is reused."""
        async with self.pin(write=write) as binding:
            await self.send_begin(binding)  # the caller may use the raw connection directly
            yield binding.conn

    def breaks(self, pc: PooledConnection, exc: BaseException) -> bool:
        """Whether ``exc`` leaves ``pc`` unusable, so it must be closed rather than reused."""
        # A statement interrupted by cancellation leaves the driver mid-protocol; only a
        # fresh connection is trustworthy afterwards. GeneratorExit is no such interruption:
        # it is thrown in at a ``yield`` (a stream closed early), never during a driver call,
        # after the stream's own cleanup (COMMIT/CLOSE) ran.
        if isinstance(exc, GeneratorExit):
            return self.driver.is_closed(pc.conn)
        if isinstance(exc, QueryTimeout):
            return True
        return not isinstance(exc, Exception) or self.driver.is_closed(pc.conn)

    # -- transactions: the deferred BEGIN lives here ---------------------------------

    def transaction(self, *, isolation: str | None = None, read_only: bool = False) -> Transaction:
        """A transaction block (or decorator) on this node; nested blocks are savepoints."""
        return Transaction(self, isolation=isolation, read_only=read_only)

    async def begin(
        self, binding: _context.Binding, *, isolation: str | None, read_only: bool, defer: bool
    ) -> None:
        """Open a transaction on a pinned connection.

        On a connection the block checked out itself (``defer``) with a driver that
        ``merges_begin``, the BEGIN is kept on the binding and sent in the same message as
        the block's first statement (one round trip less). Not on a connection pinned by
        ``connection()``: it may already be in the caller's hands, who must find the
        transaction open.
        """
        statements = self.driver.begin_statements(isolation=isolation, read_only=read_only)
        if defer and self.driver.merges_begin and len(statements) == 1:
            binding.begin = statements[0]
            return
        for sql in statements:
            await self._run_pinned(binding, sql, ())

    async def end(self, binding: _context.Binding, *, commit: bool) -> None:
        """COMMIT or ROLLBACK the pinned connection's transaction (nothing if BEGIN never went)."""
        if binding.begin is not None:
            binding.begin = None  # no statement ran, so there is no transaction to end
            return
        await self._run_pinned(binding, "COMMIT" if commit else "ROLLBACK", ())

    # -- statements ----------------------------------------------------------------

    async def run_sql(self, sql: str, params: Sequence[Any] = (), *, write: bool = True) -> Result:
        """Run one statement on this node (on the task's pinned connection if it has one)."""
        binding = _context.bound(self)
        if self.telemetry is None:  # one check per statement when telemetry is off
            return await self._run_one(binding, sql, params, write, None)
        with self.telemetry.statement(self, sql, params) as observation:
            return await self._run_one(binding, sql, params, write, observation)

    async def _run_one(
        self,
        binding: _context.Binding | None,
        sql: str,
        params: Sequence[Any],
        write: bool,
        observation: Observation | None,
    ) -> Result:
        if binding is not None:
            if write and binding.read_only:
                raise ReadOnlyError(f"write inside a read-only transaction on node {self.name!r}")
            if observation is not None:
                observation.waited(0.0)
            return await self._run_pinned(binding, sql, params)
        # A checkout for one statement, inlined rather than a Pin: this is every statement's path.
        pool = self._statements if write or self._read_pool is None else self._read_pool
        pc = await (pool.acquire() if observation is None else acquire_timed(pool, observation))
        try:
            result = await self._run(pc, sql, params)
        except BaseException as exc:
            pool.release(pc, broken=self.breaks(pc, exc))
            raise
        pool.release(pc, broken=False)
        return result

    async def _run_pinned(self, binding: _context.Binding, sql: str, params: Sequence[Any]) -> Result:
        """Run a statement on a pinned connection, with the transaction's BEGIN if not sent yet.

        An error that interrupts the driver mid-protocol (see ``breaks``) marks the binding broken.
        """
        pc = binding.pc
        begin = binding.begin
        try:
            if begin is None:
                return await self._run(pc, sql, params)
            result = await self._run(pc, sql, params, begin)
        except BaseException as exc:
            if begin is not None and self._began(binding):
                binding.begin = None  # the BEGIN reached the server (failed statements leave it open)
            binding.broken = binding.broken or self.breaks(pc, exc)
            raise
        binding.begin = None
        return result

    async def send_begin(self, binding: _context.Binding) -> None:
        """Send a transaction's deferred BEGIN now (its connection is about to be used directly)."""
        begin = binding.begin
        if begin is not None:
            binding.begin = None
            try:
                await self._run_pinned(binding, begin, ())
            except BaseException:
                if not self._began(binding):
                    binding.begin = begin  # still to be sent with the next statement
                raise

    def _began(self, binding: _context.Binding) -> bool:
        """Whether a BEGIN sent on the binding's connection reached the server."""
        conn = binding.pc.conn
        return self.driver.in_transaction(conn) or self.driver.is_closed(conn)

    async def _run(
        self, pc: PooledConnection, sql: str, params: Sequence[Any], begin: str | None = None
    ) -> Result:
        counters = self._counters
        # A BEGIN sent with the statement counts as the statement it is.
        counters[self.QUERIES] += 1 if begin is None else 2
        start = time.perf_counter()
        timeout = self.options.query_timeout
        conn = pc.conn
        driver = self.driver
        try:
            with exception_wrapper:
                call = (
                    driver.execute(conn, sql, params)
                    if begin is None
                    else driver.execute_after(conn, begin, sql, params)
                )
                result = await (call if timeout is None else bounded(call, timeout))
        except Exception as exc:
            counters[self.ERRORS] += 1
            if SQL_LOGGER.isEnabledFor(logging.DEBUG):
                log_statement(self.name, sql, params, start, None, exc, self.log_params)
            if isinstance(exc, asyncio.TimeoutError):
                # The cancelled statement left the connection mid-protocol: breaks() discards it.
                limit = f"query_timeout={timeout:g}s"
                raise QueryTimeout(f"node {self.name!r}: statement exceeded {limit}") from None
            if driver.is_closed(conn):
                self.expire_connections()  # its idle siblings most likely died with it
                raise NodeUnavailable(f"node {self.name!r}: connection lost: {exc}") from exc
            if not_ready(exc):  # nothing ran, and another node may answer: as good as unreachable
                raise NodeUnavailable(f"node {self.name!r} is not ready for statements: {exc}") from exc
            binding = _context.bound(self)
            if self.role == "primary" and refuses_writes(exc) and not (binding and binding.read_only):
                # A read-only session refuses writes by design; a read-only server was demoted.
                message = f"node {self.name!r} refused a write: it is read-only, no longer the primary"
                raise NotPrimary(f"{message} ({exc}); nothing was committed: retry it") from exc
            raise
        self.latencies.append(time.perf_counter() - start)
        if SQL_LOGGER.isEnabledFor(logging.DEBUG):  # one cached level check when DEBUG is off
            log_statement(self.name, sql, params, start, result, None, self.log_params)
        return result

    async def probe(self, sql: str, timeout: float) -> Any:
        """Run a status query for the health monitor; the first row, or an error.

        Raises :class:`PoolTimeout` when every connection is busy: a saturated pool
        says nothing about the server, so the monitor records no verdict then.
        """
        pool = self.pool_for(write=False)
        try:
            pc = await pool.acquire_within(timeout)
        except asyncio.TimeoutError:
            if pool.size >= pool.options.max_size:
                raise PoolTimeout(f"node {self.name!r}: every connection is busy") from None
            raise
        broken = False
        try:
            result = await bounded(self.driver.execute(pc.conn, sql, ()), timeout)
        except BaseException:
            broken = True
            raise
        finally:
            pool.release(pc, broken=broken)
        return result.rows[0] if result.rows else None

    async def execute(self, query: Any, *, write: bool = True) -> Any:
        """Run a Peewee query here and return what synchronous Peewee would."""
        shape = shape_of(query)
        template = None if shape is None else statement_for(self._compiled, self.database, query, shape)
        if shape is not None and template is not None:
            sql, params = template.sql, template.bind(shape.values)
        else:
            query, sql, params = compile_query(query, self.database)
        result = await self.run_sql(sql, params, write=write)
        return shape_result(query, self.database, result)

    def template(self, lookup: Lookup) -> Template | None:
        """This node's compiled statement for a shortcut's lookup (None: use the ordinary path)."""
        return template_for(self._compiled, self.database, lookup)

    async def run_template(self, template: Template, values: list[Any], *, write: bool) -> Any:
        """Run a template with these values; what ``execute`` of its query would return."""
        result = await self.run_sql(template.sql, template.bind(values), write=write)
        return shape_result(template.query, self.database, result)

    async def current_position(self) -> Position | None:
        """This server's replication position now (after this session's last commit)."""
        dialect = self.replication_dialect
        sql = position_sql(dialect)
        if sql is None:
            return None
        result = await self.run_sql(sql, write=False)
        return parse_position(dialect, result.rows[0][0]) if result.rows else None

    async def iterate_chunks(self, query: Any, *, chunk_size: int, write: bool = False) -> Chunks:
        """A select's rows through a server-side cursor, in lists of up to ``chunk_size``, each with
        what makes a row the model instance Peewee returns (None: the rows are final already)."""
        query, sql, params = compile_query(query, self.database)
        # Not pinned to the task (bind=False): an async generator runs in its consumer's context, so a
        # pinned connection would capture the consumer's other queries to this node mid-stream, and a
        # stream dropped without ``async with`` is finalised in another Context, where no binding can
        # be reset (in a transaction it uses the pinned one). aclosing: the driver's cleanup first.
        pin = self.pin(write=write, bind=False)
        async with pin as binding:
            await self.send_begin(binding)  # the driver checks the connection's transaction state
            chunks = read_ahead(self._stream(binding, query, sql, params, chunk_size), ahead=pin.owned)
            async with aclosing(chunks) as stream:
                async for chunk in stream:
                    yield chunk

    async def _stream(
        self, binding: _context.Binding, query: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> Chunks:
        self._counters[self.QUERIES] += 1
        try:
            with exception_wrapper:
                async with aclosing(self.driver.stream(binding.conn, sql, params, chunk_size)) as chunks:
                    async for chunk in chunks:
                        # Instances are made as they are taken: a chunk of them alive at once outlives
                        # young GC passes, and older ones cost more than the building itself.
                        build = row_builder(query, chunk.description)
                        yield (chunk.rows, build) if build else (list(cursor_wrapper(query, chunk)), None)
        except BaseException as exc:
            if isinstance(exc, Exception):
                self._counters[self.ERRORS] += 1
            binding.broken = binding.broken or self.breaks(binding.pc, exc)
            raise

    # -- observability -------------------------------------------------------------

    def get_stats(self) -> dict[str, int]:
        """Pool measures (size, available, waiting, acquired, ...) plus queries and errors; a SQLite
        node's writer and reader pools are summed, counters included."""
        stats = self.pool.get_stats()
        if self._statements is not self.pool:  # statements waiting to share the writer connection
            stats["waiting"] += self._statements.waiting
        if self._read_pool is not None:
            for key, value in self._read_pool.get_stats().items():
                if key != "min_size":
                    stats[key] += value
        stats[self.QUERIES] = self._counters[self.QUERIES]
        stats[self.ERRORS] = self._counters[self.ERRORS]
        return stats

    def stats(self, now: float) -> dict[str, Any]:
        """:meth:`get_stats` plus latency percentiles (ms), role, up and lag, for ``Manager.stats``."""
        lag = self.health.staleness(now) if self.role == "replica" else 0.0
        entry = {**self.get_stats(), **percentiles_ms(self.latencies)}
        return {**entry, "role": self.role, "up": self.healthy, "lag": lag}

    async def drain(self, timeout: float) -> None:
        """Wait until no connection of this node is checked out (at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        # Polling a counter the pool keeps anyway costs nothing on the query path.
        while self.busy and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    @property
    def busy(self) -> int:
        """Checked-out connections, for the least-busy strategy."""
        return sum(pool.in_use for pool in self.pools())


#: How callers name a node: by name, by object, or None to let the router choose.
NodeRef = str | Node | None
