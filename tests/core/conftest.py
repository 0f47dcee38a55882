"""Fixtures of the core tests: fake servers (aiopeewee_dist.testing), no real server needed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from aiopeewee_dist import Manager
from aiopeewee_dist.testing import FakeCluster
from core.fakes import QUIET, Item, MakeManager


@pytest.fixture
def fake() -> Iterator[FakeCluster]:
    """A fake primary with two fake replicas, closed after the test."""
    with FakeCluster(replicas=2) as cluster:
        yield cluster


@pytest.fixture
async def make_manager(fake: FakeCluster) -> AsyncIterator[MakeManager]:
    """``make_manager(**options)``: a manager on ``fake`` (QUIET unless overridden), closed after."""
    made: list[Manager] = []

    def make(**options: Any) -> Manager:
        manager = Manager(fake.primary_url, replicas=fake.replica_urls, **{**QUIET, **options})
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.close()


@pytest.fixture
async def manager(make_manager: MakeManager) -> Manager:
    """A quiet manager with ``core_item`` created on the primary (and replayed on the replicas)."""
    manager = make_manager(acquire_timeout=2.0)
    await manager.create_tables([Item])
    return manager
