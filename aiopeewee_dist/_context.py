"""Per-task connection state, keyed by node, and the one way a connection gets pinned.

peewee-async keeps one "current connection" for every database in a single
ContextVar, so a replica read inside a primary transaction runs on the primary's
connection, and a write inside a replica context runs on the replica. Here the
state is a mapping ``{node: Binding}`` copied on every change, so each node only
ever sees its own connection, and every change is undone with ``reset(token)``.

A binding belongs to the task that made it. Tasks spawned inside a transaction
inherit the ContextVar (asyncio copies the context) but not the binding: they run
outside the transaction, on connections of their own.

:class:`Pin` (made by ``Node.pin``) is the only code that checks a connection out for a
block and pins it: ``Node.connection()``, transactions and streams all use it.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._node import Node
    from ._pool import ConnectionPool, PooledConnection

__all__ = ["Binding", "Pin", "bind", "bound", "current_transaction", "unbind"]


class Binding:
    """A connection pinned to the current task for one node."""

    __slots__ = ("begin", "broken", "depth", "node", "pc", "pool", "read_only", "task")

    def __init__(self, node: Node, pool: ConnectionPool, pc: PooledConnection, *, read_only: bool) -> None:
        self.node = node
        self.pool = pool
        self.pc = pc
        self.task = asyncio.current_task()
        self.depth = 0  # open transaction blocks (1 = transaction, more = savepoints)
        self.read_only = read_only
        self.broken = False
        # A transaction's BEGIN not sent yet: it goes out with the connection's next
        # statement, in the same message (drivers with ``Driver.merges_begin``).
        self.begin: str | None = None

    @property
    def conn(self) -> Any:
        return self.pc.conn


class Pin:
    """A connection of one node held for a block: ``async with node.pin(...) as binding``.

    If the task already pinned a connection for the node, the block uses that one, which
    stays pinned afterwards (``owned`` is False). Otherwise the block checks one out of the
    node's pool and, with ``bind``, pins it to the task, so that every query the task sends
    to the node inside runs on it; without ``bind`` (a stream) only the holder uses it.

    Leaving with an exception that interrupted the driver mid-protocol (``Node.breaks``)
    discards a connection the block checked out. A class rather than
    ``@asynccontextmanager``: a transaction enters and leaves it from its own
    ``__aenter__``/``__aexit__``.
    """

    __slots__ = ("_bind", "_read_only", "_token", "_write", "binding", "node", "owned")

    def __init__(self, node: Node, *, write: bool, bind: bool, read_only: bool | None) -> None:
        self.node = node
        self._write = write
        self._bind = bind
        self._read_only = read_only
        self._token: Token[dict[Node, Binding]] | None = None
        self.binding = bound(node)
        self.owned = False

    async def __aenter__(self) -> Binding:
        binding = self.binding
        if binding is not None:
            return binding
        node = self.node
        pool = node.pool_for(self._write)
        pc = await pool.acquire()
        # A connection of a SQLite node's reader pool is read-only whatever the caller says.
        read_only = self._read_only if self._read_only is not None else pool is not node.pool
        binding = self.binding = Binding(node, pool, pc, read_only=read_only)
        self.owned = True
        if self._bind:
            self._token = bind(binding)
        return binding

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.release(exc)

    def release(self, exc: BaseException | None = None) -> None:
        """Unpin and return a connection the block checked out (broken ones are closed)."""
        binding = self.binding
        if not self.owned or binding is None:
            return
        self.owned = False
        if exc is not None:
            binding.broken = binding.broken or self.node.breaks(binding.pc, exc)
        if self._token is not None:
            unbind(self._token)
            self._token = None
        binding.pool.release(binding.pc, broken=binding.broken)


_EMPTY: dict[Node, Binding] = {}
_bindings: ContextVar[dict[Node, Binding]] = ContextVar("aiopeewee_dist.bindings", default=_EMPTY)
# The innermost open transaction of this task, for routing every query inside it.
_transaction: ContextVar[Binding | None] = ContextVar("aiopeewee_dist.transaction", default=None)


def bound(node: Node) -> Binding | None:
    """The connection the current task has pinned for ``node``, if any."""
    binding = _bindings.get().get(node)
    if binding is not None and binding.task is asyncio.current_task():
        return binding
    return None


def current_transaction() -> Binding | None:
    """The innermost transaction opened by the current task, if any."""
    binding = _transaction.get()
    if binding is not None and binding.task is asyncio.current_task() and binding.depth > 0:
        return binding
    return None


def bind(binding: Binding) -> Token[dict[Node, Binding]]:
    return _bindings.set({**_bindings.get(), binding.node: binding})


def unbind(token: Token[dict[Node, Binding]]) -> None:
    _bindings.reset(token)


def enter_transaction(binding: Binding) -> Token[Binding | None]:
    return _transaction.set(binding)


def leave_transaction(token: Token[Binding | None]) -> None:
    _transaction.reset(token)
