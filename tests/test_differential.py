"""The manager returns exactly what synchronous Peewee returns, for the same query on the same data.

The oracle is plain synchronous Peewee (sqlite3, psycopg2, pymysql) on the same server and table.
Hypothesis draws query shapes that the fast paths take (templates for ``get``, cached shapes for
``execute``) and near misses that they must hand to Peewee (expressions, IN, IS NULL, DISTINCT,
joins, row types); each query runs on a manager whose caches stay warm across examples, and right
after it a twin of the same shape with other values, so cached statements are reused with new
parameters. Results are compared whole: the model class, ``__data__`` (order included) and
``_dirty`` of instances, dicts, tuples and namedtuples, in order where the query's order is total.

``make test`` runs a few dozen examples per backend; ``make chaos`` (``AIOPD_CHAOS=full``) runs
hundreds. ``AIOPD_DIFF_REPORT=path`` appends the number of cases each property ran to ``path``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import peewee
import pytest
from conftest import Topology
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiopeewee_dist import Manager

FULL = os.environ.get("AIOPD_CHAOS") == "full"
# Each property runs dozens (hundreds at full size) of round trips: give a loaded machine room.
pytestmark = pytest.mark.timeout(1800 if FULL else 600)
on_server = settings(
    max_examples=400 if FULL else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Kind(peewee.Model):
    label = peewee.CharField(max_length=16)

    class Meta:
        table_name = "t_diff_kind"


class Item(peewee.Model):
    name = peewee.CharField(max_length=16, null=True)
    n = peewee.IntegerField(null=True)
    price = peewee.DecimalField(max_digits=8, decimal_places=2, null=True)
    flag = peewee.BooleanField(default=False)
    kind = peewee.ForeignKeyField(Kind, null=True, backref="items")

    class Meta:
        table_name = "t_diff_item"


NAMES = ["a", "b", "ab", "ba", "", None]
NUMBERS = [-2, -1, 0, 1, 2, 3, None]
PRICES = [Decimal("0.00"), Decimal("1.50"), Decimal("2.25"), Decimal("-3.10"), None]
ROWS = 40
FIELDS = {"id": Item.id, "name": Item.name, "n": Item.n, "price": Item.price, "flag": Item.flag}
DOMAIN: dict[str, list[Any]] = {
    "id": list(range(0, ROWS + 3)),
    "name": NAMES,
    "n": NUMBERS,
    "price": PRICES,
    "flag": [True, False],
}


def oracle_database(topology: Topology) -> peewee.Database:
    """Synchronous Peewee on the topology's primary, through the classic drivers."""
    parts = urlsplit(topology.primary)
    if topology.kind == "sqlite":
        return peewee.SqliteDatabase(parts.path[1:])
    options = {
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "host": parts.hostname,
        "port": parts.port,
    }
    name = parts.path.lstrip("/")
    if topology.kind == "pg":
        return peewee.PostgresqlDatabase(name, **options)
    return peewee.MySQLDatabase(name, **options)


@dataclass
class Bench:
    """The manager under test, the oracle and the case counts of one backend."""

    manager: Manager
    oracle: peewee.Database
    topology: Topology
    cases: dict[str, int]

    def expected(self, run: Any) -> Any:
        """``run()`` on synchronous Peewee, with the models bound to the oracle for the call."""
        with self.oracle.bind_ctx([Kind, Item]):
            try:
                return ("value", run())
            except peewee.DoesNotExist as exc:
                return not_found(exc)
            except peewee.DatabaseError as exc:
                self.oracle.rollback()  # PostgreSQL refuses more statements in a failed transaction
                return ("error", type(exc).__name__)

    def count(self, name: str) -> None:
        self.cases[name] = self.cases.get(name, 0) + 1


@pytest.fixture
async def bench(topology: Topology) -> AsyncIterator[Bench]:
    manager = topology.manager(acquire_timeout=10.0)
    oracle = oracle_database(topology)
    rnd = random.Random(20261202)
    await manager.drop_tables([Item, Kind])
    await manager.create_tables([Kind, Item])
    kinds = [await manager.create(Kind, label=label) for label in ("x", "y", "z")]
    for _ in range(ROWS):
        await manager.create(
            Item,
            name=rnd.choice(NAMES),
            n=rnd.choice(NUMBERS),
            price=rnd.choice(PRICES),
            flag=rnd.random() < 0.5,
            kind=rnd.choice([*kinds, None]),
        )
    await topology.wait_replicated()
    state = Bench(manager, oracle, topology, {})
    try:
        yield state
    finally:
        oracle.close()
        await manager.drop_tables([Item, Kind])
        await manager.close()
        report = os.environ.get("AIOPD_DIFF_REPORT")
        if report and state.cases:
            line = json.dumps({"backend": topology.backend, "cases": state.cases}) + "\n"
            await asyncio.to_thread(_append, Path(report), line)


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(line)


# -- query shapes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any

    def build(self) -> Any:
        f = FIELDS[self.field]
        v = self.value
        ops = {
            "==": lambda: f == v,
            "!=": lambda: f != v,
            "<": lambda: f < v,
            "<=": lambda: f <= v,
            ">": lambda: f > v,
            ">=": lambda: f >= v,
            "is_null": lambda: f.is_null(bool(v)),
            "in": lambda: f.in_(v),
            "not": lambda: ~(f == v),
            "plus": lambda: (f + 1) > v,
        }
        return ops[self.op]()


def conditions() -> st.SearchStrategy[Condition]:
    @st.composite
    def build(draw: st.DrawFn) -> Condition:
        name = draw(st.sampled_from(sorted(FIELDS)))
        op = draw(st.sampled_from(["==", "==", "!=", "<", "<=", ">", ">=", "is_null", "in", "not", "plus"]))
        domain = [v for v in DOMAIN[name] if v is not None]
        if op == "in":
            value: Any = draw(st.lists(st.sampled_from(domain), min_size=1, max_size=3))
        elif op == "is_null":
            value = draw(st.booleans())
        elif op in ("==", "!="):
            value = draw(st.sampled_from(DOMAIN[name]))  # == None is Peewee's IS NULL
        elif op == "plus" and name in ("name", "flag"):
            op, value = "==", draw(st.sampled_from(DOMAIN[name]))
        else:
            value = draw(st.sampled_from(domain))
        return Condition(name, op, value)

    return build()


@dataclass(frozen=True)
class Shape:
    """One select: columns, filters, order, page, row type, and what to call with it."""

    columns: tuple[str, ...]  # () = Item.select()
    where: tuple[Condition, ...]
    any_of: bool  # OR the conditions instead of AND
    order: tuple[tuple[str, bool], ...]  # (field, descending)
    limit: int | None
    offset: int | None
    rows: str  # models, dicts, tuples, namedtuples
    distinct: bool
    join: bool

    def total(self) -> bool:
        """Whether the order leaves no ties (so results compare as lists)."""
        ordered = {name for name, _ in self.order}
        return "id" in ordered or (self.distinct and ordered >= set(self.columns))

    def query(self) -> Any:
        fields = [FIELDS[c] for c in self.columns]
        q = Item.select(*fields)
        if self.join:
            q = Item.select(*(fields or [Item]), Kind.label).join(Kind, peewee.JOIN.LEFT_OUTER)
        if self.where:
            built = [c.build() for c in self.where]
            expr = built[0]
            for other in built[1:]:
                expr = (expr | other) if self.any_of else (expr & other)
            q = q.where(expr)
        if self.distinct:
            q = q.distinct()
        if self.order:
            q = q.order_by(*[FIELDS[n].desc() if d else FIELDS[n] for n, d in self.order])
        if self.limit is not None:
            q = q.limit(self.limit)
        if self.offset is not None:
            q = q.offset(self.offset)
        return getattr(q, self.rows)() if self.rows != "models" else q

    def twin(self, rnd: random.Random) -> Shape:
        """The same shape with other values: a cached statement must bind them, not reuse old ones."""
        where = tuple(Condition(c.field, c.op, _other_value(c, rnd)) for c in self.where)
        return Shape(**{**self.__dict__, "where": where})


def _other_value(c: Condition, rnd: random.Random) -> Any:
    if c.op == "in":
        return [rnd.choice([v for v in DOMAIN[c.field] if v is not None])]
    if c.op == "is_null":
        return not c.value
    choices = DOMAIN[c.field] if c.op in ("==", "!=") else [v for v in DOMAIN[c.field] if v is not None]
    return rnd.choice(choices)


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    columns = draw(st.one_of(st.just(()), st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=4)))
    order = draw(st.lists(st.tuples(st.sampled_from(sorted(FIELDS)), st.booleans()), max_size=2))
    limit = draw(st.one_of(st.none(), st.integers(0, 8)))
    offset = draw(st.one_of(st.none(), st.integers(0, 6)))
    distinct = draw(st.booleans()) and bool(columns)
    if (limit is not None or offset is not None or draw(st.booleans())) and not distinct:
        order = [*order, ("id", draw(st.booleans()))]
    if distinct:
        # DISTINCT with ORDER BY needs the order's columns selected (PostgreSQL). Ordering by
        # every selected column makes the order total over the distinct rows, so a LIMIT picks
        # the same rows on both sides.
        order = [(n, draw(st.booleans())) for n in dict.fromkeys(columns)]
    return Shape(
        columns=tuple(dict.fromkeys(columns)),
        where=tuple(draw(st.lists(conditions(), max_size=3))),
        any_of=draw(st.booleans()),
        order=tuple(order),
        limit=limit,
        offset=offset if limit is not None or offset is None else None,
        rows=draw(st.sampled_from(["models", "models", "dicts", "tuples", "namedtuples"])),
        distinct=distinct,
        # A join adds Kind.label to the selection, which the DISTINCT order above does not cover.
        join=not distinct and draw(st.integers(0, 9)) == 0,
    )


# -- comparison ---------------------------------------------------------------------------------


def canonical(value: Any) -> Any:
    """What must be equal between the manager and Peewee: instances down to ``__data__`` order."""
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, peewee.Model):
        extra = {k: canonical(v) for k, v in vars(value).items() if not k.startswith("_")}
        return (type(value).__name__, list(value.__data__.items()), sorted(value._dirty), extra)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return ("namedtuple", value._fields, tuple(value))
    if isinstance(value, dict):
        return ("dict", list(value.items()))
    if isinstance(value, tuple):  # a row of .tuples(), or an outcome ("value", result)
        return tuple(canonical(v) for v in value)
    return value


def same(shape: Shape | None, got: Any, want: Any) -> bool:
    got, want = canonical(got), canonical(want)
    if shape is not None and not shape.total() and isinstance(got, list) and isinstance(want, list):
        return sorted(map(repr, got)) == sorted(map(repr, want))
    return bool(got == want)


def not_found(exc: peewee.DoesNotExist) -> tuple[str, str, str]:
    """DoesNotExist as compared: its SQL shows the placeholders and quotes of the database that
    compiled it (the node's for the manager; Peewee's defaults for an unbound query)."""
    return ("raises", type(exc).__name__, str(exc).replace("%s", "?").replace("`", '"'))


async def outcome(call: Any) -> Any:
    try:
        return ("value", await call)
    except peewee.DoesNotExist as exc:
        return not_found(exc)
    except peewee.DatabaseError as exc:
        # A query the server refuses must fail as Peewee's does: the same Peewee error class.
        return ("error", type(exc).__name__)


async def check_select(bench: Bench, shape: Shape) -> None:
    got = await outcome(bench.manager.execute(shape.query()))
    want = bench.expected(lambda: list(shape.query().execute()))
    if got[0] == want[0] == "value":
        assert same(shape, got[1], want[1]), (shape, got[1], want[1])
    else:
        assert got == want, (shape, got, want)
    bench.count("select")


# -- properties ---------------------------------------------------------------------------------


@on_server
@given(batch=st.lists(shapes(), min_size=1, max_size=4), seed=st.integers(0, 2**16))
async def test_selects_equal_peewee(bench: Bench, batch: list[Shape], seed: int) -> None:
    rnd = random.Random(seed)
    for shape in batch:
        await check_select(bench, shape)
        await check_select(bench, shape.twin(rnd))
        await check_select(bench, shape)  # warm now, after its twin


@on_server
@given(
    filters=st.dictionaries(st.sampled_from(sorted(FIELDS)), st.integers(0, 6), max_size=3),
    exprs=st.lists(conditions(), max_size=2),
    page=st.tuples(st.one_of(st.none(), st.integers(0, 5)), st.one_of(st.none(), st.integers(1, 5))),
    seed=st.integers(0, 2**16),
)
async def test_gets_equal_peewee(
    bench: Bench,
    filters: dict[str, int],
    exprs: list[Condition],
    page: tuple[int | None, int | None],
    seed: int,
) -> None:
    rnd = random.Random(seed)
    kwargs = {name: DOMAIN[name][i % len(DOMAIN[name])] for name, i in filters.items()}
    args = [c.build() for c in exprs]
    m = bench.manager
    # Model.get(*exprs, **filters): the template path when every part is field == value.
    for _ in range(2):
        got = await outcome(m.get(Item, *args, **kwargs))
        want = bench.expected(lambda kw=kwargs: Item.get(*args, **kw))
        assert same(None, got, want), (args, kwargs, got, want)
        got = await outcome(m.get_or_none(Item, *args, **kwargs))
        want = bench.expected(lambda kw=kwargs: Item.get_or_none(*args, **kw))
        assert same(None, got, want), (args, kwargs, got, want)
        bench.count("get")
        kwargs = {name: rnd.choice(DOMAIN[name]) for name in kwargs}
    # query.get(): its own LIMIT/OFFSET are replaced by page 1 of 1.
    offset, limit = page
    query = Item.select().where(*args) if args else Item.select()
    query = query.order_by(Item.id.desc())
    if offset is not None:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    got = await outcome(m.get(query))
    want = bench.expected(lambda: query.get(bench.oracle))
    assert same(None, got, want), (query, got, want)
    bench.count("get(query)")
    # Model.get(int) is a primary-key lookup.
    pk = rnd.randrange(ROWS + 3)
    got = await outcome(m.get(Item, pk))
    want = bench.expected(lambda: Item.get(pk))
    assert same(None, got, want), (pk, got, want)
    got = await outcome(m.get_by_id(Item, pk))
    want = bench.expected(lambda: Item.get_by_id(pk))
    assert same(None, got, want), (pk, got, want)
    bench.count("get(pk)")


@on_server
@given(shape=shapes())
async def test_aggregates_equal_peewee(bench: Bench, shape: Shape) -> None:
    query = shape.query()
    m, db = bench.manager, bench.oracle
    checks = [
        ("count", m.count(query), lambda: query.count(db)),
        ("count(clear_limit)", m.count(query, clear_limit=True), lambda: query.count(db, clear_limit=True)),
        ("exists", m.exists(query), lambda: query.exists(db)),
    ]
    if not shape.distinct:
        ordered = query.order_by(Item.id)
        checks.append(("scalar", m.scalar(ordered), lambda: ordered.scalar(db)))
    for name, call, run in checks:
        got = await outcome(call)
        want = bench.expected(run)
        assert same(None, got, want), (name, shape, got, want)
        bench.count(name)


# -- regressions --------------------------------------------------------------------------------


async def test_get_of_a_query_ignores_its_offset(bench: Bench) -> None:
    query = Item.select().order_by(Item.id).offset(3).limit(10)
    got = await bench.manager.get(query)
    assert got.id == 1
    assert same(None, got, bench.expected(lambda: query.get(bench.oracle))[1])
    none = await bench.manager.get_or_none(Item.select().order_by(Item.id).offset(ROWS + 5))
    assert none is not None and none.id == 1


async def test_get_with_a_lone_integer_is_a_primary_key_lookup(bench: Bench) -> None:
    got = await bench.manager.get(Item, 7)
    assert got.id == 7
    assert same(None, got, bench.expected(lambda: Item.get(7))[1])


async def test_does_not_exist_says_what_peewee_says(bench: Bench) -> None:
    query = Item.select().where(Item.n == 99).offset(2)
    got = await outcome(bench.manager.get(query))
    want = bench.expected(lambda: query.get(bench.oracle))
    assert got[0] == "raises" and got[1] == "ItemDoesNotExist"
    assert got == want
