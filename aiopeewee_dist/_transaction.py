"""Transactions pinned to one connection of one node; nested blocks are savepoints."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import _context
from ._errors import ConfigurationError, NodeUnavailable, TransactionError

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["ISOLATION_LEVELS", "Transaction"]

ISOLATION_LEVELS = ("READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")
_savepoint_ids = itertools.count(1)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def normalize_isolation(isolation: str | None) -> str | None:
    """The SQL spelling of an isolation level; anything else is refused (it is spliced into SQL)."""
    if isolation is None:
        return None
    level = " ".join(str(isolation).replace("_", " ").upper().split())
    if level not in ISOLATION_LEVELS:
        raise ConfigurationError(f"isolation must be one of {', '.join(ISOLATION_LEVELS)}, got {isolation!r}")
    return level


class Transaction:
    """``async with``-able and a decorator: one transaction (or savepoint) on one node.

    The outermost block takes a connection from the node's pool and pins it to the
    current task; every query the task sends to that node inside the block runs on
    it. An inner block on the same node is a savepoint. Leaving with an exception,
    including cancellation, rolls back; a connection whose statement was interrupted
    is closed rather than returned.

    Tasks spawned inside the block do not join it (see :mod:`aiopeewee_dist._context`).
    The connection is pinned by ``Node.pin`` and the transaction opened and ended by
    ``Node.begin`` / ``Node.end``; this class only keeps the block's nesting.
    """

    def __init__(
        self,
        node: Node | Callable[[bool], Node],
        *,
        isolation: str | None = None,
        read_only: bool = False,
        on_commit: Callable[[Node], Awaitable[None]] | None = None,
        read_only_context: Callable[[], bool] | None = None,
    ) -> None:
        """``node``: the node, or a function choosing it given whether the block is read-only.

        ``read_only_context``: asked on entry (not at creation, so a decorator applied at
        import time behaves like an ``async with`` block) whether to be read-only anyway.
        """
        self._node_or_resolver = node
        self._on_commit = on_commit
        self._read_only_context = read_only_context
        self.isolation = normalize_isolation(isolation)
        self.read_only = read_only
        self.node: Node | None = None
        self._binding: _context.Binding | None = None
        self._pin: _context.Pin | None = None
        self._tx_token: Token[Any] | None = None
        self._savepoint: str | None = None
        #: Whether this block's COMMIT went out: a connection lost after that leaves the outcome
        #: unknown (the retrying wrapper never re-runs such a block).
        self.commit_sent = False

    def _resolve(self, read_only: bool) -> Node:
        target = self._node_or_resolver
        # A Node is not callable; a resolver is.
        return target(read_only) if callable(target) else target

    async def __aenter__(self) -> Transaction:
        if self._binding is not None:
            raise TransactionError("a Transaction object can be entered once at a time; create a new one")
        if self._read_only_context is not None and self._read_only_context():
            self.read_only = True
        node = self.node = self._resolve(self.read_only)
        binding = _context.bound(node)
        if binding is not None and binding.depth > 0:
            if self.isolation:
                raise TransactionError("isolation can only be set on the outermost transaction")
            self._savepoint = f"aiopd_sp_{next(_savepoint_ids)}"
            await node.run_sql(f"SAVEPOINT {self._savepoint}", write=False)
        else:
            pin = node.pin(write=not self.read_only, read_only=self.read_only)
            binding = await pin.__aenter__()
            try:
                await node.begin(binding, isolation=self.isolation, read_only=self.read_only, defer=pin.owned)
            except BaseException:
                pin.release()
                raise
            self._pin = pin
            binding.read_only = binding.read_only or self.read_only
        binding.depth += 1
        self._binding = binding
        self._tx_token = _context.enter_transaction(binding)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        binding = self._binding
        assert binding is not None and self.node is not None and self._tx_token is not None
        _context.leave_transaction(self._tx_token)
        binding.depth -= 1
        node = self.node
        try:
            if binding.broken or node.driver.is_closed(binding.conn):
                binding.broken = True
                if exc_type is None:
                    # The block ended normally, but COMMIT cannot be sent: the server rolls
                    # the transaction back. Returning quietly would report lost writes as
                    # committed (an interrupted statement the block caught, or a server
                    # that went away after the last statement).
                    raise NodeUnavailable(
                        f"node {node.name!r}: the transaction's connection broke before COMMIT"
                        " (a statement in it was interrupted or the server went away);"
                        " nothing was committed"
                    )
            elif self._savepoint is not None:
                if exc_type is not None:
                    await node.run_sql(f"ROLLBACK TO SAVEPOINT {self._savepoint}", write=False)
                await node.run_sql(f"RELEASE SAVEPOINT {self._savepoint}", write=False)
            elif exc_type is not None:
                await node.end(binding, commit=False)
            else:
                self.commit_sent = True
                await node.end(binding, commit=True)
                if self._on_commit is not None and not self.read_only:
                    # Still pinned: read-your-writes can read the position on this session.
                    await self._on_commit(node)
        finally:
            self._binding = None
            pin, self._pin = self._pin, None
            if pin is not None:
                pin.release()

    def __call__(self, func: F) -> F:
        """Run each call of ``func`` in its own transaction with these settings."""

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            block = Transaction(
                self._node_or_resolver,
                isolation=self.isolation,
                read_only=self.read_only,
                on_commit=self._on_commit,
                read_only_context=self._read_only_context,
            )
            async with block:
                return await func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
