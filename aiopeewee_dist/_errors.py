"""The exception hierarchy of aiopeewee_dist.

::

    AioPeeweeDistError
     ├── ConfigurationError        (also ValueError)   bad URL, scheme, option, missing driver
     ├── PoolError                 (also peewee.OperationalError)  the pool gave no connection
     │    ├── PoolTimeout          no connection free within ``acquire_timeout``
     │    └── PoolClosed           the node's pool is closed
     ├── NodeUnavailable           (also peewee.OperationalError)  connect failed, connection broke
     │    ├── NodeRejected         it refused us for good: credentials, database, host, TLS
     │    └── NotPrimary           the primary refused a write: it is read-only now (demoted)
     ├── QueryTimeout              (also peewee.OperationalError)  a statement exceeded ``query_timeout``
     ├── RoutingError                                   no such node, write sent to a replica
     │    ├── ReadOnlyError                             write inside ``manager.read_only()``
     │    ├── NoHealthyReplica                          no eligible replica and ``fallback="raise"``
     │    └── ShardKeyError                             sharding: no shard key, or no shard for it
     ├── SyncQueryError            (also peewee.InterfaceError)  a managed model queried synchronously
     ├── TransactionError                               a transaction block used wrongly
     │    ├── CrossShardError                           another shard touched in a shard transaction
     │    └── CommitOutcomeUnknown (also peewee.OperationalError)  connection lost during COMMIT
     ├── ShardError                                     one shard failed in a fan-out (``.shard``)
     └── EventLoopError            (also RuntimeError)  manager in use by a running loop elsewhere

Driver errors (integrity, data, syntax) surface as Peewee's own exceptions
(``peewee.IntegrityError`` and friends), exactly as with synchronous Peewee.
"""

from __future__ import annotations

import peewee

__all__ = [
    "AioPeeweeDistError",
    "CommitOutcomeUnknown",
    "ConfigurationError",
    "CrossShardError",
    "EventLoopError",
    "NoHealthyReplica",
    "NodeRejected",
    "NodeUnavailable",
    "NotPrimary",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "QueryTimeout",
    "ReadOnlyError",
    "RoutingError",
    "ShardError",
    "ShardKeyError",
    "SyncQueryError",
    "TransactionError",
]


class AioPeeweeDistError(Exception):
    """Base class of every error raised by aiopeewee_dist itself."""


class ConfigurationError(AioPeeweeDistError, ValueError):
    """A URL, option or topology is invalid; the message names the offending part."""


class PoolError(AioPeeweeDistError, peewee.OperationalError):
    """A node's pool could not provide a connection."""


class PoolTimeout(PoolError):
    """No connection became available within the node's ``acquire_timeout``."""


class PoolClosed(PoolError):
    """The node's pool is closed (``manager.close()`` was called)."""


class NodeUnavailable(AioPeeweeDistError, peewee.OperationalError):
    """The node could not be reached: connecting failed or the connection broke mid-query.

    Not a :class:`PoolError`: the pool worked, the server did not answer.

    Reads that fail this way on a replica are retried once on another node.
    """


class NodeRejected(NodeUnavailable):
    """The node refused the connection for a reason retrying will not cure.

    ``cause`` is one of ``"wrong credentials"``, ``"unknown database"``, ``"unknown host"``,
    ``"TLS refused"``; ``advice`` says what to change. The health monitor ejects such a
    node at once, and opening a manager whose primary is rejected fails.
    """

    def __init__(self, message: str, *, cause: str, advice: str) -> None:
        super().__init__(message)
        self.cause = cause
        self.advice = advice

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild_rejected, (str(self), self.cause, self.advice)


def _rebuild_rejected(message: str, cause: str, advice: str) -> NodeRejected:
    return NodeRejected(message, cause=cause, advice=advice)


class NotPrimary(NodeUnavailable):
    """The node the manager takes for the primary refused a statement because it is read-only:
    a failover or switchover has demoted it, and the manager has not yet learnt of the new
    primary. Nothing of the statement was committed, so it is safe to run again once the
    topology is refreshed (a provider's next refresh, or ``replace_primary``); a
    ``transaction(retries=N)`` block re-runs itself.
    """


class QueryTimeout(AioPeeweeDistError, peewee.OperationalError):
    """A statement ran longer than the node's ``query_timeout``; its connection was discarded.

    Not retried automatically: the statement may have taken effect on the server.
    """


class RoutingError(AioPeeweeDistError):
    """A query could not be sent where it was asked to go."""


class ReadOnlyError(RoutingError):
    """A write was attempted inside ``manager.read_only()`` or a read-only transaction."""


class NoHealthyReplica(RoutingError):
    """No replica is eligible for a read and the fallback policy is ``"raise"``."""


class ShardKeyError(RoutingError):
    """A sharded operation has no shard key (the message names the model and field), the key
    cannot be hashed, or a placement strategy named a shard that does not exist."""


class SyncQueryError(AioPeeweeDistError, peewee.InterfaceError):
    """Peewee tried to run a query synchronously (a lazy relation such as ``post.author``,
    ``Model.create()``, ``instance.save()``) on a model used through a manager; the message
    names the awaitable to use instead (``manager.related()``, ``manager.create()``, ...)."""


class TransactionError(AioPeeweeDistError):
    """A transaction block was used in a way that cannot work (e.g. entered twice at once)."""


class CrossShardError(TransactionError):
    """An operation inside ``sharded.transaction()`` would touch another shard; nothing was sent."""


class CommitOutcomeUnknown(TransactionError, peewee.OperationalError):
    """The connection was lost while a transaction's COMMIT was in flight: it may or may not have
    committed. ``manager.transaction(retries=N)`` never re-runs such a block; the cause is chained.
    """


class ShardError(AioPeeweeDistError):
    """One shard failed during a fan-out. ``shard`` names it; the cause is chained (``__cause__``).

    ``failures`` maps every shard known to have failed when the fan-out stopped to its error.
    """

    def __init__(
        self, shard: str, cause: BaseException, failures: dict[str, BaseException] | None = None
    ) -> None:
        super().__init__(f"shard {shard!r} failed: {type(cause).__name__}: {cause}")
        self.shard = shard
        self.failures: dict[str, BaseException] = dict(failures or {shard: cause})

    def __reduce__(self) -> tuple[object, ...]:
        # Exceptions pickle through their args; ours are (shard, cause, failures), not the message.
        return type(self), (self.shard, self.failures[self.shard], self.failures)


class EventLoopError(AioPeeweeDistError, RuntimeError):
    """The manager's pools belong to an event loop that is still running elsewhere."""


for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, AioPeeweeDistError):
        _cls.__module__ = "aiopeewee_dist"
del _cls
