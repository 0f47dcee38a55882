"""A node: one database server (primary, replica or shard member) with its pool."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any, Literal, NoReturn, cast

import peewee

from . import _context
from ._bounded import bounded
from ._dialects import dialect_for
from ._drivers import Result, get_driver
from ._errors import NodeUnavailable, PoolTimeout, QueryTimeout, ReadOnlyError
from ._health import NodeHealth
from ._options import MAX_AGE, PoolOptions
from ._pool import ConnectionPool, PooledConnection
from ._query import compile_query, shape_result
from ._replication import Position, parse_position, position_sql
from ._rows import model_rows
from ._shapes import shape_of, statement_for
from ._sqllog import SQL_LOGGER, log_statement
from ._templates import Lookup, Template, template_for
from ._url import DatabaseURL

__all__ = ["Node", "NodeRef", "Role"]

Role = Literal["primary", "replica"]

# Maps driver exceptions to Peewee's (IntegrityError, ...); not in peewee's type stubs.
_exception_wrapper = cast(Any, peewee).__exception_wrapper__
# An in-memory SQLite database lives exactly as long as its one connection: kept as long as
# the options allow (10**12 s failed the upper bound of max_lifetime/max_idle).
_FOREVER = MAX_AGE
_LATENCY_SAMPLES = 1024


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
        #: Whether the ``aiopeewee_dist.sql`` DEBUG lines show parameter values (Manager's log_params).
        self.log_params = False
        self.driver = get_driver(url.backend)
        options = options or PoolOptions()
        self._read_pool: ConnectionPool | None = None
        if url.backend == "aiosqlite":
            writer = options.replace(max_size=1, min_size=min(options.min_size, 1))
            if url.is_memory:
                writer = writer.replace(min_size=1, max_lifetime=_FOREVER, max_idle=_FOREVER)
            else:
                self._read_pool = ConnectionPool(
                    name=f"{name}/readers", driver=self.driver, url=url, options=options, read_only=True
                )
            options = writer
        self.options = options
        self.pool = ConnectionPool(
            name=name, driver=self.driver, url=url, options=options, read_only=role == "replica"
        )
        self.database = dialect_for(self)
        # Compiled get() statements in this node's dialect (see _templates).
        self._templates: dict[Any, Template] = {}
        # Compiled execute() statements by query shape (see _shapes).
        self._statements: dict[Any, Template] = {}
        self.closed = False
        self.health = NodeHealth()
        self._counters: Counter[str] = Counter()
        # Recent statement latencies (seconds) for the percentiles in stats().
        self.latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)

    def __repr__(self) -> str:
        return f"<Node {self.name!r} {self.role} {self.url.obscured()}>"

    @property
    def dialect(self) -> str:
        return self.url.dialect

    @property
    def healthy(self) -> bool:
        """Whether the health monitor lets reads come here."""
        return self.health.up

    def set_role(self, role: Role) -> None:
        """Change role (failover); connections opened for the old role are replaced."""
        self.role = role
        self.pool.read_only = role == "replica"
        self.expire_connections()

    def _pools(self) -> list[ConnectionPool]:
        return [self.pool] if self._read_pool is None else [self.pool, self._read_pool]

    async def open(self) -> None:
        """Open the pool(s) now (``min_size`` connections), instead of on first use."""
        self.closed = False
        for pool in self._pools():
            await pool.open()

    async def close(self) -> None:
        self.closed = True
        for pool in self._pools():
            await pool.close()

    def expire_connections(self) -> None:
        for pool in self._pools():
            pool.expire_connections()

    def _pool_for(self, write: bool) -> ConnectionPool:
        return self.pool if write or self._read_pool is None else self._read_pool

    # -- connections ---------------------------------------------------------------

    @asynccontextmanager
    async def connection(self, *, write: bool = True) -> AsyncIterator[Any]:
        """Pin one connection of this node to the current task for the block.

        Inside, every query the task sends to this node (and only this node) runs on
        it. Re-entrant: an already pinned connection is reused.
        """
        binding = _context.bound(self)
        if binding is not None:
            await self.send_begin(binding)  # the caller may use the raw connection directly
            yield binding.conn
            return
        pool = self._pool_for(write)
        pc = await pool.acquire()
        binding = _context.Binding(self, pool, pc, read_only=not write and pool is not self.pool)
        token = _context.bind(binding)
        try:
            yield pc.conn
        except BaseException as exc:
            binding.broken = binding.broken or self._breaks(pc, exc)
            raise
        finally:
            _context.unbind(token)
            pool.release(pc, broken=binding.broken)

    def _breaks(self, pc: PooledConnection, exc: BaseException) -> bool:
        # A statement interrupted by cancellation leaves the driver mid-protocol;
        # only a fresh connection is trustworthy afterwards.
        # GeneratorExit is no such interruption: it is thrown in at a ``yield`` (a stream
        # closed early), never during a driver call, and the stream's cleanup (COMMIT/CLOSE)
        # has already run when it gets here (had that failed, its error would replace it).
        # Counting it as breaking closed the connection of every stream stopped early and,
        # inside a transaction, marked the binding broken: the block then ended without
        # COMMIT and without an error, silently losing its writes.
        if isinstance(exc, GeneratorExit):
            return self.driver.is_closed(pc.conn)
        if isinstance(exc, QueryTimeout):
            return True
        return not isinstance(exc, Exception) or self.driver.is_closed(pc.conn)

    # -- statements ----------------------------------------------------------------

    async def run_sql(self, sql: str, params: Sequence[Any] = (), *, write: bool = True) -> Result:
        """Run one statement on this node (on the task's pinned connection if it has one)."""
        binding = _context.bound(self)
        if binding is not None:
            if write and binding.read_only:
                raise ReadOnlyError(f"write inside a read-only transaction on node {self.name!r}")
            return await self._run_pinned(binding, sql, params)
        # Inlined rather than a _Lease: this is every statement's path.
        pool = self._pool_for(write)
        pc = await pool.acquire()
        try:
            result = await self._run(pc, sql, params)
        except BaseException as exc:
            pool.release(pc, broken=self._breaks(pc, exc))
            raise
        pool.release(pc, broken=False)
        return result

    async def _run_pinned(self, binding: _context.Binding, sql: str, params: Sequence[Any]) -> Result:
        """Run a statement on a pinned connection, with the transaction's BEGIN if not sent yet.

        An error that interrupts the driver mid-protocol (see ``_breaks``) marks the binding broken.
        """
        pc = binding.pc
        begin = binding.begin
        try:
            if begin is None:
                return await self._run(pc, sql, params)
            result = await self._run(pc, sql, params, begin)
        except BaseException as exc:
            if begin is not None and (self.driver.in_transaction(pc.conn) or self.driver.is_closed(pc.conn)):
                binding.begin = None  # the BEGIN reached the server (failed statements leave it open)
            binding.broken = binding.broken or self._breaks(pc, exc)
            raise
        binding.begin = None
        return result

    async def send_begin(self, binding: _context.Binding) -> None:
        """Send a transaction's deferred BEGIN now (its connection is about to be used directly)."""
        begin = binding.begin
        if begin is not None:
            binding.begin = None
            try:
                await self._run(binding.pc, begin, ())
            except BaseException as exc:
                if not (
                    self.driver.in_transaction(binding.pc.conn) or self.driver.is_closed(binding.pc.conn)
                ):
                    binding.begin = begin
                binding.broken = binding.broken or self._breaks(binding.pc, exc)
                raise

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
            with _exception_wrapper:
                call = (
                    driver.execute(conn, sql, params)
                    if begin is None
                    else driver.execute_after(conn, begin, sql, params)
                )
                result = await (call if timeout is None else bounded(call, timeout))
        except BaseException as exc:
            if SQL_LOGGER.isEnabledFor(logging.DEBUG):
                self._log(sql, params, start, None, exc)
            return self._failed(exc, conn, timeout)
        elapsed = time.perf_counter() - start
        self.latencies.append(elapsed)
        if SQL_LOGGER.isEnabledFor(logging.DEBUG):
            self._log(sql, params, start, result, None)
        return result

    def _log(
        self,
        sql: str,
        params: Sequence[Any],
        start: float,
        result: Result | None,
        error: BaseException | None,
    ) -> None:
        rows = (
            None
            if result is None
            else (len(result.rows) if result.description is not None else result.rowcount)
        )
        elapsed = time.perf_counter() - start
        log_statement(self.name, sql, params, elapsed, rows=rows, error=error, log_params=self.log_params)

    def _failed(self, exc: BaseException, conn: Any, timeout: float | None) -> NoReturn:
        """Translate a statement's failure (counted as an error) and raise it."""
        counters = self._counters
        if isinstance(exc, asyncio.TimeoutError):
            # The cancelled statement left the connection mid-protocol; _breaks() makes
            # the caller discard it.
            counters[self.ERRORS] += 1
            raise QueryTimeout(f"node {self.name!r}: statement exceeded query_timeout={timeout:g}s") from None
        if isinstance(exc, Exception):
            counters[self.ERRORS] += 1
            if self.driver.is_closed(conn):
                # The server went away (restart, failover, network): the idle connections are
                # most likely dead too, and each would fail one more caller's statement.
                self.expire_connections()
                raise NodeUnavailable(f"node {self.name!r}: connection lost: {exc}") from exc
        raise exc

    async def probe(self, sql: str, timeout: float) -> Any:
        """Run a status query for the health monitor; the first row, or an error.

        Raises :class:`PoolTimeout` when every connection is busy: a saturated pool
        says nothing about the server, so the monitor records no verdict then.
        """
        pool = self._pool_for(write=False)
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
        template = None if shape is None else statement_for(self._statements, self.database, query, shape)
        if shape is not None and template is not None:
            sql, params = template.sql, template.bind(shape.values)
        else:
            query, sql, params = compile_query(query, self.database)
        result = await self.run_sql(sql, params, write=write)
        return shape_result(query, self.database, result)

    def template(self, lookup: Lookup) -> Template | None:
        """This node's compiled statement for a shortcut's lookup (None: use the ordinary path)."""
        return template_for(self._templates, self.database, lookup)

    async def run_template(self, template: Template, values: list[Any], *, write: bool) -> Any:
        """Run a template with these values; what ``execute`` of its query would return."""
        result = await self.run_sql(template.sql, template.bind(values), write=write)
        return shape_result(template.query, self.database, result)

    async def current_position(self) -> Position | None:
        """This server's replication position now (after this session's last commit)."""
        sql = position_sql(self.dialect)
        if sql is None:
            return None
        result = await self.run_sql(sql, write=False)
        return parse_position(self.dialect, result.rows[0][0]) if result.rows else None

    async def iterate(self, query: Any, *, chunk_size: int, write: bool = False) -> AsyncGenerator[Any, None]:
        """Stream a select's rows, ``chunk_size`` at a time, through a server-side cursor."""
        query, sql, params = compile_query(query, self.database)
        # The stream's connection is deliberately NOT pinned with self.connection(): an async
        # generator runs in its consumer's context, so a pinned connection (1) captured the
        # consumer's other queries to this node mid-stream (on MySQL they silently discarded
        # the unread rows), and (2) when the stream was abandoned without ``async with``, was
        # released by the loop's asyncgen finalizer in another Context, where resetting the
        # binding raised ValueError: the connection leaked and the task kept a stale binding.
        # Inside a transaction or connection() block the stream uses the pinned connection.
        # aclosing: the driver's cleanup (COMMIT, CLOSE cursor) must run before the release.
        lease = _Lease(self, write)
        if lease.binding is not None:
            await self.send_begin(lease.binding)  # the driver checks the connection's transaction state
        async with lease as pc, aclosing(self._stream(pc.conn, query, sql, params, chunk_size)) as rows:
            async for row in rows:
                yield row

    async def _stream(
        self, conn: Any, query: Any, sql: str, params: Sequence[Any], chunk_size: int
    ) -> AsyncGenerator[Any, None]:
        self._counters[self.QUERIES] += 1
        try:
            with _exception_wrapper:
                async with aclosing(self.driver.stream(conn, sql, params, chunk_size)) as chunks:
                    async for chunk in chunks:
                        rows = model_rows(query, chunk)
                        for row in rows if rows is not None else query._get_cursor_wrapper(chunk):
                            yield row
        except Exception:
            self._counters[self.ERRORS] += 1
            raise

    # -- observability -------------------------------------------------------------

    def get_stats(self) -> dict[str, int]:
        """Pool measures (size, available, waiting, acquired, ...) plus queries and errors.

        A SQLite node's writer and reader pools are summed, counters included.
        """
        stats = self.pool.get_stats()
        if self._read_pool is not None:
            for key, value in self._read_pool.get_stats().items():
                if key != "min_size":
                    stats[key] += value
        stats[self.QUERIES] = self._counters[self.QUERIES]
        stats[self.ERRORS] = self._counters[self.ERRORS]
        return stats

    async def drain(self, timeout: float) -> None:
        """Wait until no connection of this node is checked out (at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        # Polling a counter the pool keeps anyway costs nothing on the query path.
        while self.busy and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    @property
    def busy(self) -> int:
        """Checked-out connections, for the least-busy strategy."""
        return sum(pool.in_use for pool in self._pools())


#: How callers name a node: by name, by object, or None to let the router choose.
NodeRef = str | Node | None


class _Lease:
    """The connection a statement runs on: the task's pinned one for the node, or one checked
    out of the pool for the statement. On an error that interrupts the driver mid-protocol
    (see ``Node._breaks``) the pinned one is marked broken, a checked-out one is discarded.

    A class rather than ``@asynccontextmanager``: it is on every query's path.
    """

    __slots__ = ("binding", "node", "pc", "pool", "write")

    def __init__(self, node: Node, write: bool) -> None:
        self.node = node
        self.write = write
        self.binding = _context.bound(node)

    async def __aenter__(self) -> PooledConnection:
        if self.binding is not None:
            return self.binding.pc
        self.pool = self.node._pool_for(self.write)
        self.pc = await self.pool.acquire()
        return self.pc

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        binding = self.binding
        if binding is not None:
            if exc is not None:
                binding.broken = binding.broken or self.node._breaks(binding.pc, exc)
            return
        self.pool.release(self.pc, broken=exc is not None and self.node._breaks(self.pc, exc))
