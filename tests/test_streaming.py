"""``manager.iterate()`` against real servers: 200,000 rows streamed with bounded memory,
early exits that give the connection back, and streaming inside a transaction."""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
from cluster import pg_scalar, until
from conftest import BACKENDS, Topology, topology_for

from aiopeewee_dist import Manager

ROWS = 200_000


class StreamRow(peewee.Model):
    n = peewee.IntegerField()
    label = peewee.CharField(max_length=32)

    class Meta:
        # Of this process's own: other test runs may share the cluster at the same time.
        table_name = f"t_stream_rows_{os.getpid()}"


TABLE = StreamRow._meta.table_name


FILL_SQL = {
    "pg": f"INSERT INTO {TABLE} (n, label) SELECT g, 'row-' || g FROM generate_series(1, {ROWS}) AS g",
    "mysql": f"INSERT INTO {TABLE} (n, label) SELECT seq, CONCAT('row-', seq) FROM seq_1_to_{ROWS}",
    "sqlite": (
        f"INSERT INTO {TABLE} (n, label) WITH RECURSIVE c(x) AS"
        f" (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {ROWS}) SELECT x, 'row-' || x FROM c"
    ),
}


@pytest.fixture(scope="module", params=BACKENDS)
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Per backend, once per module: ``t_stream_rows`` with ROWS rows, replicated everywhere."""
    topology = topology_for(str(request.param), Path(tmp_path_factory.mktemp("stream")))

    async def fill() -> None:
        manager = topology.manager()
        try:
            await manager.drop_tables([StreamRow])
            await manager.create_tables([StreamRow])
            await manager.raw_sql(FILL_SQL[topology.kind])
            await topology.wait_replicated(timeout=30)
        finally:
            await manager.close()

    async def drop() -> None:
        manager = topology.manager()
        try:
            await manager.drop_tables([StreamRow])
        finally:
            await manager.close()

    asyncio.run(fill())
    yield topology
    asyncio.run(drop())


@pytest.fixture
async def manager(filled: Topology) -> AsyncIterator[Manager]:
    m = make_manager(filled)
    try:
        yield m
    finally:
        await m.close()


def make_manager(topology: Topology, app: str | None = None, **options: Any) -> Manager:
    """Monitor and read-your-writes off (conftest's defaults); on PostgreSQL every session
    carries application_name ``app`` when given."""
    if topology.kind == "pg" and app is not None:

        def tag(url: str) -> str:
            return f"{url}{'&' if '?' in url else '?'}application_name={app}"

        topology = Topology(topology.backend, tag(topology.primary), [tag(u) for u in topology.replicas])
    return topology.manager(**options)


def acquired(manager: Manager) -> int:
    stats = manager.stats()
    return sum(stats[node.name]["acquired"] for node in manager.nodes)


async def pg_idle_in_transaction(topology: Topology, app: str) -> int:
    url = topology.primary.replace("postgresql+aiopg://", "postgresql://", 1)
    counts = []
    for u in [url, *(r.replace("postgresql+aiopg://", "postgresql://", 1) for r in topology.replicas)]:
        counts.append(
            await pg_scalar(
                u,
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'aiopd'"
                f" AND application_name = '{app}' AND state LIKE 'idle in transaction%'",
            )
        )
    del url
    return int(sum(counts))


# -- bounded memory ---------------------------------------------------------------------


@pytest.mark.slow
async def test_iterate_streams_every_row_with_bounded_memory(filled: Topology, manager: Manager) -> None:
    # One column as tuples: tracemalloc slows every allocation several times over, and with
    # model rows this test alone took ~30 s over the four backends; the ratio stays ~100x.
    query = StreamRow.select(StreamRow.n).order_by(StreamRow.id).tuples()

    gc.collect()
    tracemalloc.start()
    try:
        count = total = 0
        async for (n,) in manager.iterate(query, chunk_size=1000):
            count += 1
            total += n
        stream_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == ROWS
    assert total == ROWS * (ROWS + 1) // 2
    assert acquired(manager) == 0

    gc.collect()
    tracemalloc.start()
    try:
        rows = await manager.execute(query)
        materialised_peak = tracemalloc.get_traced_memory()[1]
        assert len(rows) == ROWS
        del rows
    finally:
        tracemalloc.stop()

    mb = 1024 * 1024
    print(
        f"\n[{filled.backend}] peak Python memory over {ROWS} rows: streaming {stream_peak / mb:.2f} MB,"
        f" materialised {materialised_peak / mb:.2f} MB (ratio {materialised_peak / stream_peak:.0f}x)"
    )
    assert stream_peak < materialised_peak / 5
    assert stream_peak < 20 * mb


def live_instances(model: type[peewee.Model]) -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is model)


async def test_streamed_model_instances_are_made_as_they_are_taken(
    filled: Topology, manager: Manager
) -> None:
    # A whole chunk of instances alive at once outlives young garbage collections; made one at
    # a time, an instance the consumer drops dies young (this made streaming over twice as fast).
    query = StreamRow.select().order_by(StreamRow.id).limit(3000)
    gc.collect()
    before = live_instances(StreamRow)
    seen = []
    async with manager.iterate(query, chunk_size=1000) as rows:
        async for row in rows:
            if row.n in (10, 1500, 2990):
                seen.append(live_instances(StreamRow) - before)
    assert len(seen) == 3 and max(seen) <= 2, seen


# -- early exits --------------------------------------------------------------------------


async def test_early_break_in_async_with_releases_the_connection_at_once(filled: Topology) -> None:
    app = f"aiopd_stream_{uuid.uuid4().hex[:10]}"
    manager = make_manager(filled, app, max_size=1)
    try:
        first: list[Any] = []
        async with manager.iterate(StreamRow.select().order_by(StreamRow.id), chunk_size=100) as rows:
            async for row in rows:
                first.append(row)
                break
        assert [r.n for r in first] == [1]
        assert acquired(manager) == 0
        if filled.kind == "pg":
            # The stream's own transaction (its cursor lives in one) was ended, not left open.
            assert await pg_idle_in_transaction(filled, app) == 0
        # With max_size=1 everywhere, the next statements reuse what the stream had: it is clean.
        for node in manager.nodes:
            assert await manager.count(StreamRow.select(), node=node.name) == ROWS
        assert acquired(manager) == 0
    finally:
        await manager.close()


async def test_abandoned_stream_gives_its_connection_back(filled: Topology) -> None:
    """``async for ... break`` without ``async with``: the event loop closes the generator later."""
    app = f"aiopd_stream_{uuid.uuid4().hex[:10]}"
    manager = make_manager(filled, app, max_size=1)
    failures: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: failures.append(context))
    try:
        async for row in manager.iterate(StreamRow.select().order_by(StreamRow.id), chunk_size=100):
            assert row.n == 1
            break

        async def released() -> bool:
            return acquired(manager) == 0

        await until(released, 3.0, "the abandoned stream's connection is back in its pool")
        if filled.kind == "pg":

            async def no_open_transaction() -> bool:
                return await pg_idle_in_transaction(filled, app) == 0

            await until(no_open_transaction, 3.0, "the stream's transaction ended on the server")
        for node in manager.nodes:
            assert await manager.count(StreamRow.select(), node=node.name) == ROWS
        gc.collect()
        await asyncio.sleep(0)
        assert not failures, failures
    finally:
        loop.set_exception_handler(None)
        await manager.close()


async def test_abandoned_stream_cleanup_survives_garbage_collection(filled: Topology) -> None:
    """The loop's finalizer closes an abandoned stream in a task nothing else references; a full
    garbage collection while that task waits on the server must not destroy it. (On aiomysql,
    which waits on an asyncio StreamReader that its transport holds only weakly, nothing else on
    the loop would hold it while it drains the rest of an unbuffered result.)"""
    manager = make_manager(filled, max_size=1)
    failures: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: failures.append(context))
    try:
        async for row in manager.iterate(StreamRow.select().order_by(StreamRow.id), chunk_size=100):
            assert row.n == 1
            break
        # A full collection of a large test-session heap on a loaded machine takes a while: the
        # bound is for a finalizer that never finishes, not for a slow one.
        deadline = loop.time() + 20.0
        while acquired(manager) and loop.time() < deadline and not failures:
            gc.collect()
            await asyncio.sleep(0.01)
        assert not failures, failures
        assert acquired(manager) == 0
    finally:
        loop.set_exception_handler(None)
        await manager.close()


async def test_other_queries_during_a_stream_do_not_disturb_it(filled: Topology) -> None:
    """A task may query the same node while it consumes a stream (on a connection of its own)."""
    manager = make_manager(filled, max_size=2)
    try:
        count = 0
        query = StreamRow.select(StreamRow.n).where(StreamRow.n <= 5000).order_by(StreamRow.id).tuples()
        async for (n,) in manager.iterate(query, chunk_size=500, node="primary"):
            count += 1
            assert n == count
            if n % 1000 == 0:
                assert await manager.raw_sql("SELECT 1", node="primary") == [(1,)]
        assert count == 5000
        assert acquired(manager) == 0
    finally:
        await manager.close()


# -- inside a transaction -----------------------------------------------------------------


class Rollback(Exception):
    pass


async def test_streaming_inside_a_transaction(filled: Topology, manager: Manager) -> None:
    query = StreamRow.select().where(StreamRow.n <= 10).order_by(StreamRow.n)
    cursors_during: list[int] = []
    # asyncpg streams through a protocol-level portal, which pg_cursors does not list
    # (tests/test_asyncpg_driver.py checks that one is closed).
    declares = filled.backend in ("psycopg", "aiopg")
    with pytest.raises(Rollback):
        async with manager.transaction():
            await manager.create(StreamRow, n=-1, label="uncommitted")
            seen = []
            async for row in manager.iterate(query, chunk_size=3):
                seen.append(row.n)
                if filled.kind != "mysql":  # an unbuffered MySQL result blocks its connection
                    # The transaction's connection serves this query between the stream's fetches
                    # (a fetch ahead would run on it at the same time).
                    assert await manager.count(StreamRow.select().where(StreamRow.n < 0)) == 1
                if declares and len(seen) == 1:
                    # DECLAREd in the caller's transaction: the cursor is visible in that session.
                    cursors_during.append(
                        (
                            await manager.raw_sql(
                                "SELECT count(*) FROM pg_cursors WHERE name LIKE 'aiopd_stream_%'"
                            )
                        )[0][0]
                    )
            assert seen == [-1, *range(1, 11)]  # the stream sees the transaction's own row
            if declares:
                assert cursors_during == [1]
                rows = await manager.raw_sql(
                    "SELECT count(*) FROM pg_cursors WHERE name LIKE 'aiopd_stream_%'"
                )
                assert rows == [(0,)]  # closed, and the transaction is still open:
            # The transaction goes on after the stream (it did not commit it).
            await manager.create(StreamRow, n=-2, label="uncommitted too")
            assert await manager.count(StreamRow.select().where(StreamRow.n < 0)) == 2
            async with manager.iterate(query, chunk_size=4) as rows:  # early exit inside the tx
                async for row in rows:
                    assert row.n == -2
                    break
            assert await manager.count(StreamRow.select().where(StreamRow.n < 0)) == 2
            raise Rollback
    with manager.primary():
        assert await manager.count(StreamRow.select().where(StreamRow.n < 0)) == 0
        assert await manager.count(StreamRow.select()) == ROWS
    assert acquired(manager) == 0
