"""The deploy lock of ``Migrations`` on a fake server (SQLite's write lock, ``BEGIN IMMEDIATE``):
one deploy at a time, a bounded wait, a failed migration leaving the earlier ones applied."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from migration_files import CREATE, write

from aiopeewee_dist import Manager
from aiopeewee_dist.migrate import MigrationLockTimeout, Migrations
from aiopeewee_dist.testing import FakeServer
from core.fakes import QUIET

BROKEN = """
def up(migrator):
    raise RuntimeError("migration 0002 is broken")
"""


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    # A write waiting for the lock fails after 50 ms, as SQLite's busy timeout makes it.
    with FakeServer(busy_timeout=0.05) as server:
        yield server


@pytest.fixture
async def managers(server: FakeServer) -> AsyncIterator[tuple[Manager, Manager]]:
    pair = (Manager(server.url, **QUIET), Manager(server.url, **QUIET))
    yield pair
    for manager in pair:
        await manager.close()


async def test_a_deploy_waits_for_the_lock_then_times_out(
    managers: tuple[Manager, Manager], tmp_path: Path
) -> None:
    deploy, other = managers
    migrations = Migrations(write(tmp_path / "m", {"0001_create.py": CREATE}), lock_timeout=0.3)
    loop = asyncio.get_running_loop()
    async with other.transaction():
        await other.raw_sql("CREATE TABLE held (x INTEGER)")  # holds the write lock
        started = loop.time()
        with pytest.raises(MigrationLockTimeout, match=r"another deploy .* lock_timeout=0\.3s"):
            await migrations.up(deploy)
        assert 0.3 <= loop.time() - started < 5.0  # it waited for lock_timeout, not for ever
    assert (await migrations.status(deploy))["primary"].pending == ["0001_create"]
    assert await migrations.up(deploy) == {"primary": ["0001_create"]}  # lock free: it runs


async def test_lock_released_when_it_frees_within_the_timeout(
    managers: tuple[Manager, Manager], tmp_path: Path
) -> None:
    deploy, other = managers
    migrations = Migrations(write(tmp_path / "m", {"0001_create.py": CREATE}), lock_timeout=5.0)
    held, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with other.transaction():
            await other.raw_sql("CREATE TABLE held (x INTEGER)")
            held.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.wait_for(held.wait(), 5.0)
    run = asyncio.create_task(migrations.up(deploy))
    await asyncio.sleep(0.2)
    assert not run.done()  # waiting for the other deploy
    release.set()
    await holder
    assert await asyncio.wait_for(run, 5.0) == {"primary": ["0001_create"]}


async def test_a_failed_migration_keeps_the_earlier_ones(
    managers: tuple[Manager, Manager], tmp_path: Path
) -> None:
    deploy, _ = managers
    files = {"0001_create.py": CREATE, "0002_broken.py": BROKEN}
    migrations = Migrations(write(tmp_path / "m", files), lock_timeout=1.0)
    with pytest.raises(Exception, match="0002"):
        await migrations.up(deploy)
    status = (await migrations.status(deploy))["primary"]
    assert status.pending == ["0002_broken"]
    # The lock was released: another run can take it at once.
    with pytest.raises(Exception, match="0002"):
        await Migrations(migrations.folder, lock_timeout=0.1).up(deploy)
