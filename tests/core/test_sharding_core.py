"""ShardedManager on fake shards (each a fake primary with a fake replica), through its public API:
key routing, reference and home tables, fan-out merges against one database holding every row,
streaming, dead shards and ``partial``, shard transactions, walks and batch processing."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import Any

import peewee
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiopeewee_dist import (
    CrossShardError,
    FanOutResult,
    IdGenerator,
    Manager,
    ShardedIdField,
    ShardedManager,
    ShardError,
    ShardKeyError,
    decode_id,
)
from aiopeewee_dist.testing import FakeCluster, FakeServer
from core.fakes import QUIET

IDS = IdGenerator(worker_id=5)
OPTIONS: dict[str, Any] = {**QUIET, "acquire_timeout": 2.0}


class User(peewee.Model):
    id = peewee.BigIntegerField(primary_key=True)
    name = peewee.CharField(max_length=64)
    score = peewee.IntegerField(null=True)

    class Meta:
        table_name = "core_sh_user"
        shard_key = "id"


class Order(peewee.Model):
    id = ShardedIdField(IDS)
    user_id = peewee.BigIntegerField(index=True)
    amount = peewee.IntegerField()

    class Meta:
        table_name = "core_sh_order"


class Country(peewee.Model):
    code = peewee.CharField(max_length=2, primary_key=True)
    name = peewee.CharField(max_length=64)

    class Meta:
        table_name = "core_sh_country"


class Event(peewee.Model):
    label = peewee.CharField(max_length=64)

    class Meta:
        table_name = "core_sh_event"


MODELS = [User, Order, Country, Event]


def ids_on(server: FakeServer, table: str = "core_sh_user") -> list[int]:
    """The ids in ``table`` on one fake server, read from its SQLite file directly."""
    server.catch_up()  # a replica replays when asked: reading its file is not asking
    with sqlite3.connect(server.path) as db:
        try:
            return [row[0] for row in db.execute(f"SELECT id FROM {table} ORDER BY id")]
        except sqlite3.OperationalError:  # no such table
            return []


def sent_per_shard(sharded: ShardedManager) -> dict[str, int]:
    return {
        shard: sum(entry["queries"] for name, entry in stats.items() if name != "router")
        for shard, stats in sharded.stats().items()
    }


def make_sharded(shards: dict[str, Any]) -> ShardedManager:
    sharded = ShardedManager(shards, **OPTIONS)
    sharded.register(Order, key="user_id")
    sharded.register(Country, reference=True)
    sharded.register(Event, home="s2")
    return sharded


@pytest.fixture
def clusters() -> Iterator[dict[str, FakeCluster]]:
    made = {f"s{i}": FakeCluster(replicas=1) for i in (1, 2, 3)}
    yield made
    for cluster in made.values():
        cluster.close()


@pytest.fixture
async def sharded(clusters: dict[str, FakeCluster]) -> AsyncIterator[ShardedManager]:
    shards = {name: {"primary": c.primary_url, "replicas": c.replica_urls} for name, c in clusters.items()}
    manager = make_sharded(shards)
    await manager.create_tables(MODELS)
    try:
        yield manager
    finally:
        await manager.close()


async def test_keyed_crud_lands_on_the_computed_shard(
    sharded: ShardedManager, clusters: dict[str, FakeCluster]
) -> None:
    keys = list(range(1, 25))
    for key in keys:
        await sharded.create(User, id=key, name=f"user{key}", score=key)
    expected = {s: [k for k in keys if sharded.shard_for(User, k) == s] for s in sharded.shards}
    assert all(expected.values())
    assert {s: ids_on(clusters[s].primary) for s in sharded.shards} == expected
    assert {s: ids_on(clusters[s].replicas[0]) for s in sharded.shards} == expected  # replayed

    order = await sharded.create(Order, user_id=7, amount=5)
    assert decode_id(order.id).worker_id == 5
    home = sharded.shard_for(User, 7)
    assert ids_on(clusters[home].primary, "core_sh_order") == [order.id]

    user = await sharded.get(User, id=7)
    assert (await sharded.get(User, User.id == 7)).name == user.name == "user7"
    assert (await sharded.get_by_id(User, 7)).id == 7
    assert await sharded.get_or_none(User, id=999) is None
    assert [o.id for o in await sharded.execute(Order.select().where(Order.user_id == 7))] == [order.id]
    user.score = 700
    assert await sharded.save(user) == 1
    assert await sharded.execute(User.update(score=0).where(User.id == 8)) == 1
    assert await sharded.execute(User.delete().where(User.id == 9)) == 1
    assert await sharded.delete_instance(user) == 1
    remaining = sorted(k for s in sharded.shards for k in ids_on(clusters[s].primary))
    assert remaining == [k for k in keys if k not in (7, 9)]
    with pytest.raises(User.DoesNotExist):  # type: ignore[attr-defined]
        await sharded.get(User, id=7)
    _, created = await sharded.get_or_create(User, id=7, defaults={"name": "again"})
    assert created and 7 in ids_on(clusters[home].primary)
    assert await sharded.insert_many(User, [{"id": k, "name": "m"} for k in (100, 101, 102)]) == 3


async def test_reference_and_home_tables(sharded: ShardedManager, clusters: dict[str, FakeCluster]) -> None:
    france = await sharded.create(Country, code="fr", name="France")
    counts = [len(ids_on_code(c.primary)) for c in clusters.values()]
    assert counts == [1, 1, 1]
    france.name = "République française"
    assert await sharded.save(france) == 1
    before = sent_per_shard(sharded)
    assert (await sharded.get(Country, code="fr")).name == france.name
    after = sent_per_shard(sharded)
    assert sum(after[s] - before[s] for s in sharded.shards) == 1  # one copy read
    with pytest.raises(ShardError) as failed:
        await sharded.create(Country, code="fr", name="again")
    assert isinstance(failed.value.__cause__, peewee.IntegrityError)
    assert await sharded.delete_instance(france) == 1
    assert [len(ids_on_code(c.primary)) for c in clusters.values()] == [0, 0, 0]

    await sharded.create(Event, label="launch")
    assert [bool(ids_on(c.primary, "core_sh_event")) for c in clusters.values()] == [False, True, False]
    assert [e.label for e in await sharded.execute(Event.select(), shards="all")] == ["launch"]


def ids_on_code(server: FakeServer) -> list[str]:
    with sqlite3.connect(server.path) as db:
        return [row[0] for row in db.execute("SELECT code FROM core_sh_country")]


async def test_missing_keys_in_lists_and_explicit_fan_out(sharded: ShardedManager) -> None:
    before = sent_per_shard(sharded)
    with pytest.raises(ShardKeyError, match=r"User.*User\.id"):
        await sharded.get(User, name="nobody")
    with pytest.raises(ShardKeyError, match=r"Order.*Order\.user_id"):
        await sharded.create(Order, amount=3)
    with pytest.raises(ShardKeyError):
        await sharded.execute(User.select().where((User.id == 1) | (User.name == "x")))
    assert sent_per_shard(sharded) == before
    assert await sharded.get_or_none(User, name="nobody", shards="all") is None
    assert await sharded.execute(User.update(score=1).where(User.name == "x"), shards="all") == 0
    assert await sharded.execute(Order.delete().where(Order.amount > 3), shards=["s1", "s3"]) == 0

    await sharded.insert_many(User, [{"id": k, "name": f"u{k}", "score": k} for k in range(1, 61)])
    by_shard: dict[str, list[int]] = {s: [] for s in sharded.shards}
    for key in range(1, 61):
        by_shard[sharded.shard_for(User, key)].append(key)
    wanted = by_shard["s1"][:3] + by_shard["s3"][:2]
    before = sent_per_shard(sharded)
    rows = await sharded.execute(User.select().where(User.id << wanted).order_by(User.id))
    after = sent_per_shard(sharded)
    assert [u.id for u in rows] == sorted(wanted)
    assert {s: after[s] - before[s] for s in sharded.shards} == {"s1": 1, "s2": 0, "s3": 1}
    assert await sharded.count(User.select().where(User.id << by_shard["s2"][:4])) == 4
    assert await sharded.scalar(User.select(peewee.fn.SUM(User.score)), shards="all") == sum(range(1, 61))


score_rows = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(-4, 4)), st.text(alphabet="abAB", min_size=1, max_size=3)),
    min_size=0,
    max_size=30,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=score_rows, limit=st.one_of(st.none(), st.integers(1, 12)), offset=st.integers(0, 10))
def test_fan_out_equals_one_database(
    data: list[tuple[int | None, str]], limit: int | None, offset: int
) -> None:
    """Ordering (NULLs as SQLite sorts them), LIMIT/OFFSET, aggregates and GROUP BY, merged."""
    fn = peewee.fn
    orderings = [
        (User.score, User.id),
        (User.score.desc(), User.id),
        (User.name, User.score.desc(), User.id.desc()),
        (User.score.asc(nulls="first"), User.id),
    ]

    async def check(sharded: ShardedManager, single: Manager) -> None:
        rows = [{"id": k, "score": score, "name": name} for k, (score, name) in enumerate(data, 1)]
        for target in (sharded, single):
            await target.create_tables([User])
            if rows:
                await target.insert_many(User, rows)
        for ordering in orderings:
            query = User.select().order_by(*ordering).offset(offset)
            query = query.limit(limit) if limit is not None else query
            assert await sharded.execute(query.tuples(), shards="all") == await single.execute(query.tuples())
            assert await sharded.count(query, shards="all") == await single.count(query)
        n = fn.COUNT(User.id).alias("n")
        grouped = (
            User.select(User.name, n, fn.SUM(User.score)).group_by(User.name).order_by(n.desc(), User.name)
        )
        assert await sharded.execute(grouped.tuples(), shards="all") == await single.execute(grouped.tuples())
        totals = User.select(fn.COUNT(User.score).alias("c"), fn.MIN(User.score).alias("low")).dicts()
        assert await sharded.execute(totals, shards="all") == await single.execute(totals)

    async def run() -> None:
        servers = [FakeServer() for _ in range(4)]
        sharded = ShardedManager({f"s{i}": s.url for i, s in enumerate(servers[:3], 1)}, **OPTIONS)
        single = Manager(servers[3].url, **OPTIONS)
        try:
            await check(sharded, single)
        finally:
            await sharded.close()
            await single.close()
            for server in servers:
                server.close()

    asyncio.run(run())


async def test_streaming_fan_out_matches_the_materialised_rows(sharded: ShardedManager) -> None:
    rnd = random.Random(11)
    rows = [{"id": k, "name": f"n{rnd.randrange(20):02d}", "score": rnd.randrange(50)} for k in range(1, 401)]
    await sharded.insert_many(User, rows)
    for query in [
        User.select().order_by(User.score.desc(), User.id),
        User.select(User.id, User.name).order_by(User.name, User.id.desc()).dicts(),
        User.select().order_by(User.score, User.id).offset(25).limit(120).tuples(),
    ]:
        materialised = await sharded.execute(query, shards="all")
        async with sharded.iterate(query, shards="all", chunk_size=16) as stream:
            streamed = [row async for row in stream]
        as_key = repr if isinstance(streamed[0], (tuple, dict)) else (lambda u: (u.id, u.name, u.score))
        assert [as_key(r) for r in streamed] == [as_key(r) for r in materialised]
    async with sharded.iterate(User.select(User.id).tuples(), shards="all", chunk_size=50) as stream:
        assert sorted([row[0] async for row in stream]) == list(range(1, 401))
    async with sharded.iterate(User.select().order_by(User.id), shards="all", chunk_size=10) as stream:
        async for row in stream:
            if row.id == 10:
                break
    for shard_stats in sharded.stats().values():
        assert all(entry["acquired"] == 0 for name, entry in shard_stats.items() if name != "router")


async def test_a_sorted_fan_out_stream_makes_instances_as_they_are_taken(sharded: ShardedManager) -> None:
    # As on one node: a chunk of instances alive at once outlives young GC passes.
    await sharded.insert_many(User, [{"id": k, "name": f"n{k}", "score": k % 7} for k in range(1, 601)])
    gc.collect()
    before = sum(type(obj) is User for obj in gc.get_objects())
    seen = []
    query = User.select().order_by(User.score, User.id)
    async with sharded.iterate(query, shards="all", chunk_size=100) as stream:
        async for row in stream:
            if row.id in (5, 300, 590):
                seen.append(sum(type(obj) is User for obj in gc.get_objects()) - before)
    assert len(seen) == 3 and max(seen) <= 2 * len(sharded.shards), seen


async def test_a_dead_shard_is_named_and_partial_returns_the_others(
    sharded: ShardedManager, clusters: dict[str, FakeCluster]
) -> None:
    keys = list(range(1, 60))
    await sharded.insert_many(User, [{"id": k, "name": f"u{k}", "score": k % 5} for k in keys])
    clusters["s3"].primary.down()
    clusters["s3"].replicas[0].down()
    query = User.select().order_by(User.score, User.id)
    with pytest.raises(ShardError) as failed:
        await sharded.execute(query, shards="all")
    assert failed.value.shard == "s3" and failed.value.__cause__ is not None
    result = await sharded.execute(query, shards="all", partial=True)
    assert isinstance(result, FanOutResult)
    assert set(result.failures) == {"s3"} and not result.complete
    live = sorted(k for k in keys if sharded.shard_for(User, k) != "s3")
    assert sorted(u.id for u in result.rows) == live
    async with sharded.iterate(query, shards="all", partial=True, chunk_size=7) as stream:
        streamed = [u.id async for u in stream]
    assert streamed == [u.id for u in result] and set(stream.failures) == {"s3"}
    with pytest.raises(ShardError, match="s3"):
        await sharded.count(User.select(), shards="all")
    await sharded.shard("s1").create(Country, code="it", name="Italy")
    with pytest.raises(ShardError, match="'s3'"):  # a reference write needs every copy
        await sharded.create(Country, code="es", name="Spain")


async def test_a_shard_transaction_refuses_other_shards(
    sharded: ShardedManager, clusters: dict[str, FakeCluster]
) -> None:
    by_shard: dict[str, list[int]] = {s: [] for s in sharded.shards}
    for key in range(1, 100):
        by_shard[sharded.shard_for(User, key)].append(key)
    mine, other = by_shard["s1"][0], by_shard["s2"][0]
    async with sharded.transaction(shard_key=mine) as tx:
        assert tx.shard == sharded.current_shard() == "s1"
        await sharded.create(User, id=mine, name="mine")
        before = sent_per_shard(sharded)
        with pytest.raises(CrossShardError, match="'s2'"):
            await sharded.create(User, id=other, name="other")
        with pytest.raises(CrossShardError):
            await sharded.execute(User.select(), shards="all")
        with pytest.raises(CrossShardError):
            sharded.iterate(User.select(), shards="all")
        with pytest.raises(CrossShardError):
            await sharded.create(Country, code="de", name="Germany")
        with pytest.raises(CrossShardError):
            async with sharded.transaction(shard="s3"):
                pass
        assert sent_per_shard(sharded) == before
        assert (await sharded.get(User, id=mine)).name == "mine"
        assert await asyncio.create_task(sharded.count(User.select(), shards="all")) == 0
    assert sharded.current_shard() is None
    assert ids_on(clusters["s1"].primary) == [mine]
    with pytest.raises(RuntimeError):
        async with sharded.transaction(shard="s2"):
            await sharded.create(User, id=other, name="other")
            raise RuntimeError("changed my mind")
    assert ids_on(clusters["s2"].primary) == []

    @sharded.transaction(shard_key=other, model=User)
    async def add(key: int) -> None:
        await sharded.create(User, id=key, name="decorated")

    await add(other)
    assert ids_on(clusters["s2"].primary) == [other]


async def test_walk_and_process_every_row(sharded: ShardedManager) -> None:
    keys = random.Random(3).sample(range(1, 10_000), 200)
    await sharded.insert_many(User, [{"id": k, "name": f"n{k % 13:02d}", "score": k % 7} for k in keys])
    per_shard = {s: sum(1 for k in keys if sharded.shard_for(User, k) == s) for s in sharded.shards}
    progress: list[tuple[str, int, int]] = []
    walked = [
        u.id async for u in sharded.walk(User, batch_size=32, on_progress=lambda *a: progress.append(a))
    ]
    assert walked == sorted(keys)
    assert {shard: done for shard, done, _ in progress} == per_shard and progress[-1][2] == 200
    assert all(b[2] >= a[2] for a, b in itertools.pairwise(progress))
    by_name = [(u.name, u.id) async for u in sharded.walk(User, batch_size=25, order_by=User.name)]
    assert by_name == sorted(by_name) and len(by_name) == 200
    progress.clear()

    async def report(shard: str, done: int, total: int) -> None:
        progress.append((shard, done, total))

    parallel = [u.id async for u in sharded.walk(User, batch_size=32, parallel=True, on_progress=report)]
    assert sorted(parallel) == sorted(keys) and progress[-1][2] == 200
    batches: list[int] = []

    async def handle(batch: list[User]) -> None:
        batches.append(len(batch))

    assert await sharded.process(User, handle, concurrency=3, batch_size=20) == 200
    assert sum(batches) == 200 and max(batches) <= 20

    async def fail(batch: list[User]) -> None:
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        await sharded.process(User, fail, batch_size=20)
