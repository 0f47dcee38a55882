"""One-statement checkouts that share a connection, for drivers that queue statements.

An aiosqlite connection is a thread that runs what it is given in turn. Checking it out for
one statement at a time (acquire, one thread hop, release, wake the next task) leaves the
thread idle between statements. Letting the autocommit statements in flight queue on the same
connection keeps the thread busy, as tasks sharing one raw connection do.

The limits keep their meaning: at most ``max_size`` statements are in flight (queued on the
connection or running), and a statement waits at most ``acquire_timeout`` for its turn
(``PoolTimeout``). A block that needs the connection alone (a transaction, a stream,
``connection()``) still checks it out of the pool: the group of sharers stops taking members as
soon as such a caller waits, so the block gets the connection when the group's last statement
ends; statements that arrive meanwhile form the next group, queued behind it in the pool.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ._pool import ConnectionPool, PooledConnection

__all__ = ["SharedCheckout"]


class SharedCheckout:
    """``acquire``/``release`` for single statements on a one-connection pool, shared between them."""

    __slots__ = (
        "_broken",
        "_forming",
        "_in_flight",
        "_joining",
        "_limit",
        "_loop",
        "_pc",
        "_slot_waiters",
        "_users",
        "pool",
    )

    def __init__(self, pool: ConnectionPool, *, limit: int) -> None:
        if pool.options.max_size != 1:
            raise ValueError(f"pool {pool.name!r}: statements share only a one-connection pool")
        self.pool = pool
        self._limit = limit  # statements in flight at most
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reset()

    @property
    def waiting(self) -> int:
        """Statements waiting for their turn (not counted in the pool's own ``waiting``)."""
        return len(self._slot_waiters) + self._joining

    def _reset(self) -> None:
        self._in_flight = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._pc: PooledConnection | None = None  # the current group's connection
        self._users = 0  # statements of the current group not yet released
        self._broken = False  # a statement of the group broke it: closed when the group ends
        # The next group's checkout, a task of its own: no member's cancellation cancels it
        # for the others. ``_joining`` counts the members waiting for it.
        self._forming: asyncio.Task[PooledConnection] | None = None
        self._joining = 0

    async def acquire(self) -> PooledConnection:
        """The connection, for one statement; ``release`` it once that statement ended."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop (serverless, pytest): the old loop's statements and checkout are
            # gone with it, and the pool replaces their connection.
            self._loop = loop
            self._reset()
        deadline = loop.time() + self.pool.options.acquire_timeout
        if self._in_flight < self._limit and not self._slot_waiters:
            self._in_flight += 1
        else:
            await self._wait_for_slot(loop, deadline)
        try:
            return await self._join(loop, deadline)
        except BaseException:
            self._give_slot()
            raise

    async def _join(self, loop: asyncio.AbstractEventLoop, deadline: float) -> PooledConnection:
        pc, forming, pool = self._pc, self._forming, self.pool
        if pc is None:
            if forming is None and pool.available and not pool.waiting:
                # Nobody waits and the connection is idle: the pool hands it over at once
                # (no task needed), and members arriving meanwhile join this group.
                pc = self._pc = await pool.acquire()
                self._users, self._broken = 1, False
                return pc
        elif forming is None and not self._broken and not pool.waiting and pool.is_current(pc):
            self._users += 1
            return pc
        if forming is None:
            forming = self._forming = loop.create_task(pool.acquire())
            forming.add_done_callback(self._formed)
        self._joining += 1
        try:
            return await asyncio.wait_for(asyncio.shield(forming), max(deadline - loop.time(), 0))
        except BaseException as exc:
            if not forming.done():
                self._joining -= 1
                if self._joining == 0:
                    forming.cancel()  # nobody waits for it any more
            elif not forming.cancelled() and forming.exception() is None:
                self._leave(forming.result())  # _formed counted this member in
            if isinstance(exc, asyncio.TimeoutError):
                raise pool.timed_out("waiting for its one connection") from None
            raise

    def _formed(self, forming: asyncio.Task[PooledConnection]) -> None:
        """The checkout ended: its connection serves the members waiting for it."""
        if forming is not self._forming:
            return  # made under an event loop since replaced
        self._forming = None
        joining, self._joining = self._joining, 0
        if forming.cancelled() or forming.exception() is not None:
            return  # each member gets the error (or its own cancellation)
        pc = forming.result()
        if joining == 0:
            self.pool.release(pc)
            return
        self._pc, self._users, self._broken = pc, joining, False

    def release(self, pc: PooledConnection, *, broken: bool = False) -> None:
        """One statement on ``pc`` ended; the last of its group gives the connection back."""
        if pc is not self._pc:
            self.pool.release(pc, broken=broken)  # a statement of an event loop since replaced
            return
        self._give_slot()
        self._leave(pc, broken=broken)

    def _leave(self, pc: PooledConnection, *, broken: bool = False) -> None:
        self._broken = self._broken or broken
        self._users -= 1
        if self._users == 0:
            self._pc = None
            self.pool.release(pc, broken=self._broken)

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        fut: asyncio.Future[None] = loop.create_future()
        self._slot_waiters.append(fut)
        try:
            await asyncio.wait_for(fut, max(deadline - loop.time(), 0))
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                self._give_slot()  # handed over as this caller gave up: pass it on
            if isinstance(exc, asyncio.TimeoutError):
                raise self.pool.timed_out(f"max_size={self._limit} statements in flight") from None
            raise
        finally:
            if fut in self._slot_waiters:
                self._slot_waiters.remove(fut)

    def _give_slot(self) -> None:
        """A statement's slot is free: hand it to the first live waiter, or count it free."""
        while self._slot_waiters:
            fut = self._slot_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._in_flight -= 1
