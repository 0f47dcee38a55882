"""Transactions re-run on conflicts: ``manager.transaction(retries=N)``.

A thin wrapper around :class:`~aiopeewee_dist._transaction.Transaction`: each attempt is a fresh
transaction block running the whole function again. An attempt is re-run, after a jittered
exponential backoff, when the server says it rolled the transaction back because of a conflict:

- serialization failure (SQLSTATE ``40001``: PostgreSQL SERIALIZABLE/REPEATABLE READ, and the
  "restart transaction" errors of CockroachDB and YugabyteDB, which speak the same protocol);
- deadlock (``40P01``; MySQL/MariaDB error 1213, which is also how a Galera certification
  conflict or brute-force abort reaches the client);

or when the node became unreachable (:class:`NodeUnavailable`) before ``COMMIT`` was sent, so
nothing of the block can have committed (during a failover the next attempt is routed to the
new primary). A ``COMMIT`` whose answer never came has an unknown outcome: it is never re-run
and raises :class:`CommitOutcomeUnknown`, with the cause chained, for the caller to decide.

A ``with`` statement's body cannot be run twice, so a retrying transaction is a decorator, or
``await manager.transaction(retries=3).run(func, *args)``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from ._errors import CommitOutcomeUnknown, ConfigurationError, NodeUnavailable, QueryTimeout, TransactionError
from ._server_errors import is_conflict
from ._transaction import Transaction

__all__ = ["RetryPolicy", "RetryingTransaction"]

logger = logging.getLogger("aiopeewee_dist.transaction")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class RetryPolicy:
    """How many times to re-run, and the backoff between attempts (seconds, full jitter)."""

    __slots__ = ("backoff", "max_backoff", "retries")

    def __init__(self, *, retries: int, backoff: float = 0.05, max_backoff: float = 2.0) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 1000:
            raise ConfigurationError(f"retries must be an integer from 0 to 1000, got {retries!r}")
        for option, value in (("retry_backoff", backoff), ("retry_max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.001 <= value <= 60.0:
                raise ConfigurationError(
                    f"{option} must be a number of seconds from 0.001 to 60, got {value!r}"
                )
        if max_backoff < backoff:
            raise ConfigurationError(
                f"retry_max_backoff ({max_backoff!r}) must not be below retry_backoff ({backoff!r})"
            )
        self.retries = retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_backoff, backoff * 2**attempt)]."""
        return random.uniform(0.0, min(self.max_backoff, self.backoff * 2 ** min(attempt, 30)))


class _Retry(Exception):
    """An attempt failed in a way that may be re-run; ``cause`` is what it raised."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class RetryingTransaction:
    """``manager.transaction(retries=N)``: a decorator (or :meth:`run`) that re-runs a function's
    transaction on conflicts; see the module documentation for what is re-run and what is not.

    ``on_retry(attempt, error)`` is called before each re-run (the manager counts them).
    """

    def __init__(
        self,
        make: Callable[[], Transaction],
        policy: RetryPolicy,
        *,
        on_retry: Callable[[int, BaseException], None] | None = None,
    ) -> None:
        self._make = make
        self.policy = policy
        self._on_retry = on_retry

    async def run(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await func(*args, **kwargs)`` in a transaction, re-run up to ``retries`` times."""
        attempt = 0
        while True:
            try:
                return await self._attempt(func, args, kwargs)
            except _Retry as retry:
                failure = retry.cause
            if attempt >= self.policy.retries:
                # Raised outside the except block: the error keeps its own cause and context.
                raise failure
            attempt += 1
            if self._on_retry is not None:
                self._on_retry(attempt, failure)
            delay = self.policy.delay(attempt - 1)
            logger.info(
                "transaction attempt %d failed (%s: %s); retrying in %.3f s",
                attempt, type(failure).__name__, failure, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)

    async def _attempt(
        self, func: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        block = self._make()
        body_done = False
        try:
            async with block:
                result = await func(*args, **kwargs)
                body_done = True
        except Exception as exc:
            self._classify(exc, block, in_commit=body_done)
        return result

    @staticmethod
    def _classify(exc: Exception, block: Transaction, *, in_commit: bool) -> NoReturn:
        if is_conflict(exc):
            # Raised by a statement or by COMMIT itself: either way the server rolled back.
            raise _Retry(exc) from exc
        if in_commit and block.commit_sent and isinstance(exc, (NodeUnavailable, QueryTimeout)):
            raise CommitOutcomeUnknown(
                f"the connection to node {block.node.name if block.node else '?'!r} was lost while"
                f" COMMIT was in flight ({type(exc).__name__}: {exc}); the transaction may or may not"
                " have committed, so it was not re-run"
            ) from exc
        if isinstance(exc, NodeUnavailable):
            # Before COMMIT was sent (BEGIN, a statement, or a connection found broken at the
            # end): the server rolls the transaction back, nothing of it committed.
            raise _Retry(exc) from exc
        raise exc

    def __call__(self, func: F) -> F:
        """Run each call of ``func`` in its own transaction, re-run on conflicts."""

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await self.run(func, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    async def __aenter__(self) -> NoReturn:
        raise TransactionError(
            "a transaction with retries re-runs a function, and the body of an `async with` block"
            " cannot be run twice: decorate a function with @manager.transaction(retries=N), or call"
            " await manager.transaction(retries=N).run(func, *args)"
        )

    async def __aexit__(self, *exc_info: object) -> None:  # pragma: no cover - __aenter__ always raises
        return None
