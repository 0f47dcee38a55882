"""aiopeewee_dist: async Peewee for data that lives on more than one database server.

A :class:`Manager` owns one connection pool per node (the primary and each read
replica), routes every query to the right node, and pins transactions to one
connection. Ordinary Peewee models work as they are.
"""

from __future__ import annotations

from ._errors import (
    AioPeeweeDistError,
    ConfigurationError,
    EventLoopError,
    NodeUnavailable,
    NoHealthyReplica,
    PoolClosed,
    PoolError,
    PoolTimeout,
    ReadOnlyError,
    RoutingError,
    TransactionError,
)
from ._manager import Manager
from ._node import Node
from ._options import PoolOptions
from ._transaction import Transaction
from ._url import DatabaseURL, parse_url

__all__ = [
    "AioPeeweeDistError",
    "ConfigurationError",
    "DatabaseURL",
    "EventLoopError",
    "Manager",
    "NoHealthyReplica",
    "Node",
    "NodeUnavailable",
    "PoolClosed",
    "PoolError",
    "PoolOptions",
    "PoolTimeout",
    "ReadOnlyError",
    "RoutingError",
    "Transaction",
    "TransactionError",
    "parse_url",
]

__version__ = "0.1.0"
