"""The fake servers themselves: real rows, replication with scripted lag, roles, faults, URLs.

These pin down what the other core tests rely on, so that a test passing on the fake means
something about the library and not about a fake that stopped faking.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import peewee
import pytest

from aiopeewee_dist import ConfigurationError, Manager, NodeUnavailable
from aiopeewee_dist._drivers import get_driver
from aiopeewee_dist._url import parse_url
from aiopeewee_dist.testing import FakeCluster, FakeConnectionLost, FakeServer, Statement
from core.fakes import Item, MakeManager


async def test_rows_are_real_and_replicas_replay_commits(manager: Manager, fake: FakeCluster) -> None:
    item = await manager.create(Item, name="a", qty=3)
    assert item.id == 1
    with manager.using("replica-1"):
        rows = await manager.execute(Item.select())
    assert [(r.name, r.qty) for r in rows] == [("a", 3)]
    assert fake.primary.position == fake.replicas[0].position == fake.replicas[1].position


async def test_paused_replica_serves_old_rows_until_resumed(manager: Manager, fake: FakeCluster) -> None:
    replica = fake.replicas[0]
    replica.pause()
    await manager.create(Item, name="late")
    assert replica.position < fake.primary.position
    assert await manager.count(Item.select(), node="replica-1") == 0
    assert await manager.count(Item.select(), node="replica-2") == 1
    replica.resume()
    assert await manager.count(Item.select(), node="replica-1") == 1


async def test_delayed_replica_replays_after_its_delay(manager: Manager, fake: FakeCluster) -> None:
    fake.replicas[0].delay(0.2)
    await manager.create(Item, name="x")
    assert await manager.count(Item.select(), node="replica-1") == 0
    await asyncio.sleep(0.25)  # the scripted delay itself, not a wait for something to happen
    assert await manager.count(Item.select(), node="replica-1") == 1


async def test_only_committed_transactions_replicate(manager: Manager, fake: FakeCluster) -> None:
    async with manager.transaction():
        await manager.create(Item, name="kept")
        try:
            async with manager.transaction():  # SAVEPOINT
                await manager.create(Item, name="undone")
                raise RuntimeError("roll back the savepoint")
        except RuntimeError:
            pass
        async with manager.transaction():
            await manager.create(Item, name="released")
    with pytest.raises(ZeroDivisionError):
        async with manager.transaction():
            await manager.create(Item, name="rolled-back")
            1 / 0  # noqa: B018
    names = {r.name for r in await manager.execute(Item.select(), node="replica-2")}
    assert names == {"kept", "released"}


async def test_replicas_refuse_writes(make_manager: MakeManager, fake: FakeCluster) -> None:
    await make_manager().create_tables([Item])
    # Straight to the replica's server, past the router's own refusal.
    session = await fake.replicas[0].connect(read_only=False)
    with pytest.raises(sqlite3.OperationalError, match="read-only"):
        await fake.replicas[0].execute(session, "INSERT INTO core_item (name, qty) VALUES ('x', 1)", ())
    fake.replicas[0].disconnect(session)


async def test_status_functions_answer_like_postgresql(fake: FakeCluster) -> None:
    primary, replica = fake.primary, fake.replicas[0]
    session = await primary.connect(read_only=False)
    await primary.execute(session, "CREATE TABLE t (x)", ())
    row = (
        await primary.execute(session, "SELECT pg_is_in_recovery(), pg_current_wal_flush_lsn()", ())
    ).fetchone()
    assert row == (0, "0/1")
    rs = await replica.connect(read_only=True)
    row = (await replica.execute(rs, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()", ())).fetchone()
    assert row == (1, "0/1")
    with pytest.raises(sqlite3.OperationalError):
        await replica.execute(rs, "SELECT pg_current_wal_lsn()", ())
    primary.disconnect(session)
    replica.disconnect(rs)


async def test_fail_next_and_drop_next(fake: FakeCluster) -> None:
    server = fake.primary
    session = await server.connect(read_only=False)
    server.fail_next("deadlock detected", match="SELECT 2")
    assert (await server.execute(session, "SELECT 1", ())).fetchone() == (1,)
    with pytest.raises(sqlite3.OperationalError, match="deadlock"):
        await server.execute(session, "SELECT 2", ())
    assert (await server.execute(session, "SELECT 2", ())).fetchone() == (2,)  # once only
    server.drop_next()
    with pytest.raises(FakeConnectionLost):
        await server.execute(session, "SELECT 3", ())
    assert session.closed and session not in server.sessions


async def test_drop_after_keeps_the_effect(fake: FakeCluster) -> None:
    server = fake.primary
    session = await server.connect(read_only=False)
    await server.execute(session, "CREATE TABLE t (x)", ())
    server.drop_next(match="INSERT", after=True)
    with pytest.raises(FakeConnectionLost):
        await server.execute(session, "INSERT INTO t VALUES (1)", ())
    other = await server.connect(read_only=False)
    assert (await server.execute(other, "SELECT count(*) FROM t", ())).fetchone() == (1,)
    server.disconnect(other)


async def test_down_refuses_and_drops_up_serves(fake: FakeCluster) -> None:
    server = fake.primary
    session = await server.connect(read_only=False)
    server.down()
    assert session.dropped and not session.closed  # the client finds out on use
    with pytest.raises(ConnectionRefusedError):
        await server.connect(read_only=False)
    server.up()
    session = await server.connect(read_only=False)
    assert (await server.execute(session, "SELECT 1", ())).fetchone() == (1,)
    server.disconnect(session)


async def test_hang_until_unhung_or_dropped(fake: FakeCluster) -> None:
    server = fake.primary
    session = await server.connect(read_only=False)
    server.hang()
    statement = asyncio.ensure_future(server.execute(session, "SELECT 1", ()))
    connect = asyncio.ensure_future(server.connect(read_only=False))
    await asyncio.sleep(0.05)
    assert not statement.done() and not connect.done()
    server.unhang()
    assert (await statement).fetchone() == (1,)
    server.disconnect(await connect)
    server.hang()
    statement = asyncio.ensure_future(server.execute(session, "SELECT 1", ()))
    await asyncio.sleep(0.01)
    server.drop_connections()
    with pytest.raises(FakeConnectionLost):
        await statement
    server.unhang()


async def test_latency_and_handler(fake: FakeCluster) -> None:
    seen: list[Statement] = []

    async def handler(statement: Statement) -> None:
        seen.append(statement)
        if "boom" in statement.sql:
            raise sqlite3.IntegrityError("scripted")

    server = fake.primary
    server.handler = handler
    server.latency = 0.05
    session = await server.connect(read_only=False)
    start = time.monotonic()
    await server.execute(session, "SELECT 1", ())
    assert time.monotonic() - start >= 0.05
    with pytest.raises(sqlite3.IntegrityError):
        await server.execute(session, "SELECT 'boom'", ())
    assert [s.sql for s in seen] == ["SELECT 1", "SELECT 'boom'"]
    assert [s.sql for s in server.statements] == ["SELECT 1", "SELECT 'boom'"]
    server.disconnect(session)


async def test_second_writer_waits_for_the_first(fake: FakeCluster) -> None:
    server = fake.primary
    a, b = await server.connect(read_only=False), await server.connect(read_only=False)
    await server.execute(a, "CREATE TABLE t (x)", ())
    await server.execute(a, "BEGIN IMMEDIATE", ())
    second = asyncio.ensure_future(server.execute(b, "INSERT INTO t VALUES (2)", ()))
    await asyncio.sleep(0.02)
    assert not second.done()
    await server.execute(a, "INSERT INTO t VALUES (1)", ())
    await server.execute(a, "COMMIT", ())
    await second
    assert (await server.execute(a, "SELECT x FROM t ORDER BY rowid", ())).fetchall() == [(1,), (2,)]
    server.busy_timeout = 0.01
    await server.execute(a, "BEGIN IMMEDIATE", ())
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await server.execute(b, "INSERT INTO t VALUES (3)", ())
    await server.execute(a, "ROLLBACK", ())
    for session in (a, b):
        server.disconnect(session)


async def test_failover_promotes_and_repoints(fake: FakeCluster) -> None:
    old, new, other = fake.primary, fake.replicas[0], fake.replicas[1]
    session = await old.connect(read_only=False)
    await old.execute(session, "CREATE TABLE t (x)", ())
    assert fake.failover(new) is old
    assert fake.primary is new and not old.is_up and other.source is new
    s2 = await new.connect(read_only=False)
    await new.execute(s2, "INSERT INTO t VALUES (1)", ())
    assert other.position == new.position == 2
    new.disconnect(s2)
    with pytest.raises(ValueError, match="not a replica"):
        fake.failover(old)


async def test_failover_keeping_the_old_primary_as_a_replica() -> None:
    with FakeCluster(replicas=1) as cluster:
        old = cluster.failover(cluster.replicas[0], keep_old=True)
        assert old.is_up and old.read_only and old in cluster.replicas
        assert "replica of" in repr(old) and cluster.name in repr(cluster)


def test_names_are_unique_and_urls_parse() -> None:
    with FakeServer("core-url-test") as server:
        assert server.url == "fake://core-url-test"
        with pytest.raises(ConfigurationError, match="exists already"):
            FakeServer("core-url-test")
        url = parse_url("fake://core-url-test?name=east&weight=2")
        assert (url.backend, url.dialect, url.database) == ("fake", "sqlite", "core-url-test")
        assert url.obscured() == "fake://core-url-test?name=east&weight=2"
    for bad in ("fake://", "fake://a/b", "fake://a b", "fake://a?journal_mode=wal"):
        with pytest.raises(ConfigurationError):
            parse_url(bad)
    assert get_driver("fake").backend == "fake"


async def test_unknown_fake_server_is_a_node_unavailable() -> None:
    manager = Manager("fake://nobody-has-this-name", health_check_interval=None)
    try:
        with pytest.raises(NodeUnavailable, match="no fake server named"):
            await manager.raw_sql("SELECT 1")
    finally:
        await manager.close()


async def test_streams_real_rows_in_chunks(manager: Manager, fake: FakeCluster) -> None:
    await manager.insert_many(Item, [{"name": f"n{i}", "qty": i} for i in range(25)])
    got = [item.qty async for item in manager.iterate(Item.select().order_by(Item.qty), chunk_size=10)]
    assert got == list(range(25))
    fake.primary.drop_next(match="core_item")
    with pytest.raises(peewee.OperationalError):
        async with manager.transaction():
            async for _ in manager.iterate(Item.select(), chunk_size=10):
                pass


def test_the_snippet_in_docs_testing_runs() -> None:
    text = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    section = text.split("## Fake servers", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(snippet, "docs/testing.md", "exec"), namespace)
    cluster = namespace["cluster"]
    assert isinstance(cluster, FakeCluster)
    assert cluster.primary.name.endswith("replica-1") and not cluster.replicas[0].is_up


async def test_a_demoted_primary_restarts_and_replays(fake: FakeCluster) -> None:
    old, new = fake.primary, fake.replicas[0]
    session = await old.connect(read_only=False)
    await old.execute(session, "CREATE TABLE t (x)", ())
    await old.execute(session, "BEGIN IMMEDIATE", ())  # holds the write lock
    fake.failover(new, keep_old=True)
    assert session.dropped  # restarted as a replica: its open transaction is gone
    writer = await new.connect(read_only=False)
    await new.execute(writer, "INSERT INTO t VALUES (1)", ())
    reader = await old.connect(read_only=True)
    assert (await old.execute(reader, "SELECT count(*) FROM t", ())).fetchone() == (1,)
    for server, conn in ((new, writer), (old, reader)):
        server.disconnect(conn)
