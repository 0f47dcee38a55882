"""One node's connection pool, the same for every driver.

Why our own pool rather than each driver's: aiopg's pool has no acquire timeout,
aiosqlite has no pool, and none of them notices that the event loop changed
(serverless handlers and pytest run a new loop per call). One implementation gives
every backend the same limits, pre-ping, lifetime, stats and loop handling.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter, deque
from typing import Any

from ._bounded import bounded
from ._drivers import Driver
from ._errors import EventLoopError, PoolClosed, PoolTimeout
from ._options import PoolOptions
from ._url import DatabaseURL
from ._verify import connect_error

__all__ = ["ConnectionPool", "PooledConnection"]

logger = logging.getLogger("aiopeewee_dist.pool")

# Time allowed for the rollback that cleans a connection returned mid-transaction.
_RESET_TIMEOUT = 5.0


class PooledConnection:
    """A driver connection with the bookkeeping the pool needs."""

    __slots__ = ("conn", "epoch", "expires_at", "idle_since")

    def __init__(self, conn: Any, epoch: int, expires_at: float) -> None:
        self.conn = conn
        self.epoch = epoch
        self.expires_at = expires_at
        self.idle_since = time.monotonic()


class ConnectionPool:
    """Connections to one node: bounded, fair (first come, first served), loop-aware."""

    # Counter keys reported by get_stats() besides the live measures.
    CONNECTIONS_OPENED = "connections_opened"
    CONNECTIONS_CLOSED = "connections_closed"
    CONNECTIONS_FAILED = "connections_failed"
    RETURNS_BAD = "returns_bad"
    PINGS_FAILED = "pings_failed"
    TIMEOUTS = "timeouts"
    ACQUIRES = "acquires"
    COUNTERS = (
        ACQUIRES,
        CONNECTIONS_OPENED,
        CONNECTIONS_CLOSED,
        CONNECTIONS_FAILED,
        RETURNS_BAD,
        PINGS_FAILED,
        TIMEOUTS,
    )

    def __init__(
        self,
        *,
        name: str,
        driver: Driver,
        url: DatabaseURL,
        options: PoolOptions,
        read_only: bool = False,
        keep_forever: bool = False,
    ) -> None:
        """``keep_forever``: connections never reach ``max_lifetime`` (nor ``max_idle``, with
        ``min_size`` equal to ``max_size``)."""
        self.name = name
        self.keep_forever = keep_forever
        self.driver = driver
        self.url = url
        self.options = options
        self.read_only = read_only
        self._idle: deque[PooledConnection] = deque()
        self._waiters: deque[asyncio.Future[PooledConnection | None]] = deque()
        self._size = 0  # open plus opening connections of the current epoch
        self._in_use = 0
        self._epoch = 0  # bumped on loop change and on expire_connections()
        self._loop_epoch = 0  # the epoch the current event loop started with
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Connects still running for a caller that gave up (see _open_one): close() waits
        # for them so that their connections are closed before the loop can end.
        self._connecting: set[asyncio.Future[Any]] = set()
        self._counters: Counter[str] = Counter()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self._size} in_use={self._in_use}"
        return f"<ConnectionPool {self.name!r} {self.url.obscured()} {state}>"

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Open ``min_size`` connections now, rather than on first use."""
        self._check_loop()
        self._closed = False
        missing = self.options.min_size - self._size
        if missing > 0:
            conns = await asyncio.gather(*(self._open_one() for _ in range(missing)))
            for pc in conns:
                self._in_use -= 1
                self._put_idle(pc)

    async def close(self) -> None:
        """Close idle connections and refuse new acquires; in-use ones close on return."""
        self._closed = True
        waiters, self._waiters = self._waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(PoolClosed(f"pool of node {self.name!r} was closed"))
        idle, self._idle = self._idle, deque()
        self._size -= len(idle)
        await asyncio.gather(*(self._close_conn(pc) for pc in idle))
        if self._connecting:
            # Their done-callbacks run before gather resumes us and spawn the closes.
            await asyncio.gather(*self._connecting, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def expire_connections(self) -> None:
        """Make every current connection be replaced: idle ones now, busy ones on return."""
        self._epoch += 1
        idle, self._idle = self._idle, deque()
        self._size -= len(idle)
        for pc in idle:
            self._spawn(self._close_conn(pc))
        # Busy connections keep counting in _size until they come back and are closed.
        self._wake_one(None)

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        old = self._loop
        self._loop = loop
        if old is None:
            return
        if old.is_running():
            self._loop = old
            raise EventLoopError(
                f"node {self.name!r} is in use by an event loop running in another thread; "
                "create one manager per event loop"
            )
        # The old loop is finished: its waiters are gone and its in-use connections will
        # never come back. Loop-bound connections cannot be used from the new loop.
        logger.debug("node %s: event loop changed, rebuilding the pool", self.name)
        self._waiters.clear()
        self._tasks.clear()
        self._connecting.clear()
        self._epoch += 1
        self._loop_epoch = self._epoch
        if self.driver.loop_bound:
            idle, self._idle = self._idle, deque()
            for pc in idle:
                self._terminate(pc)
            self._size = 0
        else:
            for pc in self._idle:
                pc.epoch = self._epoch
            self._size = len(self._idle)
        self._in_use = 0

    # -- acquire / release ------------------------------------------------------------

    async def acquire(self) -> PooledConnection:
        """A connection for the caller's exclusive use; ``PoolTimeout`` after ``acquire_timeout``."""
        self._check_loop()
        if self._closed:
            raise PoolClosed(f"pool of node {self.name!r} is closed")
        self._counters[self.ACQUIRES] += 1
        deadline = time.monotonic() + self.options.acquire_timeout
        ping_after = self.options.ping_after_idle
        while True:
            # Synchronous on the common path (an idle connection, no ping due): no extra
            # coroutine per statement.
            pc = self._take_idle()
            if pc is not None:
                if ping_after is None or time.monotonic() - pc.idle_since < ping_after:
                    return pc
                if await self._ping(pc):
                    return pc
                continue
            if self._size < self.options.max_size:
                return await self._open_one()
            received = await self._wait(deadline)
            if received is not None:
                return received

    async def acquire_within(self, timeout: float) -> PooledConnection:
        """:meth:`acquire` bounded by ``timeout`` (``asyncio.TimeoutError``). Not ``wait_for``: on
        Python < 3.12 it drops a connection that arrives as the caller is cancelled, leaving it
        checked out until garbage collection; here such a connection is given back."""
        acquiring = asyncio.ensure_future(self.acquire())
        try:
            done, _ = await asyncio.wait({acquiring}, timeout=timeout)
        except BaseException:
            self._abandon(acquiring)
            raise
        if not done:
            self._abandon(acquiring)
            raise asyncio.TimeoutError
        return acquiring.result()

    def _abandon(self, acquiring: asyncio.Future[PooledConnection]) -> None:
        def give_back(task: asyncio.Future[PooledConnection]) -> None:
            if not task.cancelled() and task.exception() is None:
                self.release(task.result())

        acquiring.cancel()
        acquiring.add_done_callback(give_back)

    def _take_idle(self) -> PooledConnection | None:
        """The most recently used live idle connection, counted as in use (not yet pinged)."""
        now = time.monotonic()
        while self._idle:
            pc = self._idle.pop()  # most recently used first: the rest can age out
            if pc.epoch != self._epoch or now >= pc.expires_at or self.driver.is_closed(pc.conn):
                self._size -= 1
                self._spawn(self._close_conn(pc))
                continue
            self._in_use += 1
            return pc
        return None

    async def _ping(self, pc: PooledConnection) -> bool:
        try:
            await bounded(self.driver.ping(pc.conn), self.options.connect_timeout)
            return True
        except (Exception, asyncio.CancelledError) as exc:
            self._in_use -= 1
            self._size -= 1
            self._counters[self.PINGS_FAILED] += 1
            self._terminate(pc)
            self._wake_one(None)
            if isinstance(exc, asyncio.CancelledError):
                raise
            logger.warning("node %s: discarded a connection that failed its ping: %s", self.name, exc)
            return False

    async def _open_one(self) -> PooledConnection:
        self._size += 1
        self._in_use += 1
        epoch = self._epoch
        connecting = asyncio.ensure_future(
            asyncio.wait_for(
                self.driver.connect(self.url, timeout=self.options.connect_timeout, read_only=self.read_only),
                self.options.connect_timeout,
            )
        )
        try:
            # Shielded: a caller cancelled mid-connect must not leave a half-open
            # connection to the garbage collector; it is closed when it arrives.
            conn = await asyncio.shield(connecting)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                # Also when the connect already finished: the callback then runs soon.
                self._connecting.add(connecting)
                connecting.add_done_callback(self._discard_late_connection)
            # Undo the counts unless an event-loop change reset them meanwhile (not merely
            # expire_connections(), which bumps the epoch too but keeps the counts).
            if epoch >= self._loop_epoch:
                self._size -= 1
                self._in_use -= 1
                self._wake_one(None)
            self._counters[self.CONNECTIONS_FAILED] += 1
            if isinstance(exc, Exception):
                reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc).strip()
                where = f"node {self.name!r} ({self.url.obscured()})"
                raise connect_error(where, reason, exc) from exc
            raise
        self._counters[self.CONNECTIONS_OPENED] += 1
        # Up to 5% jitter so connections opened together do not all expire together.
        lifetime = math.inf if self.keep_forever else self.options.max_lifetime * (1 - random.random() * 0.05)
        return PooledConnection(conn, epoch, time.monotonic() + lifetime)

    def _discard_late_connection(self, connecting: asyncio.Future[Any]) -> None:
        self._connecting.discard(connecting)
        if not connecting.cancelled() and connecting.exception() is None:
            self._spawn(self._close_conn(PooledConnection(connecting.result(), self._epoch, 0.0)))

    async def _wait(self, deadline: float) -> PooledConnection | None:
        assert self._loop is not None
        fut: asyncio.Future[PooledConnection | None] = self._loop.create_future()
        self._waiters.append(fut)
        try:
            return await asyncio.wait_for(fut, max(deadline - time.monotonic(), 0))
        except BaseException as exc:
            # Handed a connection (or room to open one) as this caller gave up, cancelled or, on
            # Python 3.12+, timed out in the same step: the next waiter gets it.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                handed = fut.result()
                if handed is not None:
                    self.release(handed)
                else:
                    self._wake_one(None)
            if isinstance(exc, asyncio.TimeoutError):
                in_use, waiting = self._in_use, len(self._waiters)
                raise self.timed_out(f"max_size={self.options.max_size}, {in_use=}, {waiting=}") from None
            raise
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def timed_out(self, detail: str) -> PoolTimeout:
        """The error for a caller that waited ``acquire_timeout`` in vain (counted in the stats)."""
        self._counters[self.TIMEOUTS] += 1
        limit = f"{self.options.acquire_timeout:g}s"
        return PoolTimeout(f"node {self.name!r}: no connection available within {limit} ({detail})")

    def _wake_one(self, pc: PooledConnection | None) -> bool:
        """Hand ``pc`` (or, with None, room to open a connection) to the first live waiter."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                self._in_use += pc is not None  # by the waiter it goes to, from now on
                fut.set_result(pc)
                return True
        return False

    def release(self, pc: PooledConnection, *, broken: bool = False) -> None:
        """Give a connection back. Never blocks and never raises, so cancellation cannot leak it.
        One returned inside a transaction is rolled back (in the background) before anyone else
        gets it; a broken or expired one is closed."""
        if pc.epoch < self._loop_epoch:
            # Checked out under an earlier event loop: the counters were reset since.
            self._terminate(pc)
            return
        self._in_use -= 1
        if pc.epoch != self._epoch:
            self._size -= 1
            self._spawn(self._close_conn(pc))
            self._wake_one(None)
            return
        if broken or self._closed or self.driver.is_closed(pc.conn) or time.monotonic() >= pc.expires_at:
            self._size -= 1
            self._spawn(self._close_conn(pc))
            self._wake_one(None)
            return
        if self.driver.in_transaction(pc.conn):
            self._counters[self.RETURNS_BAD] += 1
            self._in_use += 1
            self._spawn(self._reset(pc))
            return
        pc.idle_since = time.monotonic()
        if not self._wake_one(pc):
            self._put_idle(pc)

    def _put_idle(self, pc: PooledConnection) -> None:
        self._idle.append(pc)
        self._shrink()

    def _shrink(self) -> None:
        # Close connections idle for longer than max_idle, oldest first, down to min_size.
        now, idle = time.monotonic(), self._idle
        while (
            idle and self._size > self.options.min_size and now - idle[0].idle_since >= self.options.max_idle
        ):
            pc = idle.popleft()
            self._size -= 1
            self._spawn(self._close_conn(pc))

    async def _reset(self, pc: PooledConnection) -> None:
        logger.warning("node %s: connection returned inside a transaction; rolling back", self.name)
        try:
            await bounded(self.driver.execute(pc.conn, "ROLLBACK", ()), _RESET_TIMEOUT)
        except Exception as exc:
            logger.warning("node %s: rollback on return failed, closing the connection: %s", self.name, exc)
            self.release(pc, broken=True)
        else:
            self.release(pc)

    async def _close_conn(self, pc: PooledConnection) -> None:
        self._counters[self.CONNECTIONS_CLOSED] += 1
        try:
            await asyncio.wait_for(self.driver.close(pc.conn), _RESET_TIMEOUT)
        except (Exception, asyncio.CancelledError) as exc:
            # The connection is dropped either way; a server that went away makes this common.
            logger.debug("node %s: closing a connection failed, terminating it: %r", self.name, exc)
            self._terminate(pc)

    def _terminate(self, pc: PooledConnection) -> None:
        try:
            self.driver.terminate(pc.conn)
        except Exception as exc:  # the connection is being dropped either way
            logger.debug("node %s: terminate failed: %s", self.name, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- observability -------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def is_open(self) -> bool:
        """Opened (``open()`` or a first ``acquire()``) and not closed since."""
        return self._loop is not None and not self._closed

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def available(self) -> int:
        return len(self._idle)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def is_current(self, pc: PooledConnection) -> bool:
        """Whether ``pc`` is still one to use: not expired by ``expire_connections`` or a new loop."""
        return pc.epoch == self._epoch

    def get_stats(self) -> dict[str, int]:
        """Live measures and counters since the pool was made, as a plain dict."""
        stats = {
            "size": self._size,
            "available": self.available,
            "acquired": self._in_use,
            "waiting": self.waiting,
            "min_size": self.options.min_size,
            "max_size": self.options.max_size,
        }
        # Every counter is present from the start, so readers need no .get(key, 0).
        stats.update((key, self._counters[key]) for key in self.COUNTERS)
        return stats

    def pop_stats(self) -> dict[str, int]:
        """Like :meth:`get_stats`, and reset the counters."""
        stats = self.get_stats()
        self._counters.clear()
        return stats
