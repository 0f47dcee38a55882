"""A serverless handler: one module-level manager, ``asyncio.run()`` per event, no leaks.

``examples/serverless_handler.py`` is imported as a platform would (once, with
``DATABASE_URL`` in the environment) and its ``handler`` is called 100 times, each call in a
new event loop, against the PostgreSQL primary directly and through PgBouncer (transaction
pooling). What is checked, by asking the servers rather than the library:

- every call answers (no "attached to a different loop", no PoolTimeout);
- directly: ``pg_stat_activity`` rows on the primary whose ``application_name`` is this test's
  (set in the URL) never exceed the pool's ``max_size`` while the calls run, and drop to 0
  once the manager is closed. Connections of a finished loop cannot be used from the next
  one; the pool terminates them when it sees the new loop, so at most one invocation's
  connections are open between invocations;
- through PgBouncer: the same bound on the client connections PgBouncer sees
  (``SHOW CLIENTS`` on its admin console, filtered by ``application_name``, which the app user
  may read: it is in ``stats_users``), and 0 after close. The server connections behind
  PgBouncer are PgBouncer's own pool, shared with other clients, so they are not counted;
- a unique violation surfaces as ``peewee.IntegrityError`` (through PgBouncer too), and the
  connection stays usable, inside and outside a transaction.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import cluster
import peewee
import psycopg
import pytest
from conftest import topology_for

from aiopeewee_dist import Manager

pytestmark = pytest.mark.cluster

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "serverless_handler.py"
CALLS = 100


def with_app_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def load_handler(monkeypatch: pytest.MonkeyPatch, url: str) -> ModuleType:
    """Import the example as a fresh module, the way a platform's cold start does."""
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("DATABASE_REPLICA_URLS", raising=False)
    name = f"serverless_handler_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pg_app_connections(app_name: str) -> int:
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app_name}'"
    return int(asyncio.run(cluster.pg_scalar(cluster.PG_PRIMARY, sql)))


def bouncer_clients(app_name: str) -> int:
    async def count() -> int:
        admin = cluster.PGBOUNCER.rsplit("/", 1)[0] + "/pgbouncer"
        # The admin console speaks the simple protocol only: client-side binding, no prepare.
        async with await psycopg.AsyncConnection.connect(
            admin, autocommit=True, prepare_threshold=None, cursor_factory=psycopg.AsyncClientCursor
        ) as conn:
            cur = await conn.execute("SHOW CLIENTS")
            assert cur.description is not None
            column = [d.name for d in cur.description].index("application_name")
            return sum(1 for row in await cur.fetchall() if row[column] == app_name)

    return asyncio.run(count())


def wait_for_zero(count: Callable[[], int], timeout: float = 5.0) -> int:
    """Backends exit asynchronously after their client hangs up: poll (bounded)."""
    deadline = time.monotonic() + timeout
    while (value := count()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


@pytest.fixture
def pg(tmp_path: Path) -> None:
    topology_for("psycopg", tmp_path)  # skip (or fail under AIOPD_REQUIRE_CLUSTER=1) without it


@pytest.fixture
def bouncer(pg: None) -> None:
    if not cluster.cluster_available("pgbouncer"):
        pytest.fail("pgbouncer is not running (scripts/cluster.sh start)")


@pytest.fixture
def handler_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    loaded: list[ModuleType] = []

    def load(url: str) -> ModuleType:
        # A table left by an interrupted run would turn the first signups into 409s.
        asyncio.run(cluster.pg_scalar(cluster.PG_PRIMARY, "DROP TABLE IF EXISTS serverless_signup"))
        module = load_handler(monkeypatch, url)
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        asyncio.run(module.clean_up())  # drops the table, closes the manager
        sys.modules.pop(module.__name__, None)


def run_many(module: ModuleType, count_connections: Callable[[], int], tag: str) -> list[int]:
    """Call the handler CALLS times (a new loop each); sample the open connections every 10 calls."""
    samples = []
    for i in range(CALLS):
        if i % 3 == 0:
            answer = module.handler({"action": "signup", "email": f"{tag}-{i}@example.com"})
            assert answer["statusCode"] == 201, answer
        else:
            answer = module.handler({"action": "count"})
            assert answer == {"statusCode": 200, "body": f"{i // 3 + 1} signups"}, answer
        if i % 10 == 9:
            samples.append(count_connections())
    return samples


def test_handler_direct_to_primary_leaves_no_connections(
    pg: None, handler_module: Callable[[str], ModuleType]
) -> None:
    app_name = f"aiopd-serverless-{uuid.uuid4().hex[:6]}"
    module = handler_module(with_app_name(cluster.PG_PRIMARY, app_name))
    manager: Manager = module.manager
    max_size = manager.primary_node.pool.options.max_size
    assert pg_app_connections(app_name) == 0

    samples = run_many(module, lambda: pg_app_connections(app_name), "direct")

    assert max(samples) <= max_size, samples
    stats = manager.stats()["primary"]
    assert stats.get("connections_failed", 0) == 0 and stats.get("timeouts", 0) == 0
    # One connection per invocation: a loop's connections die with it, none is reused across loops.
    assert stats["connections_opened"] == CALLS
    assert stats["size"] <= max_size
    print(f"direct: open connections sampled every 10 calls: {samples}; pool stats: {stats}")

    asyncio.run(manager.close())
    assert wait_for_zero(lambda: pg_app_connections(app_name)) == 0


def test_handler_through_pgbouncer_leaves_no_clients(
    bouncer: None, handler_module: Callable[[str], ModuleType]
) -> None:
    app_name = f"aiopd-serverless-{uuid.uuid4().hex[:6]}"
    module = handler_module(with_app_name(cluster.PGBOUNCER, app_name))
    manager: Manager = module.manager
    max_size = manager.primary_node.pool.options.max_size

    samples = run_many(module, lambda: bouncer_clients(app_name), "bouncer")

    assert max(samples) <= max_size, samples
    stats = manager.stats()["primary"]
    assert stats.get("connections_failed", 0) == 0 and stats["errors"] == 0
    print(f"pgbouncer: client connections sampled every 10 calls: {samples}; pool stats: {stats}")

    # Duplicate signup: the unique violation comes back through PgBouncer as peewee.IntegrityError,
    # which the handler turns into a 409; the next call works.
    assert module.handler({"action": "signup", "email": "bouncer-0@example.com"})["statusCode"] == 409
    assert module.handler({"action": "count"})["statusCode"] == 200

    asyncio.run(manager.close())
    assert wait_for_zero(lambda: bouncer_clients(app_name)) == 0


class Unique(peewee.Model):
    code = peewee.CharField(max_length=32, unique=True)

    class Meta:
        table_name = "sx_unique"


async def test_integrity_error_through_pgbouncer(bouncer: None) -> None:
    manager = Manager(cluster.PGBOUNCER, min_size=0, max_size=2, max_idle=1.0, health_check_interval=None)
    try:
        await manager.drop_tables([Unique])
        await manager.create_tables([Unique])
        await manager.create(Unique, code="a")
        with pytest.raises(peewee.IntegrityError):
            await manager.create(Unique, code="a")
        # Inside a transaction: the block rolls back, the pinned connection goes back clean
        # (PgBouncer hands the server connection to someone else after the ROLLBACK).
        with pytest.raises(peewee.IntegrityError):
            async with manager.transaction():
                await manager.create(Unique, code="b")
                await manager.create(Unique, code="a")
        # A savepoint absorbs the error; the outer transaction commits.
        async with manager.transaction():
            await manager.create(Unique, code="c")
            try:
                async with manager.transaction():
                    await manager.create(Unique, code="a")
            except peewee.IntegrityError:
                pass
        codes = [u.code for u in await manager.execute(Unique.select().order_by(Unique.code))]
        assert codes == ["a", "c"]
        assert manager.stats()["primary"].get("returns_bad", 0) == 0
    finally:
        try:
            await manager.drop_tables([Unique])
        finally:
            await manager.close()


def test_pools_shrink_with_small_max_idle(pg: None) -> None:
    """``min_size=0`` and a small ``max_idle``: a warm container's idle connections are closed."""
    app_name = f"aiopd-serverless-{uuid.uuid4().hex[:6]}"
    manager = Manager(
        with_app_name(cluster.PG_PRIMARY, app_name),
        min_size=0,
        max_size=3,
        max_idle=0.2,
        health_check_interval=None,
    )

    async def burst() -> None:
        await asyncio.gather(*(manager.raw_sql("SELECT pg_sleep(0.05)") for _ in range(3)))

    async def later() -> Any:
        await asyncio.sleep(0.3)
        # This query's return makes the pool close the others, idle for longer than max_idle.
        await manager.raw_sql("SELECT 1")
        await asyncio.sleep(0.1)  # closing runs in the background
        return manager.stats()["primary"]["size"]

    async def run() -> Any:
        await burst()
        assert manager.stats()["primary"]["size"] == 3
        return await later()

    try:
        assert asyncio.run(run()) == 1
        assert wait_for_zero(lambda: max(pg_app_connections(app_name) - 1, 0)) == 0
    finally:
        asyncio.run(manager.close())
    assert wait_for_zero(lambda: pg_app_connections(app_name)) == 0
