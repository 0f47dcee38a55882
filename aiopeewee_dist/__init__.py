"""aiopeewee_dist: async Peewee for data that lives on more than one database server.

A :class:`Manager` owns one connection pool per node (the primary and each read
replica), routes every query to the right node, and pins transactions to one
connection. Ordinary Peewee models work as they are. A :class:`ShardedManager`
spreads models over several shards, each a Manager, by a shard key.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._deprecations import module_attribute as _moved_attribute
from ._errors import (
    AioPeeweeDistError,
    CommitOutcomeUnknown,
    ConfigurationError,
    CrossShardError,
    EventLoopError,
    NodeRejected,
    NodeUnavailable,
    NoHealthyReplica,
    NotPrimary,
    PoolClosed,
    PoolError,
    PoolTimeout,
    QueryTimeout,
    ReadOnlyError,
    RoutingError,
    ShardError,
    ShardKeyError,
    SyncQueryError,
    TransactionError,
)
from ._galera import GaleraProvider
from ._manager import Manager
from ._options import PoolOptions
from ._patroni import PatroniProvider
from ._protocol import ManagerProtocol
from ._providers import Member, TopologyProvider, TopologySnapshot
from ._retry import RetryingTransaction
from ._transaction import Transaction
from .sharding import (
    FanOutResult,
    FanOutStream,
    IdGenerator,
    IdParts,
    Ranges,
    ShardedIdField,
    ShardedManager,
    ShardTransaction,
    decode_id,
    jump_hash,
)

__all__ = [
    "AioPeeweeDistError",
    "CommitOutcomeUnknown",
    "ConfigurationError",
    "CrossShardError",
    "EventLoopError",
    "FanOutResult",
    "FanOutStream",
    "GaleraProvider",
    "IdGenerator",
    "IdParts",
    "Manager",
    "ManagerProtocol",
    "Member",
    "NoHealthyReplica",
    "NodeRejected",
    "NodeUnavailable",
    "NotPrimary",
    "PatroniProvider",
    "PoolClosed",
    "PoolError",
    "PoolOptions",
    "PoolTimeout",
    "QueryTimeout",
    "Ranges",
    "ReadOnlyError",
    "RetryingTransaction",
    "RoutingError",
    "ShardError",
    "ShardKeyError",
    "ShardTransaction",
    "ShardedIdField",
    "ShardedManager",
    "SyncQueryError",
    "TopologyProvider",
    "TopologySnapshot",
    "Transaction",
    "TransactionError",
    "decode_id",
    "jump_hash",
]

try:
    __version__ = _version("aiopeewee-dist")
except _PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> object:
    # Node, DatabaseURL and parse_url left the public API: a DeprecationWarning for one release.
    return _moved_attribute(name)
