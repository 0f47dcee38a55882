"""``Manager.transaction()``: a transaction block, or with ``retries`` a function re-run on conflicts.

A mixin of :class:`~aiopeewee_dist._manager.Manager` (kept apart so the manager module stays small);
it builds :class:`Transaction` objects, wrapped in :class:`RetryingTransaction` when asked to retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

from ._retry import RetryingTransaction, RetryPolicy
from ._transaction import Transaction

if TYPE_CHECKING:
    from ._consistency import Consistency
    from ._dispatch import Dispatcher
    from ._node import Node, NodeRef
    from ._router import Router

__all__ = ["TRANSACTION_RETRIES", "TransactionMethods"]

#: ``stats()["router"]`` key: transactions re-run by ``transaction(retries=N)``.
TRANSACTION_RETRIES = "transaction_retries"


class TransactionMethods:
    """``transaction()`` for a manager with a router, a dispatcher and a consistency policy."""

    _router: Router
    _dispatch: Dispatcher
    _consistency: Consistency

    @overload
    def transaction(
        self, *, node: NodeRef = None, isolation: str | None = None, read_only: bool = False
    ) -> Transaction: ...

    @overload
    def transaction(
        self,
        *,
        node: NodeRef = None,
        isolation: str | None = None,
        read_only: bool = False,
        retries: int,
        retry_backoff: float = 0.05,
        retry_max_backoff: float = 2.0,
    ) -> RetryingTransaction: ...

    def transaction(
        self,
        *,
        node: NodeRef = None,
        isolation: str | None = None,
        read_only: bool = False,
        retries: int | None = None,
        retry_backoff: float = 0.05,
        retry_max_backoff: float = 2.0,
    ) -> Transaction | RetryingTransaction:
        """A transaction block (or decorator) pinned to one connection; nested blocks are savepoints.

        It runs on the primary unless ``node`` says otherwise; a ``read_only=True``
        transaction may run on a replica. Inside ``read_only()`` it is read-only.

        With ``retries=N`` it is a decorator (or ``.run(func, *args)``) that re-runs the whole
        function in a new transaction, after a jittered backoff of up to ``retry_backoff * 2**k``
        seconds (at most ``retry_max_backoff``), on a serialization failure, deadlock or Galera
        certification conflict, or when the node was lost before COMMIT was sent. A lost COMMIT
        raises :class:`CommitOutcomeUnknown` and is never re-run. See :mod:`._retry`.
        """
        router = self._router

        def resolve(read_only: bool) -> Node:
            return router.route(write=not read_only, node=node)

        def make() -> Transaction:
            return Transaction(
                resolve,
                isolation=isolation,
                read_only=read_only,
                # Without read-your-writes a commit records nothing: no callback to await.
                on_commit=self._dispatch.after_commit if self._consistency.mode is not None else None,
                read_only_context=lambda: router.in_read_only,
            )

        if retries is None:
            return make()
        policy = RetryPolicy(retries=retries, backoff=retry_backoff, max_backoff=retry_max_backoff)
        return RetryingTransaction(make, policy, on_retry=self._count_retry)

    def _count_retry(self, attempt: int, error: BaseException) -> None:
        self._router.counters[TRANSACTION_RETRIES] += 1
