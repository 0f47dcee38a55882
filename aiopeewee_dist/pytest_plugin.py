"""pytest fixtures for applications built on aiopeewee_dist (a ``pytest11`` entry point).

Loaded automatically once the package is installed. Fixtures:

- ``aiopd``: a :class:`~aiopeewee_dist.testing.RolledBack` over a fresh
  :func:`~aiopeewee_dist.testing.simulated_manager`: every query of the test runs in one
  transaction on the primary, rolled back at the end; ``aiopd.lag(...)``, ``aiopd.down(...)``
  and ``await aiopd.fail_over()`` simulate replica trouble;
- ``aiopd_manager``: that manager (``aiopd.manager``).

Configuration, each a fixture you may override in your ``conftest.py``:

- ``aiopd_url``: the test database (``--aiopd-url``, else ``$AIOPD_TEST_URL``, else the
  ``aiopd_url`` ini option);
- ``aiopd_models``: models whose tables are created once per session (before the first
  test that uses them) and dropped at the end of the session;
- ``aiopd_manager_options``: keyword arguments for the manager (``replicas=2`` simulated
  replicas by default; ``max_lag``, ``read_your_writes``, ... as in production).

Each test gets its own manager, made on the test's event loop, so pytest-asyncio's
per-test loops (the default) just work.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import peewee
import pytest

from ._manager import Manager
from .testing import RolledBack, rolled_back, simulated_manager

__all__ = ["aiopd", "aiopd_manager", "aiopd_manager_options", "aiopd_models", "aiopd_url"]

_ENV = "AIOPD_TEST_URL"
_created = pytest.StashKey[set[tuple[str, tuple[str, ...]]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiopeewee_dist")
    group.addoption("--aiopd-url", default=None, help=f"database URL of the aiopd fixtures (or ${_ENV})")
    parser.addini("aiopd_url", "database URL of aiopeewee_dist's aiopd fixtures", default="")


@pytest.fixture(scope="session")
def aiopd_url(pytestconfig: pytest.Config) -> str:
    """The test database's URL; override this fixture to compute it."""
    url = pytestconfig.getoption("--aiopd-url") or os.environ.get(_ENV) or pytestconfig.getini("aiopd_url")
    if not url:
        pytest.fail(
            "aiopeewee_dist's aiopd fixture needs a test database: pass --aiopd-url, set"
            f" ${_ENV}, put aiopd_url in the pytest ini file, or override the aiopd_url fixture"
            " (for example 'sqlite:///' + a file in tmp_path)",
            pytrace=False,
        )
    return str(url)


@pytest.fixture(scope="session")
def aiopd_models() -> Sequence[type[peewee.Model]]:
    """Models whose tables the fixtures create (override it; none by default)."""
    return ()


@pytest.fixture(scope="session")
def aiopd_manager_options() -> dict[str, Any]:
    """Keyword arguments for :func:`~aiopeewee_dist.testing.simulated_manager` (override it)."""
    return {}


async def _ensure_tables(config: pytest.Config, url: str, models: Sequence[type[peewee.Model]]) -> None:
    created = config.stash.setdefault(_created, set())
    # Table names, not only the classes: an app may rename its tables (a prefix) between tests.
    key = (url, tuple(model._meta.table_name for model in models))
    if not models or key in created:
        return
    manager = Manager(url, health_check_interval=None)
    try:
        await manager.drop_tables(models)  # what an interrupted earlier session left
        await manager.create_tables(models)
    finally:
        await manager.close()
    created.add(key)
    config.add_cleanup(functools.partial(_drop_tables, url, list(models)))


def _drop_tables(url: str, models: Sequence[type[peewee.Model]]) -> None:
    async def drop() -> None:
        manager = Manager(url, health_check_interval=None)
        try:
            await manager.drop_tables(models)
        finally:
            await manager.close()

    asyncio.run(drop())  # at the end of the session: no event loop is running any more


@pytest.fixture
async def aiopd(
    request: pytest.FixtureRequest,
    aiopd_url: str,
    aiopd_models: Sequence[type[peewee.Model]],
    aiopd_manager_options: dict[str, Any],
) -> AsyncIterator[RolledBack]:
    """A manager on the test database whose work this test rolls back, with simulated replicas."""
    await _ensure_tables(request.config, aiopd_url, aiopd_models)
    manager = simulated_manager(aiopd_url, **aiopd_manager_options)
    try:
        async with rolled_back(manager) as db:
            yield db
    finally:
        await manager.close()


@pytest.fixture
def aiopd_manager(aiopd: RolledBack) -> Manager:
    """The ``aiopd`` fixture's manager."""
    return aiopd.manager
