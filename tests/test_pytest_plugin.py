"""The pytest plugin (``pytest11`` entry point), run as a user runs it: a separate pytest
session in a fresh directory, on SQLite and on MariaDB (whose DDL would end a transaction,
so tables must be made outside the tests' transactions), with pytest-asyncio's per-test loops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Topology

from aiopeewee_dist import Manager

USER_TESTS = """
import peewee
import pytest


class Note(peewee.Model):
    text = peewee.CharField(max_length=32, unique=True)

    class Meta:
        table_name = "plugin_note"


@pytest.fixture(scope="session")
def aiopd_models():
    return [Note]


async def test_writes(aiopd_manager):
    await aiopd_manager.create(Note, text="x")
    assert await aiopd_manager.count(Note.select()) == 1  # read on a replica, in the transaction


async def test_previous_test_was_rolled_back(aiopd_manager):  # a new loop, a new manager
    assert await aiopd_manager.count(Note.select()) == 0
    async with aiopd_manager.transaction():
        await aiopd_manager.create(Note, text="x")
    assert await aiopd_manager.count(Note.select()) == 1


async def test_lagging_replica(aiopd):
    await aiopd.manager.create(Note, text="y")
    aiopd.lag("replica-1", 10.0)
    assert await aiopd.manager.execute(Note.select(), node="replica-1") == []
    assert len(await aiopd.manager.execute(Note.select(), node="replica-2")) == 1
"""

INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "test_user_app.py").write_text(USER_TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
async def test_plugin_fixtures_in_a_users_suite(topology: Topology, tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, "--aiopd-url", topology.primary)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
    manager = Manager(topology.primary, health_check_interval=None)
    try:  # the session dropped the tables it made
        tables = await manager.database.aio_get_tables()
    finally:
        await manager.close()
    assert "plugin_note" not in tables


def test_plugin_without_a_url_says_what_to_do(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, "-k", "writes")
    assert proc.returncode == 1
    assert "needs a test database: pass --aiopd-url, set $AIOPD_TEST_URL" in proc.stdout
