"""Differential property tests: fan-out over 3 shards against one database holding every row.

Hypothesis generates the rows (NULLs and ties included) and the queries: expressions over
aggregates, casts, aliases that collide with column names, GROUP BY, DISTINCT, LIMIT/OFFSET,
joins to a reference table (copied on every shard). Each query runs through
``ShardedManager.execute(..., shards="all")`` and, as the oracle, through synchronous Peewee on
one database of the same backend. The fan-out (``execute``, and ``iterate`` for queries
without DISTINCT) must return the oracle's rows (with their types) or refuse with
``RoutingError`` exactly where the query holds something that cannot be merged. Rows are
compared as the SQL semantics allow: in order where the ORDER BY is total, in order of the
sort key with ties as multisets where it is partial, as multisets without it.

Sizes: ``EXAMPLES`` per property per backend (``AIOPD_CHAOS=full``, i.e. ``make chaos``, runs
more); the cases run are recorded in the chaos figures.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import cluster
import peewee
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from peewee import JOIN, SQL, fn

from aiopeewee_dist import RoutingError, ShardedManager
from chaos.invariants import record
from chaos.scenario import SCALE

EXAMPLES = 120 if SCALE.full else 6
QUERIES = 4  # per example: one data load serves several queries
OPTIONS: dict[str, Any] = {"health_check_interval": None, "read_your_writes": None, "acquire_timeout": 10.0}


class DfKind(peewee.Model):
    code = peewee.IntegerField(primary_key=True)
    label = peewee.CharField(max_length=8)

    class Meta:
        table_name = "df_kind"
        shard_reference = True


class DfItem(peewee.Model):
    id = peewee.IntegerField(primary_key=True)
    kind = peewee.IntegerField(null=True)
    name = peewee.CharField(max_length=8, null=True)
    score = peewee.IntegerField(null=True)
    price = peewee.DecimalField(max_digits=10, decimal_places=2, null=True)

    class Meta:
        table_name = "df_item"
        shard_key = "id"


KINDS = [{"code": 0, "label": "zero"}, {"code": 1, "label": "one"}, {"code": 2, "label": "two"}]
CAST_TEXT = {"sqlite": "text", "postgresql": "text", "mysql": "char"}
CAST_INT = {"sqlite": "integer", "postgresql": "bigint", "mysql": "signed"}


# -- the two sides --------------------------------------------------------------------------


def _with_db(url: str, database: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{database}"


def _oracle_for(url: str) -> peewee.Database:
    parts = urlsplit(url)
    options = {
        "host": parts.hostname,
        "port": parts.port,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
    }
    name = unquote(parts.path.lstrip("/"))
    if parts.scheme.startswith("mysql"):
        return peewee.MySQLDatabase(name, **options)
    return peewee.PostgresqlDatabase(name, **options)


@dataclass
class Pair:
    backend: str
    dialect: str
    loop: asyncio.AbstractEventLoop
    sharded: ShardedManager
    oracle: peewee.Database
    counts: Counter[str] = field(default_factory=Counter)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def load(self, rows: list[dict[str, Any]]) -> None:
        with self.oracle.bind_ctx([DfItem]):
            DfItem.delete().execute()
            if rows:
                DfItem.insert_many(rows).execute()

        async def fill() -> None:
            await self.sharded.execute(DfItem.delete(), shards="all")
            if rows:
                await self.sharded.insert_many(DfItem, rows)

        self.run(fill())


def _setup(pair: Pair) -> None:
    with pair.oracle.bind_ctx([DfItem, DfKind]):
        pair.oracle.drop_tables([DfItem, DfKind])
        pair.oracle.create_tables([DfItem, DfKind])
        DfKind.insert_many(KINDS).execute()

    async def create() -> None:
        await pair.sharded.drop_tables([DfItem, DfKind])
        await pair.sharded.create_tables([DfItem, DfKind])
        await pair.sharded.insert_many(DfKind, KINDS)

    pair.run(create())


def _make_pair(backend: str, tmp: Path) -> Pair:
    if backend == "sqlite":
        shards: dict[str, Any] = {f"s{i}": f"sqlite:///{tmp}/s{i}.db" for i in (1, 2, 3)}
        oracle: peewee.Database = peewee.SqliteDatabase(str(tmp / "all.db"))
    else:
        kind = "pg" if backend == "psycopg" else "mysql"
        if not cluster.cluster_available(kind):
            pytest.skip(f"{kind} topology not running (scripts/cluster.sh start)")
        primary = cluster.PG_PRIMARY if kind == "pg" else cluster.MY_PRIMARY
        if kind == "mysql":  # clusters started before shard3 was added lack it
            asyncio.run(cluster.my_rows(primary, "CREATE DATABASE IF NOT EXISTS shard3"))
        shards = {f"s{i}": _with_db(primary, f"shard{i}") for i in (1, 2, 3)}
        oracle = _oracle_for(primary)
    loop = asyncio.new_event_loop()
    sharded = ShardedManager(shards, **OPTIONS)
    return Pair(backend, sharded.dialect, loop, sharded, oracle)


@pytest.fixture(scope="module", params=["sqlite", "psycopg", "mysql"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    made = _make_pair(request.param, tmp_path_factory.mktemp("differential"))
    try:
        _setup(made)
        yield made
        with made.oracle.bind_ctx([DfItem, DfKind]):
            made.oracle.drop_tables([DfItem, DfKind])
        made.run(made.sharded.drop_tables([DfItem, DfKind]))
    finally:
        made.oracle.close()
        made.run(made.sharded.close())
        made.loop.close()


# -- generated data ---------------------------------------------------------------------------

PRICES = [Decimal("0.00"), Decimal("1.50"), Decimal("-2.25")]
ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.one_of(st.none(), st.integers(0, 3)),  # 3 has no DfKind row
            "name": st.one_of(st.none(), st.sampled_from(["a", "b", "ab", ""])),
            "score": st.one_of(st.none(), st.integers(-3, 3)),
            "price": st.one_of(
                st.none(), st.sampled_from([Decimal("0.00"), Decimal("1.50"), Decimal("-2.25")])
            ),
        }
    ),
    max_size=18,
).map(lambda rows: [{"id": i, **row} for i, row in enumerate(rows, 1)])

COLUMNS = ["id", "kind", "name", "score", "price"]
ALIASES = ["name", "score", "kind", "label", "v"]  # colliding with column names on purpose


def _field(name: str) -> Any:
    return DfKind.label if name == "label" else getattr(DfItem, name)


# -- comparing -------------------------------------------------------------------------------


def _typed(row: Any, names: list[str] | None) -> tuple[Any, ...]:
    # A dict's keys are not in select-list order (Peewee puts converted columns last).
    values = [row[name] for name in names] if isinstance(row, dict) and names else row
    return tuple((type(v).__name__, v) for v in values)


def same_rows(
    got: list[Any], want: list[Any], order: list[int] | None, total: bool, names: list[str] | None = None
) -> bool:
    """Equal as SQL allows: in order (total ORDER BY), by sort key with ties as multisets
    (partial ORDER BY), or as multisets (no ORDER BY)."""
    got_t, want_t = [_typed(r, names) for r in got], [_typed(r, names) for r in want]
    if order and total:
        return got_t == want_t
    if not order:
        return Counter(got_t) == Counter(want_t)

    def runs(rows: list[tuple[Any, ...]]) -> list[tuple[Any, Counter[Any]]]:
        def key(r: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(r[p] for p in order)

        return [(k, Counter(g)) for k, g in itertools.groupby(rows, key=key)]

    return len(got_t) == len(want_t) and runs(got_t) == runs(want_t)


@dataclass
class Case:
    query: Any
    order: list[int] | None = None  # positions of the ORDER BY columns in each row
    total: bool = False
    refused: bool = False  # the query holds something a fan-out must refuse
    names: list[str] | None = None  # the output names, for dict rows


def check(pair: Pair, prop: str, case: Case) -> None:
    try:
        got = pair.run(pair.sharded.execute(case.query, shards="all"))
    except RoutingError:
        assert case.refused, f"refused a mergeable query: {case.query}"
        pair.counts[f"{prop}.refused"] += 1
        return
    assert not case.refused, f"merged a query that must be refused: {case.query}"
    with pair.oracle.atomic():
        want = list(case.query.execute(pair.oracle))
    assert same_rows(got, want, case.order, case.total, case.names), (case.query, got, want)
    pair.counts[f"{prop}.cases"] += 1
    if case.query._distinct is None and not case.query._simple_distinct:  # iterate() refuses DISTINCT
        streamed = pair.run(_stream(pair.sharded, case.query))
        assert same_rows(streamed, want, case.order, case.total, case.names), (case.query, streamed, want)
        pair.counts[f"{prop}.streamed"] += 1


async def _stream(sharded: ShardedManager, query: Any) -> list[Any]:
    async with sharded.iterate(query, shards="all", chunk_size=3) as rows:
        return [row async for row in rows]


# -- generated queries ------------------------------------------------------------------------


def _orderings(
    data: st.DataObject, items: list[Any], names: list[str], positions: list[int], dialect: str
) -> tuple[list[Any], list[int]]:
    """ORDER BY terms for ``positions`` (each by its node or its name), and the columns the
    server sorts by: a name, or an Alias (which Peewee writes as a bare name), means the first
    item with that alias, else a column of that name (SQLite lets two items share an alias)."""
    terms, resolved = [], []
    for p in positions:
        ref = data.draw(st.sampled_from([items[p], SQL(names[p])]), label="order by")
        descending = data.draw(st.booleans(), label="desc")
        # MySQL emulates NULLS FIRST/LAST with a CASE over the name, which resolves a column
        # before an alias there: outside what a fan-out promises (docs/sharding.md).
        nulls = None if dialect == "mysql" else data.draw(st.sampled_from([None, "first", "last"]))
        terms.append(ref.desc(nulls=nulls) if descending else ref.asc(nulls=nulls))
        by_name = isinstance(ref, (SQL, peewee.Alias))
        aliased = [
            i for i, item in enumerate(items) if isinstance(item, peewee.Alias) and names[i] == names[p]
        ]
        resolved.append(aliased[0] if by_name and aliased else p)
    return terms, resolved


def _select_items(
    data: st.DataObject, available: list[str], dialect: str
) -> tuple[list[Any], list[str], list[str]]:
    """``(items, output names, source columns)``, aliases colliding with column names. Two
    output columns may share a name (``SELECT name, score AS name``) on SQLite only: there
    ``ORDER BY name`` takes the alias, PostgreSQL and MariaDB call it ambiguous."""
    items: list[Any] = []
    names: list[str] = []
    sources: list[str] = []
    chosen = data.draw(st.lists(st.sampled_from(available), min_size=1, max_size=4, unique=True))
    for column in chosen:
        alias = data.draw(st.one_of(st.none(), st.sampled_from(ALIASES)), label="alias")
        if alias in names and dialect != "sqlite":
            alias = None
        out = alias or column
        if out in names and (dialect != "sqlite" or alias is None):
            continue
        items.append(_field(column).alias(alias) if alias else _field(column))
        names.append(out)
        sources.append(column)
    return items, names, sources


WHERES: list[Callable[[], Any]] = [
    lambda: None,
    lambda: DfItem.score > 0,
    lambda: DfItem.name == "a",
    lambda: DfItem.kind.is_null(),
    lambda: DfItem.price < 1,
]


def _base(data: st.DataObject, items: list[Any], join: Any) -> Any:
    query = DfItem.select(*items)
    if join is not None:
        query = query.join(DfKind, join, on=(DfItem.kind == DfKind.code))
    where = data.draw(st.sampled_from(WHERES))()
    return query if where is None else query.where(where)


def _paged(data: st.DataObject, query: Any) -> tuple[Any, bool]:
    limit = data.draw(st.one_of(st.none(), st.integers(1, 6)), label="limit")
    offset = data.draw(st.one_of(st.none(), st.integers(0, 4)), label="offset")
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return query, limit is not None or bool(offset)


def _dicts(data: st.DataObject, names: list[str]) -> bool:
    """Whether to ask for dict rows (only when every output name is distinct)."""
    return len(set(names)) == len(names) and data.draw(st.booleans(), label="dicts")


def rows_case(data: st.DataObject, dialect: str) -> Case:
    join = data.draw(st.sampled_from([None, JOIN.INNER, JOIN.LEFT_OUTER]), label="join")
    items, names, sources = _select_items(data, COLUMNS + (["label"] if join is not None else []), dialect)
    if data.draw(st.booleans(), label="expression"):
        items.append((DfItem.score * 2).alias("dbl"))
        names.append("dbl")
        sources.append("dbl")
    positions = data.draw(st.lists(st.integers(0, len(items) - 1), max_size=3, unique=True), label="order")
    distinct = data.draw(st.booleans(), label="distinct")
    query, paged = _paged(data, _base(data, items, join))
    if paged and "id" not in sources:  # a page is only defined by a total order
        items.append(DfItem.id.alias("row_id"))
        names.append("row_id")
        sources.append("id")
    query = query.select(*items)
    if distinct:
        query = query.distinct()
    terms, positions = _orderings(data, items, names, positions, dialect)
    if paged and sources.index("id") not in positions:
        # The tie-breaker by the field itself: Peewee writes it qualified, never as a name.
        terms.append(DfItem.id.asc())
        positions.append(sources.index("id"))
    if terms:
        query = query.order_by(*terms)
    total = "id" in sources and sources.index("id") in positions
    total = total or (distinct and set(positions) == set(range(len(items))))
    if _dicts(data, names):
        return Case(query.dicts(), order=positions or None, total=total, names=names)
    return Case(query.tuples(), order=positions or None, total=total)


def _aggregates(dialect: str) -> list[tuple[Callable[[], Any], bool]]:
    """``(make the item, must be refused)``: expressions over aggregates, casts, refusals."""
    s, p = DfItem.score, DfItem.price
    concat = fn.STRING_AGG(DfItem.name, ",") if dialect == "postgresql" else fn.GROUP_CONCAT(DfItem.name)
    menu: list[tuple[Callable[[], Any], bool]] = [
        (lambda: fn.COUNT(SQL("*")), False),
        (lambda: fn.COUNT(s), False),
        (lambda: fn.SUM(s), False),
        (lambda: fn.MIN(s), False),
        (lambda: fn.MAX(DfItem.name), False),
        (lambda: fn.SUM(p), False),
        (lambda: fn.COALESCE(fn.SUM(s), 0), False),
        (lambda: fn.SUM(s) + 0, False),
        (lambda: fn.MAX(s) - fn.MIN(s), False),
        (lambda: fn.SUM(s) * 2 + fn.COUNT(DfItem.id), False),
        (lambda: fn.COALESCE(fn.MAX(p), 0), False),
        (lambda: fn.COUNT(DfItem.id).cast(CAST_TEXT[dialect]), False),
        (lambda: fn.MAX(s).cast(CAST_TEXT[dialect]), False),
        (lambda: fn.SUM(s).cast(CAST_INT[dialect]), False),
        (lambda: fn.AVG(s), True),
        (lambda: fn.SUM(s) / fn.COUNT(s), True),
        (lambda: concat, True),
    ]
    if dialect == "sqlite":
        menu.append((lambda: fn.TOTAL(s), False))
    return menu


def _draw_aggregates(data: st.DataObject, dialect: str, names: list[str]) -> tuple[list[Any], bool]:
    items: list[Any] = []
    refused = False
    menu = _aggregates(dialect)
    for index in data.draw(st.lists(st.integers(0, len(menu) - 1), min_size=1, max_size=3), label="aggs"):
        make, must_refuse = menu[index]
        name = data.draw(st.sampled_from([*ALIASES, "n", "m", "total"]).filter(lambda a: a not in names))
        items.append(make().alias(name))
        names.append(name)
        refused = refused or must_refuse
    return items, refused


def aggregate_case(data: st.DataObject, dialect: str) -> Case:
    join = data.draw(st.sampled_from([None, JOIN.INNER]), label="join")
    items, refused = _draw_aggregates(data, dialect, [])
    query, _ = _paged(data, _base(data, items, join))
    return Case(query.tuples(), refused=refused)


def grouped_case(data: st.DataObject, dialect: str) -> Case:
    join = data.draw(st.sampled_from([None, JOIN.INNER, JOIN.LEFT_OUTER]), label="join")
    keys = ["kind", "name"] + (["label"] if join is not None else [])
    group_items, names, sources = _select_items(data, keys, dialect)
    aggregates, refused = _draw_aggregates(data, dialect, names)
    items = group_items + aggregates
    query = _base(data, items, join).group_by(*(_field(c) for c in sources))
    positions = data.draw(st.lists(st.integers(0, len(items) - 1), max_size=3, unique=True), label="order")
    query, paged = _paged(data, query)
    terms, positions = _orderings(data, items, names, positions, dialect)
    if paged:  # a page is only defined by a total order: every group column, by its field
        for p in range(len(group_items)):
            if p not in positions:
                terms.append(_field(sources[p]).asc())
                positions.append(p)
    if terms:
        query = query.order_by(*terms)
    total = set(range(len(group_items))) <= set(positions)
    if _dicts(data, names):
        return Case(query.dicts(), positions or None, total, refused, names)
    return Case(query.tuples(), positions or None, total, refused)


# -- the properties ------------------------------------------------------------------------------


def _property(pair: Pair, prop: str, build: Callable[[st.DataObject, str], Case]) -> None:
    # No shrinking: each example loads rows on four databases, and shrinking one failure took
    # longer than the per-test timeout; the failing example is printed as drawn.
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(rows=ROWS, data=st.data())
    def compare(rows: list[dict[str, Any]], data: st.DataObject) -> None:
        # Every query is drawn before any runs, so that a failure does not change what is drawn.
        cases = [build(data, pair.dialect) for _ in range(QUERIES)]
        pair.load(rows)
        for case in cases:
            check(pair, prop, case)

    compare()
    record(
        "fan-out differential",
        pair.backend,
        property=prop,
        cases=pair.counts[f"{prop}.cases"],
        refused=pair.counts[f"{prop}.refused"],
        streamed=pair.counts[f"{prop}.streamed"],
        discrepancies=0,  # any discrepancy fails the property above
    )


def test_rows_queries_equal_one_database(pair: Pair) -> None:
    _property(pair, "rows", rows_case)


def test_aggregate_queries_equal_one_database(pair: Pair) -> None:
    _property(pair, "aggregates", aggregate_case)


def test_grouped_queries_equal_one_database(pair: Pair) -> None:
    _property(pair, "grouped", grouped_case)
