"""Conduit's tests on the pytest plugin's fixtures (``aiopd``, ``aiopd_manager``).

The RealWorld walk runs inside one rolled-back transaction (on SQLite, PostgreSQL and
MariaDB), and the app is checked against simulated replica trouble with no real cluster
involved: a lagging replica serves stale lists to anonymous readers while the author still
reads their own writes, a dead replica and a failover leave the API answering.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import peewee
import pytest
from conftest import topology_for
from test_conduit import Contract, contract, run_walk, user_payload

from aiopeewee_dist import Manager
from aiopeewee_dist.testing import RolledBack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from conduit import Settings, create_app  # examples/ is not a package: on sys.path above
from conduit.models import MODELS, User, use_table_prefix

__all__ = ["contract"]  # the fixture, imported for the tests below

PREFIX = "cr_"


@pytest.fixture(params=["sqlite", "psycopg", "mysql"])
def aiopd_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The plugin's test database: one per backend (the cluster's primary, or a SQLite file)."""
    return topology_for(str(request.param), tmp_path_factory.getbasetemp()).primary


@pytest.fixture
def aiopd_models() -> Sequence[type[peewee.Model]]:
    use_table_prefix(PREFIX)
    return MODELS


@pytest.fixture
async def client(aiopd_manager: Manager) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url="unused://", table_prefix=PREFIX), aiopd_manager)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


async def committed_users(url: str) -> int:
    outside = Manager(url, health_check_interval=None)
    try:
        return int(await outside.count(User.select(), node="primary"))
    finally:
        await outside.close()


async def test_walk_rolled_back(aiopd: RolledBack, aiopd_url: str, contract: Contract) -> None:
    settings = Settings(database_url=aiopd_url, table_prefix=PREFIX)
    contract.seen.clear()
    await run_walk(aiopd.manager, contract, settings)
    assert await aiopd.manager.count(User.select()) == 2
    assert await committed_users(aiopd_url) == 0  # nothing outside the test's transaction


async def post_article(client: httpx.AsyncClient, token: str, title: str) -> Any:
    article = {"title": title, "description": "d", "body": "b", "tagList": []}
    headers = {"Authorization": f"Token {token}"}
    response = await client.post("/api/articles", json={"article": article}, headers=headers)
    assert response.status_code == 201, response.text
    return response


async def register(client: httpx.AsyncClient, name: str) -> str:
    response = await client.post("/api/users", json={"user": user_payload(name)})
    assert response.status_code == 201, response.text
    return str(response.json()["user"]["token"])


async def test_lagging_replicas_serve_stale_lists_but_authors_read_their_writes(
    aiopd: RolledBack, client: httpx.AsyncClient, aiopd_manager: Manager
) -> None:
    token = await register(client, "alice")
    aiopd.lag("replica-1", 5.0)
    aiopd.lag("replica-2", 5.0)
    await post_article(client, token, "Fresh")
    # The client carries the read-your-writes cookie: its reads go to the primary.
    assert (await client.get("/api/articles")).json()["articlesCount"] == 1
    client.cookies.clear()  # an anonymous reader: a replica, which has not replayed the article
    assert (await client.get("/api/articles")).json()["articlesCount"] == 0
    aiopd.catch_up("replica-1")
    aiopd.catch_up("replica-2")
    assert (await client.get("/api/articles")).json()["articlesCount"] == 1


async def test_dead_replica_and_failover_keep_the_api_up(
    aiopd: RolledBack, client: httpx.AsyncClient, aiopd_manager: Manager
) -> None:
    token = await register(client, "bob")
    client.cookies.clear()
    aiopd.down("replica-1", detected=False)  # the first read that lands there is retried
    for _ in range(3):
        assert (await client.get("/api/tags")).status_code == 200
    assert aiopd_manager.stats()["router"]["retries"] >= 1
    new = await aiopd.fail_over()
    assert new.name == "replica-2" and aiopd_manager.primary_node is new
    await post_article(client, token, "After failover")
    assert (await client.get("/api/articles")).json()["articlesCount"] == 1
