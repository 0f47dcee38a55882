"""Sharding: models spread over several shards, each a full Manager (see docs/sharding.md).

Modules, one concern each: ``_shardkeys`` (placement strategies, keys in queries), ``_ids``
(globally unique ids), ``_routing`` (which shards an operation goes to), ``_dispatch`` (the
one dispatcher: route, then one shard, a fan-out or a reference copy), ``_plan`` and
``_exprs`` (query -> fan-out plan), ``_merge`` (plan + per-shard rows -> rows), ``_stream``
(the streaming merge), ``_fanout`` (running a planned fan-out), ``_gather`` (running on
several shards, partial results), ``_walk`` (batch walks), ``_transaction`` (shard
transactions), ``_build`` (each shard's Manager), and the public ``ShardedManager`` in
``_manager`` with its query and write methods in ``_queries`` and ``_writes``.
"""

from __future__ import annotations

from ._gather import FanOutResult
from ._ids import IdGenerator, IdParts, ShardedIdField, decode_id
from ._manager import ShardedManager
from ._shardkeys import Ranges, jump_hash
from ._stream import FanOutStream
from ._transaction import ShardTransaction

__all__ = [
    "FanOutResult",
    "FanOutStream",
    "IdGenerator",
    "IdParts",
    "Ranges",
    "ShardTransaction",
    "ShardedIdField",
    "ShardedManager",
    "decode_id",
    "jump_hash",
]
