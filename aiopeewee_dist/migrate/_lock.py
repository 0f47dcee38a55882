"""The deploy lock: one migration run per database at a time.

PostgreSQL: a session advisory lock; MySQL/MariaDB: ``GET_LOCK``; SQLite: its own write
lock, held by a ``BEGIN IMMEDIATE`` transaction around the whole run. Each is taken on
the run's pinned connection and waited for up to ``lock_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import peewee

from .._node import Node
from ._errors import MigrationLockTimeout

__all__ = ["LOCK_NAME", "deploy_lock"]

LOCK_NAME = "aiopeewee_dist.migrate"
# pg_advisory_lock takes a bigint: a stable number derived from the name.
_PG_KEY = zlib.crc32(LOCK_NAME.encode()) + (1 << 40)
_POLL = 0.05
# MySQL lock names are at most 64 characters.
_MY_NAME = "LEFT(CONCAT(%s, ':', DATABASE()), 64)"


@asynccontextmanager
async def deploy_lock(node: Node, timeout: float) -> AsyncIterator[None]:
    """Hold the deploy lock of ``node``'s database for the block (the connection is pinned)."""
    if node.dialect == "postgresql":
        await _poll(node, timeout, f"SELECT pg_try_advisory_lock({_PG_KEY})")
        try:
            yield
        finally:
            await node.run_sql(f"SELECT pg_advisory_unlock({_PG_KEY})", write=False)
    elif node.dialect == "mysql":
        # GET_LOCK waits on the server (whole seconds); 0 means it timed out. Its names are
        # server-wide, so the database's name is part of it: shards that share a server
        # (shard1, shard2, ...) must not wait for each other's lock.
        rows = (await node.run_sql(f"SELECT GET_LOCK({_MY_NAME}, %s)", (LOCK_NAME, math.ceil(timeout)))).rows
        if not rows or rows[0][0] != 1:
            raise MigrationLockTimeout(_busy(node, timeout))
        try:
            yield
        finally:
            await node.run_sql(f"SELECT RELEASE_LOCK({_MY_NAME})", (LOCK_NAME,), write=False)
    else:
        await _sqlite_begin(node, timeout)
        try:
            yield
        except BaseException:
            # Each migration ran in a savepoint, already rolled back if it failed: the
            # ones applied before it stay applied, as on the other databases.
            with contextlib.suppress(Exception):
                await node.run_sql("COMMIT", write=False)
            raise
        await node.run_sql("COMMIT", write=False)


async def _poll(node: Node, timeout: float, sql: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = (await node.run_sql(sql, write=False)).rows
        if rows and rows[0][0]:
            return
        if time.monotonic() >= deadline:
            raise MigrationLockTimeout(_busy(node, timeout))
        await asyncio.sleep(_POLL)  # another deploy holds it: poll, bounded by the deadline


async def _sqlite_begin(node: Node, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await node.run_sql("BEGIN IMMEDIATE", write=False)
            return
        except peewee.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise MigrationLockTimeout(_busy(node, timeout)) from exc
            await asyncio.sleep(_POLL)


def _busy(node: Node, timeout: float) -> str:
    return (
        f"node {node.name!r}: another deploy has held the migration lock for more than"
        f" lock_timeout={timeout:g}s; wait for it to finish, or raise lock_timeout"
    )
