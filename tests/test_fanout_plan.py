"""Fan-out planning and merging as pure functions (no database), and the regressions of
issue 11 on SQLite shards against one SQLite database holding every row (no server).

``plan_select`` turns a query into a plan; ``merge_rows`` turns a plan and the shards' raw
rows into the rows of the whole. The rows given to ``merge_rows`` here are what each shard
would return for ``shard_query(query, plan)``: the query's columns, then the hidden parts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import peewee
import pytest
from peewee import SQL, fn

from aiopeewee_dist import AioPeeweeDistError, ConfigurationError, RoutingError, ShardedManager, ShardError
from aiopeewee_dist.sharding._merge import merge_rows
from aiopeewee_dist.sharding._plan import plan_select, shard_query
from aiopeewee_dist.sharding._stream import merge_sorted


class Pt(peewee.Model):
    id = peewee.IntegerField(primary_key=True)
    x = peewee.IntegerField(null=True)
    name = peewee.CharField(null=True)

    class Meta:
        table_name = "pt_item"
        shard_key = "id"


# -- planning ----------------------------------------------------------------------------------


def test_bare_aggregates_are_their_own_parts() -> None:
    plan = plan_select(Pt.select(fn.COUNT(Pt.id), fn.SUM(Pt.x).alias("s"), fn.MAX(Pt.name)), "postgresql")
    assert plan.kind == "aggregate"
    assert plan.aggregates == {0: "COUNT", 1: "SUM", 2: "MAX"}
    assert plan.extra == [] and plan.computed == {}


def test_expressions_over_aggregates_carry_hidden_parts() -> None:
    query = Pt.select(fn.SUM(Pt.x), (fn.MAX(Pt.x) - fn.MIN(Pt.x)).alias("spread"), fn.SUM(Pt.x) + 0)
    plan = plan_select(query, "sqlite")
    assert plan.kind == "aggregate" and plan.width == 3
    assert set(plan.computed) == {1, 2}
    # SUM(x) is selected already: the expression reuses column 0; MAX and MIN are hidden.
    assert plan.aggregates == {0: "SUM", 3: "MAX", 4: "MIN"}
    shard = shard_query(query, plan)
    assert len(shard._returning) == 5 and shard._limit is None


def test_refused_before_anything_is_sent() -> None:
    refused = {
        "AVG": Pt.select(fn.AVG(Pt.x)),
        "GROUP_CONCAT": Pt.select(fn.GROUP_CONCAT(Pt.x)),
        "STRING_AGG": Pt.select(fn.COALESCE(fn.STRING_AGG(Pt.name, ","), "")),
        "cannot be computed": Pt.select(fn.SUM(Pt.x) / fn.COUNT(Pt.x)),
        "ROUND": Pt.select(fn.ROUND(fn.SUM(Pt.x))),
        "neither grouped": Pt.select(Pt.name, fn.COUNT(Pt.id)),
        "DISTINCT": Pt.select(fn.SUM(Pt.x.distinct())),
        "HAVING": Pt.select(Pt.name, fn.COUNT(Pt.id)).group_by(Pt.name).having(fn.COUNT(Pt.id) > 1),
    }
    for message, query in refused.items():
        with pytest.raises(RoutingError, match=message):
            plan_select(query, "sqlite")
    # A column mixed into an aggregate expression is refused naming the whole expression.
    with pytest.raises(RoutingError, match=r"SUM.*\+.*cannot be computed"):
        plan_select(Pt.select(fn.SUM(Pt.x) + Pt.x), "sqlite")


def test_order_by_a_name_takes_the_alias_before_a_column_of_that_name() -> None:
    query = Pt.select(Pt.name, Pt.x.alias("name"), Pt.id).order_by(SQL("name"), Pt.id)
    assert [c.position for c in plan_select(query, "sqlite").order] == [1, 2]
    query = Pt.select(Pt.name, Pt.x).order_by(SQL("name"))
    assert [c.position for c in plan_select(query, "sqlite").order] == [0]


def test_a_node_that_does_not_compile_is_not_reported_as_a_missing_column() -> None:
    class Broken(peewee.ColumnBase):
        def __sql__(self, ctx: Any) -> Any:
            raise ValueError("this node cannot compile")

    with pytest.raises(ValueError, match="cannot compile"):
        plan_select(Pt.select(Pt.id).order_by(Broken()), "sqlite")


# -- merging -------------------------------------------------------------------------------


def test_coalesce_of_sum_over_shards_without_values_is_the_constant() -> None:
    query = Pt.select(fn.COALESCE(fn.SUM(Pt.x), 0))
    plan = plan_select(query, "mysql")
    # Each shard: the expression on its own rows, then the hidden SUM(x).
    assert merge_rows(plan, [[(Decimal(0), None)], [(Decimal(0), None)]]) == [(Decimal(0),)]
    assert merge_rows(plan, [[(Decimal(4), Decimal(4))], [(Decimal(0), None)]]) == [(Decimal(4),)]


def test_max_minus_min_is_computed_from_the_merged_extremes() -> None:
    plan = plan_select(Pt.select(fn.MAX(Pt.x) - fn.MIN(Pt.x)), "postgresql")
    rows = merge_rows(plan, [[(0, 5, 5)], [(3, 9, 6)], [(None, None, None)]])
    assert rows == [(4,)]


def test_casts_are_applied_after_merging_the_aggregate() -> None:
    plan = plan_select(Pt.select(fn.MAX(Pt.x).cast("text"), fn.COUNT(Pt.id).cast("text")), "postgresql")
    # Per shard the text values would merge wrongly ("9" > "10"); the hidden parts do not.
    rows = merge_rows(plan, [[("9", "2", 9, 2)], [("10", "8", 10, 8)]])
    assert rows == [("10", "10")]
    refused = plan_select(Pt.select(fn.SUM(Pt.x).cast("real")), "postgresql")
    with pytest.raises(RoutingError, match="CAST"):
        merge_rows(refused, [[(1.5, 1.5)], [(2.0, 2.0)]])


def test_groups_merge_and_then_order_and_page() -> None:
    n = fn.COUNT(Pt.id).alias("n")
    query = Pt.select(Pt.name, n, fn.SUM(Pt.x) * 2).group_by(Pt.name).order_by(n.desc(), Pt.name).offset(1)
    plan = plan_select(query, "sqlite")
    shard1 = [("a", 2, 10, 5), ("b", 1, None, None)]
    shard2 = [("b", 3, 4, 2), ("c", 1, 2, 1)]
    assert merge_rows(plan, [shard1, shard2]) == [("a", 2, 10), ("c", 1, 2)]


def test_rows_merge_in_order_with_distinct_and_limit() -> None:
    query = Pt.select(Pt.x, Pt.name).distinct().order_by(Pt.x.desc(), Pt.name).limit(3)
    plan = plan_select(query, "postgresql")  # NULL is largest: first when descending
    rows = merge_rows(plan, [[(None, "a"), (3, "a"), (1, "b")], [(None, "a"), (2, "c")]])
    assert rows == [(None, "a"), (3, "a"), (2, "c")]


async def test_a_stream_that_fails_to_close_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Stubborn:
        def __init__(self) -> None:
            self.items: Iterator[tuple[int, str]] = iter([(1, "a"), (2, "b")])

        async def __anext__(self) -> tuple[int, str]:
            try:
                return next(self.items)
            except StopIteration:
                raise StopAsyncIteration from None

        async def aclose(self) -> None:
            raise OSError("socket already gone")

    async def plain() -> AsyncGenerator[tuple[int, str], None]:
        yield (0, "z")

    with caplog.at_level(logging.WARNING, logger="aiopeewee_dist.sharding"):
        merged = merge_sorted([("s1", Stubborn()), ("s2", plain())], failures={}, partial=False)  # type: ignore[list-item]
        assert [item async for item in merged] == ["z", "a", "b"]
    assert any("s1" in r.getMessage() and r.exc_info for r in caplog.records)


# -- the regressions of issue 11, on SQLite shards against one SQLite database ----------------


@pytest.fixture
async def sqlite_pair(tmp_path: Path) -> Any:
    sharded = ShardedManager(
        {f"s{i}": f"sqlite:///{tmp_path}/s{i}.db" for i in (1, 2, 3)}, health_check_interval=None
    )
    oracle = peewee.SqliteDatabase(str(tmp_path / "all.db"))
    rows = [{"id": i, "x": (i * 7) % 11 if i % 4 else None, "name": "abc"[i % 3]} for i in range(1, 30)]
    with oracle.bind_ctx([Pt]):
        oracle.create_tables([Pt])
        Pt.insert_many(rows).execute()
    try:
        await sharded.create_tables([Pt])
        await sharded.insert_many(Pt, rows)
        yield sharded, oracle
    finally:
        await sharded.close()
        oracle.close()


def _typed(rows: list[Any]) -> list[Any]:
    return [tuple((type(v).__name__, v) for v in row) for row in rows]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Pt.select(fn.COALESCE(fn.SUM(Pt.x), 0)),
        lambda: Pt.select(fn.COALESCE(fn.SUM(Pt.x), 0)).where(Pt.x.is_null()),
        lambda: Pt.select(fn.SUM(Pt.x) + 0),
        lambda: Pt.select(fn.MAX(Pt.x) - fn.MIN(Pt.x)),
        lambda: Pt.select(fn.TOTAL(Pt.x)),
        lambda: Pt.select(fn.MAX(Pt.x).cast("text")),
        lambda: Pt.select(fn.SUM(Pt.x).cast("text")),
        lambda: Pt.select(fn.COUNT(Pt.x).cast("text")),
        lambda: Pt.select(Pt.name, (fn.MAX(Pt.x) - fn.MIN(Pt.x)).alias("spread")).group_by(Pt.name),
        lambda: Pt.select(Pt.name, Pt.x.alias("name"), Pt.id).order_by(SQL("name"), Pt.id),
        lambda: Pt.select(fn.COUNT(Pt.id).alias("name"), Pt.name).group_by(Pt.name).order_by(SQL("name")),
    ],
    ids=[
        "coalesce-sum",
        "coalesce-sum-no-values",
        "sum-plus-0",
        "max-minus-min",
        "total",
        "cast-max",
        "cast-sum",
        "cast-count",
        "grouped-spread",
        "order-by-alias-named-like-a-column",
        "order-by-alias-of-an-aggregate",
    ],
)
async def test_fan_out_equals_one_database(sqlite_pair: Any, make: Any) -> None:
    sharded, oracle = sqlite_pair
    query = make().tuples()
    want = list(query.execute(oracle))
    got = await sharded.execute(query, shards="all")
    if query._order_by is None:
        got, want = sorted(got), sorted(want)
    assert _typed(got) == _typed(want)


async def test_group_concat_is_refused_not_returned_per_shard(sqlite_pair: Any) -> None:
    sharded, _ = sqlite_pair
    with pytest.raises(RoutingError, match="GROUP_CONCAT"):
        await sharded.execute(Pt.select(fn.GROUP_CONCAT(Pt.x)), shards="all")


async def test_get_drops_the_query_offset_as_peewee_does(sqlite_pair: Any) -> None:
    sharded, oracle = sqlite_pair
    query = Pt.select().order_by(Pt.id).offset(5)
    want = query.get(oracle).id  # Peewee: paginate(1, 1)
    assert (await sharded.get(query, shards="all")).id == want == 1
    assert (await sharded.get_or_none(query, shards="all")).id == want
    routed = Pt.select().where(Pt.id == 7).offset(3)
    assert (await sharded.get(routed)).id == 7


async def test_a_write_with_partial_raises_the_librarys_error(sqlite_pair: Any) -> None:
    sharded, _ = sqlite_pair
    with pytest.raises(ConfigurationError, match="partial=True is for reads") as refused:
        await sharded.execute(Pt.update(x=1), shards="all", partial=True)
    assert isinstance(refused.value, AioPeeweeDistError)


async def test_errors_are_wrapped_alike_on_one_shard_and_on_a_fan_out(sqlite_pair: Any) -> None:
    sharded, _ = sqlite_pair
    bad = Pt.select(fn.NO_SUCH_FUNCTION(Pt.x))
    for shards in (["s1"], "all"):
        with pytest.raises(ShardError) as failed:
            await sharded.execute(bad, shards=shards)
        assert isinstance(failed.value.__cause__, peewee.OperationalError)
    with pytest.raises(peewee.OperationalError):  # routed by key: the shard's own error
        await sharded.execute(bad.where(Pt.id == 3))


async def test_sharded_integer_options_are_bounded_both_ways(tmp_path: Path) -> None:
    shards = {f"s{i}": f"sqlite:///{tmp_path}/s{i}.db" for i in (1, 2)}
    for bad in (0, 1025, True, "8"):
        with pytest.raises(ConfigurationError, match="fanout_concurrency"):
            ShardedManager(shards, fanout_concurrency=bad, health_check_interval=None)
    sharded = ShardedManager(shards, fanout_concurrency=1024, health_check_interval=None)
    with pytest.raises(ConfigurationError, match="chunk_size"):
        sharded.iterate(Pt.select(), chunk_size=10**7, shards="all")
    with pytest.raises(ConfigurationError, match="batch_size"):
        sharded.walk(Pt, batch_size=0)
    with pytest.raises(ConfigurationError, match="concurrency"):
        await sharded.process(Pt, lambda batch: asyncio.sleep(0), concurrency=5000)
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 (nothing was opened)
