"""ShardedManager's less travelled paths on fake shards: raw SQL, plain inserts, reference and
home tables through every entry point, contexts, configuration errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import peewee
import pytest

from aiopeewee_dist import (
    ConfigurationError,
    Manager,
    Ranges,
    ReadOnlyError,
    RoutingError,
    ShardedManager,
    ShardKeyError,
)
from aiopeewee_dist.testing import FakeServer
from core.fakes import QUIET
from core.test_sharding_core import MODELS, Country, Event, Order, User, make_sharded


@pytest.fixture
def servers() -> Iterator[dict[str, FakeServer]]:
    made = {f"s{i}": FakeServer() for i in (1, 2)}
    yield made
    for server in made.values():
        server.close()


@pytest.fixture
async def sharded(servers: dict[str, FakeServer]) -> AsyncIterator[ShardedManager]:
    async with make_sharded({name: s.url for name, s in servers.items()}) as manager:
        await manager.create_tables(MODELS)
        yield manager
        await manager.drop_tables(MODELS)


def key_on(sharded: ShardedManager, shard: str) -> int:
    return next(k for k in range(1, 1000) if sharded.shard_for(User, k) == shard)


async def test_raw_sql_on_one_shard_every_shard_and_reference_tables(sharded: ShardedManager) -> None:
    k1, k2 = key_on(sharded, "s1"), key_on(sharded, "s2")
    await sharded.insert_many(User, [(k1, "a", 1), (k2, "b", 2)], fields=[User.id, User.name, User.score])
    one = await sharded.execute(User.raw("SELECT id FROM core_sh_user"), shard_key=k1)
    assert [u.id for u in one] == [k1]
    every = await sharded.execute(User.raw("SELECT id FROM core_sh_user"), shards="all")
    assert sorted(u.id for u in every) == sorted([k1, k2])
    assert await sharded.execute(User.raw("UPDATE core_sh_user SET score = 0"), shards="all") == []
    await sharded.execute(Country.raw("INSERT INTO core_sh_country (code, name) VALUES ('nl', 'NL')"))
    assert [c.code for c in await sharded.execute(Country.raw("SELECT code FROM core_sh_country"))] == ["nl"]
    with pytest.raises(ValueError, match="partial"):
        await sharded.execute(User.delete(), shards="all", partial=True)


async def test_plain_inserts_default_keys_and_home_tables(sharded: ShardedManager) -> None:
    k1 = key_on(sharded, "s1")
    await sharded.execute(User.insert(id=k1, name="x"))
    order_id = await sharded.execute(Order.insert(user_id=k1, amount=2))
    assert order_id and sharded.shard_for(Order, k1) == "s1"
    await sharded.execute(Order.insert(user_id=k1, amount=3), shard_key=k1)  # the key given apart
    with pytest.raises(ShardKeyError, match="in every row"):
        await sharded.execute(Order.insert(amount=3))
    rows = [{"user_id": k, "amount": 1} for k in range(1, 30)]
    with pytest.raises(ShardKeyError, match="insert_many"):
        await sharded.execute(Order.insert_many(rows))
    assert await sharded.insert_many(Order, rows) == 29
    assert await sharded.count(Order.select(), shards="all") == 31
    with pytest.raises(ShardKeyError, match="has no"):
        await sharded.insert_many(Order, [{"amount": 1}])
    await sharded.insert_many(Event, [{"label": "a"}, {"label": "b"}])
    await sharded.execute(Event.insert(label="c"))
    assert await sharded.count(Event.select()) == 3
    await sharded.insert_many(Country, [{"code": "be", "name": "BE"}])
    assert await sharded.count(Country.select()) == 1


async def test_reference_reads_iterate_and_get_or_create(sharded: ShardedManager) -> None:
    country, created = await sharded.get_or_create(Country, code="pt", defaults={"name": "Portugal"})
    assert created and country.name == "Portugal"
    assert (await sharded.get_or_create(Country, code="pt"))[1] is False
    async with sharded.iterate(Country.select()) as stream:
        assert [c.code async for c in stream] == ["pt"]
    assert [c.code for c in await sharded.execute(Country.select(), partial=True)] == ["pt"]
    with pytest.raises(ShardKeyError, match="get_or_create"):
        await sharded.get_or_create(User, name="nobody")
    k2 = key_on(sharded, "s2")
    await sharded.create(User, id=k2, name="two", score=2)
    async with sharded.iterate(User.select(), shard_key=k2) as stream:
        assert [u.id async for u in stream] == [k2]
    async with sharded.iterate(User.select(peewee.fn.COUNT(User.id)).tuples(), shards="all") as stream:
        assert [row async for row in stream] == [(1,)]
    with pytest.raises(RoutingError, match="DISTINCT"):
        sharded.iterate(User.select(User.name).distinct().order_by(User.name), shards="all")
    with pytest.raises(ConfigurationError, match="chunk_size"):
        sharded.iterate(User.select(), chunk_size=0)


async def test_contexts_stats_and_shard_lookup(sharded: ShardedManager) -> None:
    with sharded.read_only(), pytest.raises(ReadOnlyError):
        await sharded.create(User, id=1, name="x")
    with sharded.primary():
        assert await sharded.count(User.select(), shards="all") == 0
    assert set(sharded.stats()) == {"s1", "s2"} and set(sharded.managers) == {"s1", "s2"}
    assert isinstance(sharded.shard("s1"), Manager)
    with pytest.raises(RoutingError, match="known: 's1', 's2'"):
        sharded.shard("s9")
    assert "s1" in repr(sharded)


def test_configuration_errors_name_the_shard_and_the_problem(servers: dict[str, FakeServer]) -> None:
    url = servers["s1"].url
    with pytest.raises(ConfigurationError, match="'primary' URL is missing"):
        ShardedManager({"s1": {"replicas": [url]}}, **QUIET)
    with pytest.raises(ConfigurationError, match="must be a list"):
        ShardedManager({"s1": {"primary": url, "replicas": url}}, **QUIET)
    with pytest.raises(ConfigurationError, match="expected a URL"):
        ShardedManager({"s1": 42}, **QUIET)  # type: ignore[dict-item]
    named = ShardedManager(
        {"s1": {"primary": f"{url}?name=main", "replicas": {"r": servers["s2"].url}}, "s2": Manager(url)},
        **QUIET,
    )
    assert [n.name for n in named.shard("s1").nodes] == ["main", "r"]
    with pytest.raises(ConfigurationError, match="exactly one"):
        named.register(User, key="id", reference=True)
    with pytest.raises(ConfigurationError, match="strategy= only"):
        named.register(Country, reference=True, strategy="hash")
    with pytest.raises(ConfigurationError, match="no field"):
        named.register(User, key="nope")
    with pytest.raises(ConfigurationError, match="peewee model"):
        named.register(int, key="x")  # type: ignore[type-var]
    with pytest.raises(ConfigurationError, match="unknown shards"):
        named.register(User, key="id", strategy=Ranges([(10, "s1"), (None, "s7")]))
    with pytest.raises(ConfigurationError, match="shard strategy"):
        named.register(User, key="id", strategy="modulo")  # type: ignore[arg-type]
    named.register(User, key="id", strategy=Ranges([(10, "s1"), (None, "s2")]))
    assert named.shard_for(User, 3) == "s1" and named.shard_for(User, 30) == "s2"
    named.register(User, key="id", strategy=lambda key: "s2" if key > 1 else "s0")
    assert named.shard_for(User, 3) == "s2"
    with pytest.raises(ShardKeyError, match="not a shard"):
        named.shard_for(User, 1)
