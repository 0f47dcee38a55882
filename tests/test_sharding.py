"""Sharding: key routing, fan-out merges, shard transactions, ids and batch walks.

Against the real servers: three PostgreSQL shards (databases shard1-3 on the primary, each
with the two streaming standbys) and two MariaDB shards (shard1-2, with the GTID replica).
Fan-out results are compared with the same query on one database holding every row
(database ``aiopd``). Placement-only checks (hashing, ranges, plan refusals) need no
server: they fail before any connection is made, on SQLite URLs that are never opened.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cluster
import peewee
import pytest
from conftest import expect, run_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiopeewee_dist import (
    ConfigurationError,
    CrossShardError,
    FanOutResult,
    IdGenerator,
    Manager,
    Ranges,
    RoutingError,
    ShardedIdField,
    ShardedManager,
    ShardError,
    ShardKeyError,
    decode_id,
    jump_hash,
)
from aiopeewee_dist.sharding import _fanout
from aiopeewee_dist.sharding._shardkeys import stable_hash64
from aiopeewee_dist.sharding._stream import raw_pairs as real_raw_pairs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "sharding.py"


def _db(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


PG_SHARD_URLS = {f"s{i}": _db(cluster.PG_PRIMARY, f"shard{i}") for i in (1, 2, 3)}
PG_SHARDS = {
    name: {"primary": url, "replicas": [_db(r, f"shard{name[1]}") for r in cluster.PG_REPLICAS]}
    for name, url in PG_SHARD_URLS.items()
}
MY_SHARD_URLS = {f"s{i}": _db(cluster.MY_PRIMARY, f"shard{i}") for i in (1, 2)}
MY_SHARDS = {
    name: {"primary": url, "replicas": [_db(cluster.MY_REPLICA, f"shard{name[1]}")]}
    for name, url in MY_SHARD_URLS.items()
}
# The "one database holding every row" that fan-out results are compared with.
PG_SINGLE = cluster.PG_PRIMARY
MY_SINGLE = cluster.MY_PRIMARY
DEAD_URL = _db(cluster.PG_PRIMARY.replace(f":{cluster.PORTS['pg-primary']}/", ":1/"), "shard3")
OPTIONS: dict[str, Any] = {"health_check_interval": None, "read_your_writes": None, "acquire_timeout": 5.0}

needs_pg = cluster.needs_cluster("pg")
needs_mysql = cluster.needs_cluster("mysql")

IDS = IdGenerator(worker_id=7)


class ShUser(peewee.Model):
    id = peewee.BigIntegerField(primary_key=True)
    name = peewee.CharField(max_length=64)
    score = peewee.IntegerField(null=True)

    class Meta:
        table_name = "sh_user"
        shard_key = "id"  # placement from Meta, no register() call


class ShOrder(peewee.Model):
    id = ShardedIdField(IDS)
    user_id = peewee.BigIntegerField(index=True)
    amount = peewee.IntegerField()

    class Meta:
        table_name = "sh_order"


class ShCountry(peewee.Model):
    code = peewee.CharField(max_length=2, primary_key=True)
    name = peewee.CharField(max_length=64)

    class Meta:
        table_name = "sh_country"


class ShEvent(peewee.Model):
    label = peewee.CharField(max_length=64)

    class Meta:
        table_name = "sh_event"


class ShScore(peewee.Model):
    key = peewee.IntegerField(primary_key=True)
    score = peewee.IntegerField(null=True)
    name = peewee.CharField(max_length=16)

    class Meta:
        table_name = "sh_score"
        shard_key = "key"


MODELS = [ShUser, ShOrder, ShCountry, ShEvent]


def make_sharded(shards: dict[str, Any], **options: Any) -> ShardedManager:
    sharded = ShardedManager(shards, **{**OPTIONS, **options})
    sharded.register(ShOrder, key="user_id")
    sharded.register(ShCountry, reference=True)
    sharded.register(ShEvent, home="s2")
    return sharded


def offline(n: int = 3, tmp: Path | None = None) -> ShardedManager:
    """A sharded manager that is never connected: for placement and planning checks."""
    folder = tmp or Path("/nonexistent")
    return make_sharded({f"s{i}": f"sqlite:///{folder}/s{i}.db" for i in range(1, n + 1)})


def keys_by_shard(sharded: ShardedManager, model: Any, count: int = 200) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {name: [] for name in sharded.shards}
    for key in range(1, count + 1):
        found[sharded.shard_for(model, key)].append(key)
    return found


def queries_per_shard(sharded: ShardedManager) -> dict[str, int]:
    return {
        shard: sum(entry["queries"] for name, entry in stats.items() if name != "router")
        for shard, stats in sharded.stats().items()
    }


async def pg_ids(url: str, table: str = "sh_user") -> list[int]:
    text = await cluster.pg_scalar(
        url, f"SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM {table}"
    )
    return [int(x) for x in text.split(",") if x]


async def my_ids(url: str, table: str = "sh_user") -> list[int]:
    text = await cluster.my_scalar(url, f"SELECT coalesce(group_concat(id ORDER BY id), '') FROM {table}")
    return [int(x) for x in str(text).split(",") if x]


async def wait_pg() -> None:
    await cluster.wait_pg_replayed(cluster.PG_PRIMARY, cluster.PG_REPLICAS)


@pytest.fixture
async def pg_sharded() -> AsyncIterator[ShardedManager]:
    sharded = make_sharded(PG_SHARDS)
    try:
        await sharded.drop_tables(MODELS)
        await sharded.create_tables(MODELS)
        await wait_pg()
        yield sharded
        await sharded.drop_tables(MODELS)
    finally:
        await sharded.close()


# -- placement: hashing, ranges, directories (no server) ------------------------------------


def test_jump_hash_matches_reference_vectors() -> None:
    # Test vectors of the reference implementations (e.g. dgryski/go-jump).
    cases = [(1, 1, 0), (42, 57, 43), (0xDEAD10CC, 1, 0), (0xDEAD10CC, 666, 361), (256, 1024, 520)]
    assert [jump_hash(key, buckets) for key, buckets, _ in cases] == [want for *_, want in cases]


def test_stable_hash_is_fixed_and_canonical() -> None:
    # Fixed across processes and versions: a changed value would move every row.
    assert (
        stable_hash64(5)
        == stable_hash64("5")
        == int.from_bytes(__import__("hashlib").blake2b(b"5", digest_size=8).digest(), "big")
    )
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert stable_hash64(value) == stable_hash64(value.bytes)
    with pytest.raises(ShardKeyError, match="boolean"):
        stable_hash64(True)
    with pytest.raises(ShardKeyError, match="float"):
        stable_hash64(1.5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), kind=st.sampled_from(["int", "str", "uuid"]))
def test_growing_from_three_to_four_shards_moves_about_a_quarter_all_to_the_new_shard(
    seed: int, kind: str
) -> None:
    rnd = random.Random(seed)
    make: dict[str, Callable[[], Any]] = {
        "int": lambda: rnd.randrange(2**62),
        "str": lambda: f"user-{rnd.randrange(2**40):x}",
        "uuid": lambda: uuid.UUID(int=rnd.getrandbits(128)),
    }
    keys = list(dict.fromkeys(make[kind]() for _ in range(2100)))[:2000]
    three = ShardedManager({f"s{i}": f"sqlite:///s{i}.db" for i in (1, 2, 3)})
    four = ShardedManager({f"s{i}": f"sqlite:///s{i}.db" for i in (1, 2, 3, 4)})
    for sharded in (three, four):
        sharded.register(ShScore, key="name" if kind == "str" else "key")
    if kind == "uuid":  # a UUID key goes through a UUIDField
        uuid_model = type("UuidKeyed", (peewee.Model,), {"ref": peewee.UUIDField(), "__module__": __name__})
        for sharded in (three, four):
            sharded.register(uuid_model, key="ref")
        model: Any = uuid_model
    else:
        model = ShScore
    before = [three.shard_for(model, key) for key in keys]
    after = [four.shard_for(model, key) for key in keys]
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert 0.15 * len(keys) <= len(moved) <= 0.35 * len(keys)
    assert all(a == "s4" for _, a in moved)


def test_ranges_and_directory_placement(tmp_path: Path) -> None:
    sharded = offline(3, tmp_path)
    sharded.register(ShScore, key="key", strategy=Ranges([(100, "s1"), (200, "s2"), (None, "s3")]))
    assert [sharded.shard_for(ShScore, k) for k in (-5, 99, 100, 199, 200, 10**9)] == [
        "s1",
        "s1",
        "s2",
        "s2",
        "s3",
        "s3",
    ]
    assert sharded.shard_for(ShScore, "150") == "s2"  # normalised by the IntegerField first

    directory = {1: "s3", 2: "s1", 3: "nowhere"}
    sharded.register(ShScore, key="key", strategy=lambda key: directory[key])
    assert sharded.shard_for(ShScore, 1) == "s3"
    with pytest.raises(ShardKeyError, match=r"ShScore\.key returned 'nowhere'"):
        sharded.shard_for(ShScore, 3)

    with pytest.raises(Exception, match="unknown shards"):
        sharded.register(ShScore, key="key", strategy=Ranges([(10, "s9"), (None, "s1")]))
    with pytest.raises(Exception, match="increase"):
        Ranges([(10, "s1"), (5, "s2"), (None, "s3")])
    with pytest.raises(Exception, match="None"):
        Ranges([(10, "s1")])


def test_meta_options_and_node_names(tmp_path: Path) -> None:
    sharded = offline(3, tmp_path)
    placement = sharded.placement(ShUser)  # from Meta.shard_key
    assert (placement.kind, placement.field.name) == ("keyed", "id")
    assert sharded.placement(ShCountry).kind == "reference"
    assert sharded.placement(ShEvent).home == "s2"

    class Unplaced(peewee.Model):
        class Meta:
            table_name = "sh_unplaced"

    with pytest.raises(ShardKeyError, match="Unplaced"):
        sharded.placement(Unplaced)

    pg = ShardedManager(PG_SHARDS, **OPTIONS)
    assert [n.name for n in pg.shard("s2").nodes] == ["s2.primary", "s2.replica-1", "s2.replica-2"]
    assert repr(pg) == "<ShardedManager s1, s2, s3>"
    named = ShardedManager({"a": f"{PG_SHARD_URLS['s1']}?name=east", "b": {"primary": PG_SHARD_URLS["s2"]}})
    assert [named.shard(s).primary_node.name for s in named.shards] == ["east", "b.primary"]
    ready = Manager(PG_SHARD_URLS["s3"], **OPTIONS)
    assert ShardedManager({"x": ready}).shard("x") is ready  # a ready Manager is used as it is

    with pytest.raises(ConfigurationError, match="one dialect"):
        ShardedManager({"a": PG_SHARD_URLS["s1"], "b": f"sqlite:///{tmp_path}/b.db"})
    with pytest.raises(ConfigurationError, match="non-empty"):
        ShardedManager({})
    with pytest.raises(ConfigurationError, match="shard name"):
        ShardedManager({"bad/name": PG_SHARD_URLS["s1"]})
    with pytest.raises(ConfigurationError, match=r"shard 'a'.*primary"):
        ShardedManager({"a": {"replicas": [PG_SHARD_URLS["s1"]]}})
    with pytest.raises(RoutingError, match="no shard named 'zz'"):
        pg.shard("zz")


async def test_plans_that_cannot_be_merged_are_refused_before_sending(tmp_path: Path) -> None:
    sharded = offline(3, tmp_path)
    fn = peewee.fn
    with pytest.raises(RoutingError, match=r"SUM.*COUNT"):
        await sharded.execute(ShUser.select(fn.AVG(ShUser.score)), shards="all")
    with pytest.raises(RoutingError, match="DISTINCT"):
        await sharded.execute(ShUser.select(fn.COUNT(ShUser.name.distinct())), shards="all")
    with pytest.raises(RoutingError, match="HAVING"):
        query = ShUser.select(ShUser.name, fn.COUNT(ShUser.id)).group_by(ShUser.name)
        await sharded.execute(query.having(fn.COUNT(ShUser.id) > 1), shards="all")
    with pytest.raises(RoutingError, match="select it too"):
        await sharded.execute(ShUser.select(ShUser.id).order_by(ShUser.score), shards="all")
    with pytest.raises(RoutingError, match="window"):
        await sharded.execute(ShUser.select(fn.SUM(ShUser.score).over()), shards="all")
    # Nothing was sent anywhere: the SQLite files were never even created.
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 (a test's tmp dir, no I/O to speak of)
    assert all(count == 0 for count in queries_per_shard(sharded).values())


# -- keyed CRUD on the servers ----------------------------------------------------------------


@needs_pg
async def test_pg_keyed_crud_lands_on_the_computed_shard(pg_sharded: ShardedManager) -> None:
    sharded = pg_sharded
    keys = list(range(1, 25))
    for key in keys:
        await sharded.create(ShUser, id=key, name=f"user{key}", score=key)
    expected = {shard: [k for k in keys if sharded.shard_for(ShUser, k) == shard] for shard in sharded.shards}
    assert all(expected.values()), expected  # every shard got some rows
    assert {s: await pg_ids(PG_SHARD_URLS[s]) for s in sharded.shards} == expected

    # Orders have the user's key: they live with their user (ids come from the generator).
    order = await sharded.create(ShOrder, user_id=7, amount=5)
    assert decode_id(order.id).worker_id == 7
    home = sharded.shard_for(ShUser, 7)
    assert {s: await pg_ids(PG_SHARD_URLS[s], "sh_order") for s in sharded.shards} == {
        s: [order.id] if s == home else [] for s in sharded.shards
    }

    await wait_pg()  # reads go to the shards' replicas
    user = await sharded.get(ShUser, id=7)
    assert (await sharded.get(ShUser, ShUser.id == 7)).name == user.name == "user7"
    assert (await sharded.get_by_id(ShUser, 7)).id == 7
    assert await sharded.get_or_none(ShUser, id=999) is None
    assert [o.id for o in await sharded.execute(ShOrder.select().where(ShOrder.user_id == 7))] == [order.id]

    user.score = 700
    assert await sharded.save(user) == 1
    assert await cluster.pg_scalar(PG_SHARD_URLS[home], "SELECT score FROM sh_user WHERE id=7") == 700
    assert await sharded.execute(ShUser.update(score=0).where(ShUser.id == 8)) == 1
    home8 = sharded.shard_for(ShUser, 8)
    assert await cluster.pg_scalar(PG_SHARD_URLS[home8], "SELECT score FROM sh_user WHERE id=8") == 0
    assert await sharded.execute(ShUser.delete().where(ShUser.id == 9)) == 1
    assert await sharded.delete_instance(user) == 1
    remaining = {s: await pg_ids(PG_SHARD_URLS[s]) for s in sharded.shards}
    assert sorted(k for ids in remaining.values() for k in ids) == [k for k in keys if k not in (7, 9)]
    await wait_pg()
    with pytest.raises(ShUser.DoesNotExist):  # type: ignore[attr-defined]
        await sharded.get(ShUser, id=7)
    _, created = await sharded.get_or_create(ShUser, id=7, defaults={"name": "again"})
    assert (
        created
        and await cluster.pg_scalar(PG_SHARD_URLS[home], "SELECT name FROM sh_user WHERE id=7") == "again"
    )


@needs_mysql
async def test_mysql_keyed_crud_and_fan_out_on_two_shards() -> None:
    sharded = make_sharded(MY_SHARDS)
    single = Manager(MY_SINGLE, **OPTIONS)
    try:
        await sharded.drop_tables(MODELS)
        await sharded.create_tables(MODELS)
        await single.drop_tables([ShUser])
        await single.create_tables([ShUser])
        rnd = random.Random(5)
        rows = [
            {"id": k, "name": f"n{k % 7}", "score": rnd.choice([None, *range(-3, 4)])} for k in range(1, 61)
        ]
        for row in rows[:20]:
            await sharded.create(ShUser, **row)
        await sharded.insert_many(ShUser, rows[20:])
        await single.insert_many(ShUser, rows)
        expected = {
            s: sorted(r["id"] for r in rows if sharded.shard_for(ShUser, r["id"]) == s)
            for s in sharded.shards
        }
        assert all(expected.values())
        assert {s: await my_ids(MY_SHARD_URLS[s]) for s in sharded.shards} == expected

        await cluster.wait_mysql_replayed(cluster.MY_PRIMARY, cluster.MY_REPLICA)
        assert (await sharded.get(ShUser, id=33)).name == "n5"
        assert await sharded.execute(ShUser.update(name="x").where(ShUser.id == 33)) == 1
        assert (
            await cluster.my_scalar(
                MY_SHARD_URLS[sharded.shard_for(ShUser, 33)], "SELECT name FROM sh_user WHERE id=33"
            )
            == "x"
        )
        await single.execute(ShUser.update(name="x").where(ShUser.id == 33))
        await cluster.wait_mysql_replayed(cluster.MY_PRIMARY, cluster.MY_REPLICA)

        # MariaDB sorts NULL first ascending: the merge must agree with the server.
        for order in [
            (ShUser.score, ShUser.id),
            (ShUser.score.desc(), ShUser.id),
            (ShUser.name, ShUser.id.desc()),
        ]:
            query = ShUser.select().order_by(*order).limit(17).offset(5)
            got = await sharded.execute(query.tuples(), shards="all")
            with single.primary():
                want = await single.execute(query.tuples())
            assert got == want
        total = await sharded.scalar(ShUser.select(peewee.fn.SUM(ShUser.score)), shards="all")
        with single.primary():
            assert total == await single.scalar(ShUser.select(peewee.fn.SUM(ShUser.score)))
            assert (
                await sharded.count(ShUser.select(), shards="all")
                == await single.count(ShUser.select())
                == 60
            )
        await sharded.drop_tables(MODELS)
        await single.drop_tables([ShUser])
    finally:
        await sharded.close()
        await single.close()


@needs_pg
async def test_reference_tables_live_everywhere_and_home_tables_on_one_shard(
    pg_sharded: ShardedManager,
) -> None:
    sharded = pg_sharded
    france = await sharded.create(ShCountry, code="fr", name="France")
    count_sql = "SELECT count(*) FROM sh_country WHERE code='fr'"
    assert [await cluster.pg_scalar(url, count_sql) for url in PG_SHARD_URLS.values()] == [1, 1, 1]
    france.name = "République française"
    assert await sharded.save(france) == 1
    name_sql = "SELECT name FROM sh_country WHERE code='fr'"
    assert {await cluster.pg_scalar(url, name_sql) for url in PG_SHARD_URLS.values()} == {france.name}
    await wait_pg()
    before = queries_per_shard(sharded)
    assert (await sharded.get(ShCountry, code="fr")).name == france.name
    after = queries_per_shard(sharded)
    assert {s: after[s] - before[s] for s in sharded.shards} == {"s1": 1, "s2": 0, "s3": 0}  # one copy read

    # A reference write fails as a whole: the duplicate on every shard rolls all back.
    with pytest.raises(ShardError) as failed:
        await sharded.create(ShCountry, code="fr", name="again")
    assert isinstance(failed.value.__cause__, peewee.IntegrityError)
    assert await sharded.delete_instance(france) == 1
    assert [await cluster.pg_scalar(url, count_sql) for url in PG_SHARD_URLS.values()] == [0, 0, 0]

    await sharded.create(ShEvent, label="launch")
    table_sql = "SELECT to_regclass('sh_event') IS NOT NULL"
    assert [await cluster.pg_scalar(url, table_sql) for url in PG_SHARD_URLS.values()] == [False, True, False]
    assert await cluster.pg_scalar(PG_SHARD_URLS["s2"], "SELECT label FROM sh_event") == "launch"
    await wait_pg()
    assert [e.label for e in await sharded.execute(ShEvent.select(), shards="all")] == ["launch"]


# -- fan-out against one database holding every row -------------------------------------------

ORDERINGS: dict[str, Callable[[], tuple[Any, ...]]] = {
    "score,key": lambda: (ShScore.score, ShScore.key),
    "score desc,key": lambda: (ShScore.score.desc(), ShScore.key),
    "name,score desc,key desc": lambda: (ShScore.name, ShScore.score.desc(), ShScore.key.desc()),
    "score nulls first,key": lambda: (ShScore.score.asc(nulls="first"), ShScore.key),
    "score desc nulls last,name,key": lambda: (ShScore.score.desc(nulls="last"), ShScore.name, ShScore.key),
}
ROW_TYPES: dict[str, Callable[[Any], tuple[Any, ...]]] = {
    "models": lambda r: (r.key, r.score, r.name),
    "dicts": lambda r: (r["key"], r["score"], r["name"]),
    "tuples": tuple,
    "namedtuples": lambda r: (r.key, r.score, r.name),
}
score_rows = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(-4, 4)), st.text(alphabet="abAB", min_size=1, max_size=3)),
    min_size=5,
    max_size=45,
)


@pytest.fixture(scope="module")
def score_tables() -> Any:
    if not cluster.cluster_available("pg"):
        pytest.skip("pg topology not running (scripts/cluster.sh start)")

    async def run(create: bool) -> None:
        for url in [*PG_SHARD_URLS.values(), PG_SINGLE]:
            manager = Manager(url, **OPTIONS)
            try:
                await manager.drop_tables([ShScore])
                if create:
                    await manager.create_tables([ShScore])
            finally:
                await manager.close()

    asyncio.run(run(create=True))
    yield
    asyncio.run(run(create=False))


async def _with_score_data(
    data: list[tuple[int | None, str]], check: Callable[[ShardedManager, Manager], Awaitable[None]]
) -> None:
    """Fill sh_score on the three PostgreSQL shards and on the single database; run ``check``."""
    sharded = ShardedManager(PG_SHARD_URLS, **OPTIONS)
    single = Manager(PG_SINGLE, **OPTIONS)
    try:
        rows = [{"key": k, "score": score, "name": name} for k, (score, name) in enumerate(data, 1)]
        await sharded.execute(ShScore.delete(), shards="all")
        await single.execute(ShScore.delete())
        if rows:
            await sharded.insert_many(ShScore, rows)
            await single.insert_many(ShScore, rows)
        await check(sharded, single)
    finally:
        await sharded.close()
        await single.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=score_rows,
    row_type=st.sampled_from(sorted(ROW_TYPES)),
    limit=st.one_of(st.none(), st.integers(1, 20)),
    offset=st.integers(0, 25),
)
@pytest.mark.cluster
def test_fan_out_order_by_limit_offset_equals_one_database(
    score_tables: None,
    data: list[tuple[int | None, str]],
    row_type: str,
    limit: int | None,
    offset: int,
) -> None:
    async def check(sharded: ShardedManager, single: Manager) -> None:
        as_tuple = ROW_TYPES[row_type]
        for ordering in ORDERINGS.values():  # every ordering on every example: cheap, and thorough
            query = ShScore.select().order_by(*ordering()).offset(offset)
            if limit is not None:
                query = query.limit(limit)
            if row_type != "models":
                query = getattr(query, row_type)()
            got = [as_tuple(r) for r in await sharded.execute(query, shards="all")]
            want = [as_tuple(r) for r in await single.execute(query)]
            assert got == want
            assert await sharded.count(query, shards="all") == await single.count(query) == len(want)

    asyncio.run(_with_score_data(data, check))


@pytest.mark.cluster
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=score_rows, limit=st.one_of(st.none(), st.integers(1, 6)), offset=st.integers(0, 3))
def test_fan_out_aggregates_and_group_by_equal_one_database(
    score_tables: None, data: list[tuple[int | None, str]], limit: int | None, offset: int
) -> None:
    fn = peewee.fn

    async def check(sharded: ShardedManager, single: Manager) -> None:
        totals = ShScore.select(
            fn.COUNT(ShScore.key).alias("n"),
            fn.COUNT(ShScore.score).alias("scored"),
            fn.SUM(ShScore.score).alias("total"),
            fn.MIN(ShScore.score).alias("low"),
            fn.MAX(ShScore.name).alias("last_name"),
        )
        assert await sharded.execute(totals.dicts(), shards="all") == await single.execute(totals.dicts())
        total = fn.SUM(ShScore.score)
        assert await sharded.scalar(ShScore.select(total), shards="all") == await single.scalar(
            ShScore.select(total)
        )
        positive = ShScore.select().where(ShScore.score > 0)
        assert await sharded.count(positive, shards="all") == await single.count(positive)

        n = fn.COUNT(ShScore.key).alias("n")
        grouped = (
            ShScore.select(ShScore.name, n, fn.SUM(ShScore.score).alias("s"), fn.MAX(ShScore.score))
            .group_by(ShScore.name)
            .order_by(n.desc(), ShScore.name)
            .offset(offset)
        )
        if limit is not None:
            grouped = grouped.limit(limit)
        assert await sharded.execute(grouped.tuples(), shards="all") == await single.execute(grouped.tuples())
        assert await sharded.count(grouped, shards="all") == await single.count(grouped)

    asyncio.run(_with_score_data(data, check))


@needs_pg
async def test_streaming_fan_out_yields_the_materialised_rows_in_order(
    pg_sharded: ShardedManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sharded = pg_sharded
    rnd = random.Random(11)
    rows = [
        {"id": k, "name": f"n{rnd.randrange(50):02d}", "score": rnd.randrange(100)} for k in range(1, 3001)
    ]
    await sharded.insert_many(ShUser, rows)
    await wait_pg()
    for query in [
        ShUser.select().order_by(ShUser.score.desc(), ShUser.id),
        ShUser.select(ShUser.id, ShUser.name).order_by(ShUser.name, ShUser.id.desc()).dicts(),
        ShUser.select().order_by(ShUser.score, ShUser.id).offset(250).limit(1200).tuples(),
    ]:
        materialised = await sharded.execute(query, shards="all")
        async with sharded.iterate(query, shards="all", chunk_size=100) as stream:
            streamed = [row async for row in stream]
        as_tuple = (
            tuple
            if isinstance(streamed[0], tuple)
            else (lambda r: tuple(r.values()) if isinstance(r, dict) else (r.id, r.name, r.score))
        )
        assert [as_tuple(r) for r in streamed] == [as_tuple(r) for r in materialised]
    assert len(materialised) == 1200

    # Without ORDER BY the shards come one after another: same rows, shard by shard.
    async with sharded.iterate(ShUser.select(ShUser.id).tuples(), shards="all", chunk_size=500) as stream:
        ids = [row[0] async for row in stream]
    assert sorted(ids) == list(range(1, 3001))
    assert [sharded.shard_for(ShUser, i) for i in ids] == sorted(
        (sharded.shard_for(ShUser, i) for i in ids), key=sharded.shards.index
    )

    # The merge is lazy: a shard's next chunk is fetched only when its rows are used up.
    chunk, received, consumed = 64, dict.fromkeys(sharded.shards, 0), dict.fromkeys(sharded.shards, 0)
    query = ShUser.select().order_by(ShUser.score, ShUser.id)

    def counting_raw_pairs(chunks: Any, query: Any, key: Any) -> Any:
        async def counted(results: Any) -> AsyncIterator[Any]:
            async for result in results:  # a shard's raw chunk, as it arrives (id first)
                if result.rows:
                    received[sharded.shard_for(ShUser, result.rows[0][0])] += len(result.rows)
                yield result

        @asynccontextmanager
        async def counting() -> AsyncIterator[Any]:
            async with chunks as results:
                yield counted(results)

        return real_raw_pairs(counting(), query, key)

    monkeypatch.setattr(_fanout, "raw_pairs", counting_raw_pairs)
    async with sharded.iterate(query, shards="all", chunk_size=chunk) as stream:
        async for user in stream:
            consumed[sharded.shard_for(ShUser, user.id)] += 1
            assert all(0 <= received[s] - consumed[s] <= chunk for s in sharded.shards)
    assert received == consumed and sum(consumed.values()) == 3000

    # Without ORDER BY too, every shard's stream has started when the first row comes.
    received = dict.fromkeys(sharded.shards, 0)
    async with sharded.iterate(ShUser.select(), shards="all", chunk_size=chunk) as stream:
        async for _ in stream:
            assert all(received[s] > 0 for s in sharded.shards), received
            break

    # Stopping early releases every shard's connection.
    async with sharded.iterate(ShUser.select().order_by(ShUser.id), shards="all", chunk_size=50) as stream:
        async for row in stream:
            if row.id == 10:
                break
    for shard_stats in sharded.stats().values():
        assert all(entry["acquired"] == 0 for name, entry in shard_stats.items() if name != "router")


@needs_pg
async def test_a_dead_shard_is_named_and_partial_returns_the_others() -> None:
    shards = {"s1": PG_SHARD_URLS["s1"], "s2": PG_SHARD_URLS["s2"], "s3": f"{DEAD_URL}?connect_timeout=1"}
    sharded = make_sharded(shards)
    try:
        live = ["s1", "s2"]
        for shard in live:
            await sharded.shard(shard).drop_tables([ShUser])
            await sharded.shard(shard).create_tables([ShUser])
        keys = [k for k in range(1, 200) if sharded.shard_for(ShUser, k) in live][:40]
        await sharded.insert_many(ShUser, [{"id": k, "name": f"u{k}", "score": k % 5} for k in keys])
        query = ShUser.select().order_by(ShUser.score, ShUser.id)

        with pytest.raises(ShardError) as failed:
            await sharded.execute(query, shards="all")
        assert failed.value.shard == "s3" and "'s3'" in str(failed.value)
        assert failed.value.__cause__ is not None

        result = await sharded.execute(query, shards="all", partial=True)
        assert isinstance(result, FanOutResult)
        assert set(result.failures) == {"s3"} and not result.complete
        assert [u.id for u in result] == [u.id for u in sorted(result, key=lambda u: (u.score, u.id))]
        assert sorted(u.id for u in result.rows) == sorted(keys)

        async with sharded.iterate(query, shards="all", partial=True, chunk_size=7) as stream:
            streamed = [u.id async for u in stream]
        assert streamed == [u.id for u in result] and set(stream.failures) == {"s3"}
        with pytest.raises(ShardError, match="s3"):
            await sharded.count(ShUser.select(), shards="all")
        for shard in live:
            await sharded.shard(shard).drop_tables([ShUser])
    finally:
        await sharded.close()


@needs_pg
async def test_reference_reads_skip_an_unreachable_copy() -> None:
    sharded = make_sharded({"s1": f"{DEAD_URL}?connect_timeout=1", "s2": PG_SHARD_URLS["s2"]})
    try:
        live = sharded.shard("s2")
        await live.drop_tables([ShCountry])
        await live.create_tables([ShCountry])
        await live.create(ShCountry, code="it", name="Italy")
        assert (await sharded.get(ShCountry, code="it")).name == "Italy"  # s1 refused: read from s2
        with pytest.raises(ShardError, match="'s1'"):  # but a write needs every copy
            await sharded.create(ShCountry, code="es", name="Spain")
        assert await live.count(ShCountry.select()) == 1
        await live.drop_tables([ShCountry])
    finally:
        await sharded.close()


# -- routing rules ---------------------------------------------------------------------------------


@needs_pg
async def test_missing_shard_key_is_refused_naming_model_and_field(pg_sharded: ShardedManager) -> None:
    sharded = pg_sharded
    before = queries_per_shard(sharded)
    with pytest.raises(ShardKeyError, match=r"ShUser.*ShUser\.id"):
        await sharded.get(ShUser, name="nobody")
    with pytest.raises(ShardKeyError, match=r"ShUser.*ShUser\.id"):
        await sharded.execute(ShUser.update(score=1).where(ShUser.name == "nobody"))
    with pytest.raises(ShardKeyError, match=r"ShOrder.*ShOrder\.user_id"):
        await sharded.execute(ShOrder.delete().where(ShOrder.amount > 3))
    with pytest.raises(ShardKeyError, match=r"ShOrder.*ShOrder\.user_id"):
        await sharded.create(ShOrder, amount=3)
    with pytest.raises(ShardKeyError, match=r"ShUser\.id"):  # a key under OR with a non-key is no key
        await sharded.execute(ShUser.select().where((ShUser.id == 1) | (ShUser.name == "x")))
    assert queries_per_shard(sharded) == before  # refused before anything was sent
    # Asked for explicitly, the same operations fan out.
    assert await sharded.get_or_none(ShUser, name="nobody", shards="all") is None
    assert await sharded.execute(ShUser.update(score=1).where(ShUser.name == "nobody"), shards="all") == 0
    assert await sharded.execute(ShOrder.delete().where(ShOrder.amount > 3), shards=["s1", "s3"]) == 0


@needs_pg
async def test_in_list_goes_only_to_the_shards_of_its_keys(pg_sharded: ShardedManager) -> None:
    sharded = pg_sharded
    by_shard = keys_by_shard(sharded, ShUser, 60)
    await sharded.insert_many(ShUser, [{"id": k, "name": f"u{k}", "score": k} for k in range(1, 61)])
    await wait_pg()
    wanted = by_shard["s1"][:3] + by_shard["s3"][:2]
    before = queries_per_shard(sharded)
    rows = await sharded.execute(ShUser.select().where(ShUser.id << wanted).order_by(ShUser.id))
    after = queries_per_shard(sharded)
    assert [u.id for u in rows] == sorted(wanted)
    assert {s: after[s] - before[s] for s in sharded.shards} == {"s1": 1, "s2": 0, "s3": 1}

    before = after
    assert (
        await sharded.execute(ShUser.update(score=0).where(ShUser.id.in_(wanted) & (ShUser.score > 0))) == 5
    )
    assert await sharded.count(ShUser.select().where(ShUser.id << by_shard["s2"][:4])) == 4
    after = queries_per_shard(sharded)
    assert {s: after[s] - before[s] for s in sharded.shards} == {"s1": 1, "s2": 1, "s3": 1}


# -- transactions ------------------------------------------------------------------------------------


@needs_pg
async def test_a_shard_transaction_refuses_other_shards_before_sending(pg_sharded: ShardedManager) -> None:
    sharded = pg_sharded
    by_shard = keys_by_shard(sharded, ShUser)
    mine, other = by_shard["s1"][0], by_shard["s2"][0]
    outside: list[int] = []
    async with sharded.transaction(shard_key=mine) as tx:
        assert tx.shard == sharded.current_shard() == "s1"
        await sharded.create(ShUser, id=mine, name="mine")
        before = queries_per_shard(sharded)
        with pytest.raises(CrossShardError, match="'s2'"):
            await sharded.create(ShUser, id=other, name="other")
        with pytest.raises(CrossShardError):
            await sharded.get(ShUser, id=other)
        with pytest.raises(CrossShardError):
            await sharded.execute(ShUser.select(), shards="all")
        with pytest.raises(CrossShardError):
            sharded.iterate(ShUser.select(), shards="all")
        with pytest.raises(CrossShardError):
            await sharded.create(ShCountry, code="de", name="Germany")  # writes every shard
        with pytest.raises(CrossShardError):
            await sharded.create(ShEvent, label="lives on s2")
        with pytest.raises(CrossShardError):
            async with sharded.transaction(shard="s3"):
                pass
        assert queries_per_shard(sharded) == before  # nothing sent anywhere
        # Same shard: runs on the transaction's connection and sees its uncommitted row.
        assert (await sharded.get(ShUser, id=mine)).name == "mine"
        assert [c.code for c in await sharded.execute(ShCountry.select())] == []  # reference read: this shard

        async def spawned() -> None:  # a task spawned inside does not join (nor is restricted)
            outside.append(await sharded.count(ShUser.select(), shards="all"))

        await asyncio.create_task(spawned())
    assert sharded.current_shard() is None
    assert outside == [0]  # it ran outside the transaction: the row was not committed yet
    assert await pg_ids(PG_SHARD_URLS["s1"]) == [mine]
    assert [await pg_ids(PG_SHARD_URLS[s]) for s in ("s2", "s3")] == [[], []]

    # Leaving with an error rolls back; the decorator form opens one transaction per call.
    with pytest.raises(RuntimeError):
        async with sharded.transaction(shard="s2"):
            await sharded.create(ShUser, id=other, name="other")
            raise RuntimeError("changed my mind")
    assert await pg_ids(PG_SHARD_URLS["s2"]) == []

    @sharded.transaction(shard_key=other, model=ShUser)
    async def add(key: int) -> None:
        await sharded.create(ShUser, id=key, name="decorated")

    await add(other)
    assert await pg_ids(PG_SHARD_URLS["s2"]) == [other]


# -- walking and processing every row ------------------------------------------------------------


@needs_pg
async def test_walk_and_process_every_row(pg_sharded: ShardedManager) -> None:
    sharded = pg_sharded
    keys = random.Random(3).sample(range(1, 10_000), 500)
    await sharded.insert_many(ShUser, [{"id": k, "name": f"n{k % 13:02d}", "score": k % 7} for k in keys])
    await wait_pg()
    per_shard = {s: sum(1 for k in keys if sharded.shard_for(ShUser, k) == s) for s in sharded.shards}

    progress: list[tuple[str, int, int]] = []
    walked = [
        u.id async for u in sharded.walk(ShUser, batch_size=64, on_progress=lambda *a: progress.append(a))
    ]
    assert walked == sorted(keys)  # global key order, k-way merged
    last = {shard: done for shard, done, _ in progress}
    assert last == per_shard and progress[-1][2] == 500
    assert all(b[2] >= a[2] for a, b in itertools.pairwise(progress))

    by_name = [(u.name, u.id) async for u in sharded.walk(ShUser, batch_size=50, order_by=ShUser.name)]
    assert by_name == sorted(by_name) and len(by_name) == 500

    progress.clear()

    async def report(shard: str, done: int, total: int) -> None:
        progress.append((shard, done, total))

    parallel = [u.id async for u in sharded.walk(ShUser, batch_size=64, parallel=True, on_progress=report)]
    assert sorted(parallel) == sorted(keys)
    assert {shard: done for shard, done, _ in progress} == per_shard and progress[-1][2] == 500

    batches: list[int] = []

    async def handle(batch: list[ShUser]) -> None:
        await asyncio.sleep(0)
        batches.append(len(batch))

    assert await sharded.process(ShUser, handle, concurrency=3, batch_size=40) == 500
    assert sum(batches) == 500 and max(batches) <= 40

    async def fail(batch: list[ShUser]) -> None:
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        await sharded.process(ShUser, fail, batch_size=40)


# -- ids -------------------------------------------------------------------------------------------


def test_100k_ids_from_four_generators_are_unique_and_increasing() -> None:
    generators = [IdGenerator(worker_id=w) for w in (0, 1, 2, 1023)]
    made: list[list[int]] = [[] for _ in generators]
    for i in range(100_000):
        made[i % 4].append(generators[i % 4]())
    assert len({i for ids in made for i in ids}) == 100_000
    for worker, ids in zip((0, 1, 2, 1023), made, strict=True):
        assert all(a < b for a, b in itertools.pairwise(ids))
        assert {decode_id(i).worker_id for i in ids} == {worker}
        assert 0 < ids[0] < 2**63


def test_ids_stay_increasing_when_the_clock_steps_back_or_a_millisecond_overflows() -> None:
    start = 1_800_000_000_000
    now = [start]
    generator = IdGenerator(worker_id=3, clock=lambda: now[0])
    first = [generator() for _ in range(5000)]  # more than 4096 in one millisecond: borrows the next
    now[0] = start - 10_000  # NTP steps the clock back 10 s
    second = [generator() for _ in range(10)]
    now[0] = start + 5
    third = [generator() for _ in range(10)]
    ids = first + second + third
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert generator.clock_regressions == 1
    assert decode_id(third[0]).timestamp_ms == start + 5


def test_ids_are_unique_across_threads_sharing_a_generator() -> None:
    generator = IdGenerator(worker_id=9)
    results: list[list[int]] = [[] for _ in range(4)]

    def make(out: list[int]) -> None:
        out.extend(generator() for _ in range(10_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({i for out in results for i in out}) == 40_000
    assert all(all(a < b for a, b in itertools.pairwise(out)) for out in results)


# -- the example ---------------------------------------------------------------------------------


def test_example_runs_and_cleans_up(tmp_path: Path) -> None:
    lines = run_example("sharding.py", tmp_path)
    expect(
        lines,
        "reference table copies: [1, 1, 1]",
        "fan-out get: alan has id 2",
        "top scores 2-4: ada 90, donald 85, barbara 80",
        "count: 6 users; sum of orders: 210",
        "streamed in name order: ada, alan, barbara, donald, edsger, grace",
        "orders of ada after rollback: 1",
        "process: 6 users in batches, 6 distinct",
        "sharded manager closed",
    )
    assert any(line.startswith("cross-shard write refused: create would touch") for line in lines)
    assert list(tmp_path.iterdir()) == []
