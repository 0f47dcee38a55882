"""Shard transactions: one shard's own transaction, and the task's current shard.

The current shard is kept in a ContextVar keyed by sharded manager and undone with
``reset(token)``. It belongs to the task that opened it: tasks spawned inside inherit the
ContextVar but are neither in the transaction nor restricted by it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import CrossShardError, TransactionError

if TYPE_CHECKING:
    from .._manager import Manager
    from .._transaction import Transaction
    from ._manager import ShardedManager

__all__ = ["ShardTransaction", "current_shard"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True)
class _Scope:
    shard: str
    task: asyncio.Task[Any] | None


_NO_SCOPES: dict[Any, _Scope] = {}  # never mutated: every change copies it
# {sharded manager: its open transaction's shard} for this context; undone by reset(token).
_scopes: ContextVar[dict[Any, _Scope]] = ContextVar("aiopeewee_dist.shard_scope", default=_NO_SCOPES)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: nothing can be inside a transaction
        return None


def current_shard(owner: Any) -> str | None:
    """The shard of ``owner``'s transaction open in this task, if any."""
    scope = _scopes.get().get(owner)
    if scope is not None and scope.task is _current_task():
        return scope.shard
    return None


class ShardTransaction:
    """A transaction on one shard (its Manager's :class:`Transaction`), as a block or decorator.

    While it is open, the task's operations on other shards raise :class:`CrossShardError`.
    Tasks spawned inside do not join it (they are not restricted either), as with
    ``Manager.transaction()``.
    """

    def __init__(
        self, sharded: ShardedManager, shard: str, *, isolation: str | None = None, read_only: bool = False
    ) -> None:
        self.sharded = sharded
        self.shard = shard
        self.isolation = isolation
        self.read_only = read_only
        self._inner: Transaction | None = None
        self._token: Token[dict[Any, _Scope]] | None = None

    def __repr__(self) -> str:
        return f"<ShardTransaction shard={self.shard!r}>"

    @property
    def manager(self) -> Manager:
        """The shard's Manager."""
        return self.sharded.shard(self.shard)

    async def __aenter__(self) -> ShardTransaction:
        if self._inner is not None:
            raise TransactionError("a ShardTransaction can be entered once at a time; create a new one")
        current = current_shard(self.sharded)
        if current is not None and current != self.shard:
            raise CrossShardError(
                f"cannot open a transaction on shard {self.shard!r} inside one on shard {current!r}"
            )
        inner = self.manager.transaction(isolation=self.isolation, read_only=self.read_only)
        token = _scopes.set({**_scopes.get(), self.sharded: _Scope(self.shard, _current_task())})
        try:
            await inner.__aenter__()
        except BaseException:
            _scopes.reset(token)
            raise
        self._inner, self._token = inner, token
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        inner, token = self._inner, self._token
        if inner is None or token is None:
            raise TransactionError("ShardTransaction exited without being entered")
        self._inner = self._token = None
        try:
            await inner.__aexit__(exc_type, exc, tb)
        finally:
            _scopes.reset(token)

    def __call__(self, func: F) -> F:
        """Run each call of ``func`` in its own transaction on this shard."""

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            async with ShardTransaction(
                self.sharded, self.shard, isolation=self.isolation, read_only=self.read_only
            ):
                return await func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
