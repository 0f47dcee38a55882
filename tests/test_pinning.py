"""``Node.pin()``: the one way a connection is checked out for a block and pinned to a task.

``connection()``, transactions and streams all go through it; these tests pin its rules on
SQLite (no server needed): reuse of the task's pinned connection, release at the end,
``bind=False`` for streams, and read-only reader connections. Also the bounded caches and
the logged close failures that live next to it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from aiopeewee_dist import Manager, _context, _rows
from aiopeewee_dist._cache import LRUCache
from aiopeewee_dist._drivers import get_driver
from aiopeewee_dist._drivers._aiosqlite import AiosqliteDriver


@pytest.fixture
async def sqlite(tmp_path: Path) -> Any:
    manager = Manager(f"sqlite:///{tmp_path / 'pin.db'}", health_check_interval=None)
    try:
        yield manager
    finally:
        await manager.close()


async def test_pin_checks_out_binds_and_releases(sqlite: Manager) -> None:
    node = sqlite.primary_node
    assert _context.bound(node) is None
    async with node.pin() as binding:
        assert _context.bound(node) is binding
        assert node.pool.in_use == 1
        assert not binding.read_only
    assert _context.bound(node) is None
    assert node.pool.in_use == 0


async def test_pin_reuses_the_task_s_pinned_connection(sqlite: Manager) -> None:
    node = sqlite.primary_node
    async with node.connection() as conn:
        pin = node.pin()
        async with pin as binding:
            assert not pin.owned
            assert binding.conn is conn
        assert _context.bound(node) is binding  # still pinned: the outer block owns it
        async with node.transaction():
            assert _context.current_transaction() is binding
    assert node.pool.in_use == 0


async def test_pin_without_bind_is_private_to_its_holder(sqlite: Manager) -> None:
    node = sqlite.primary_node
    async with node.pin(write=False, bind=False) as binding:
        assert _context.bound(node) is None  # the task's queries do not land on it
        assert binding.read_only  # a SQLite node's reader connection
        assert binding.pool is node.pool_for(False) is not node.pool
    assert node.pool_for(False).in_use == 0


async def test_a_task_spawned_inside_does_not_share_the_pin(sqlite: Manager) -> None:
    node = sqlite.primary_node
    async with node.pin():
        assert _context.bound(node) is not None
        child = asyncio.create_task(_bound_in_task(node))
        assert await child is None


async def _bound_in_task(node: Any) -> Any:
    return _context.bound(node)


async def test_an_interrupted_block_discards_the_connection(sqlite: Manager) -> None:
    node = sqlite.primary_node
    await sqlite.raw_sql("SELECT 1")
    closed_before = node.pool.get_stats()["connections_closed"]
    with pytest.raises(asyncio.CancelledError):
        async with node.pin():
            raise asyncio.CancelledError
    await asyncio.sleep(0)
    assert node.pool.get_stats()["connections_closed"] == closed_before + 1


def test_lru_cache_evicts_the_least_recently_used() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


def test_compiled_statements_and_row_builders_are_bounded(sqlite: Manager) -> None:
    assert isinstance(_rows._plans, LRUCache) and _rows._plans.maxsize == 512
    assert isinstance(sqlite.primary_node._compiled, LRUCache)
    assert sqlite.primary_node._compiled.maxsize == 2048


class _FailingClose(AiosqliteDriver):
    async def close(self, conn: Any) -> None:
        await super().close(conn)  # really closed, so its thread ends; then the failure
        raise OSError("socket already gone")


async def test_a_failed_close_is_logged_and_the_connection_terminated(
    sqlite: Manager, caplog: pytest.LogCaptureFixture
) -> None:
    pool = sqlite.primary_node.pool
    await sqlite.raw_sql("CREATE TABLE t (x)")
    assert isinstance(get_driver("aiosqlite"), AiosqliteDriver)
    pool.driver = _FailingClose()
    caplog.set_level(logging.DEBUG, logger="aiopeewee_dist.pool")
    await pool.close()
    assert any(
        "closing a connection failed" in r.getMessage() and "socket already gone" in r.getMessage()
        for r in caplog.records
    )
    assert pool.get_stats()["connections_closed"] >= 1
