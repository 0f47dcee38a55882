"""aiopeewee_dist: async Peewee for data that lives on more than one database server.

A :class:`Manager` owns one connection pool per node (the primary and each read
replica), routes every query to the right node, and pins transactions to one
connection. Ordinary Peewee models work as they are. A :class:`ShardedManager`
spreads models over several shards, each a Manager, by a shard key.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from ._errors import (
    AioPeeweeDistError,
    ConfigurationError,
    CrossShardError,
    EventLoopError,
    NodeRejected,
    NodeUnavailable,
    NoHealthyReplica,
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
from ._fanout import FanOutResult, FanOutStream
from ._ids import IdGenerator, IdParts, ShardedIdField, decode_id
from ._manager import Manager
from ._node import Node
from ._options import PoolOptions
from ._sharding import ShardedManager, ShardTransaction
from ._shardkeys import Ranges, jump_hash
from ._transaction import Transaction
from ._url import DatabaseURL, parse_url

__all__ = [
    "AioPeeweeDistError",
    "ConfigurationError",
    "CrossShardError",
    "DatabaseURL",
    "EventLoopError",
    "FanOutResult",
    "FanOutStream",
    "IdGenerator",
    "IdParts",
    "Manager",
    "NoHealthyReplica",
    "Node",
    "NodeRejected",
    "NodeUnavailable",
    "PoolClosed",
    "PoolError",
    "PoolOptions",
    "PoolTimeout",
    "QueryTimeout",
    "Ranges",
    "ReadOnlyError",
    "RoutingError",
    "ShardError",
    "ShardKeyError",
    "ShardTransaction",
    "ShardedIdField",
    "ShardedManager",
    "SyncQueryError",
    "Transaction",
    "TransactionError",
    "decode_id",
    "jump_hash",
    "parse_url",
]

try:
    __version__ = _metadata.version("aiopeewee-dist")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
