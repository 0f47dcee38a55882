"""The asyncpg backend against the real PostgreSQL primary and PgBouncer.

The whole suite runs on asyncpg through the ``backend`` fixture; this module checks what only
this driver does: placeholder conversion, results equal to psycopg's (values and types), errors
as Peewee's, its prepared-statement cache and the URL option that turns it off, and a mixed
workload through PgBouncer's transaction mode with the cache off.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import cluster
import peewee
import pytest
from conftest import topology_for
from hypothesis import given
from hypothesis import strategies as st
from playhouse.postgres_ext import BinaryJSONField, JSONField

from aiopeewee_dist import ConfigurationError, Manager
from aiopeewee_dist._drivers._asyncpg import dollar_sql
from aiopeewee_dist._url import connect_kwargs, parse_url


def asyncpg_url(url: str, **options: str) -> str:
    url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}" if query else url


# -- placeholders and URL options (no server) ---------------------------------------------------


def test_placeholders_become_numbered_and_percent_signs_literal() -> None:
    assert dollar_sql("SELECT %s, %s FROM t WHERE a LIKE 'x%%' AND b = %s") == (
        "SELECT $1, $2 FROM t WHERE a LIKE 'x%' AND b = $3"
    )
    with pytest.raises(asyncpg.InterfaceError, match=r"only %s placeholders.*%%"):
        dollar_sql("SELECT %(name)s")
    with pytest.raises(asyncpg.InterfaceError, match="only %s placeholders"):
        dollar_sql("SELECT 5 % 3 + %s")


@given(st.lists(st.sampled_from(["%s", "%%", "a", " ", "'", "$", "1", "é", "\n"]), max_size=30))
def test_placeholder_conversion_numbers_each_placeholder_and_keeps_the_rest(parts: list[str]) -> None:
    numbers = iter(range(1, 100))
    expected = "".join(f"${next(numbers)}" if p == "%s" else "%" if p == "%%" else p for p in parts)
    assert dollar_sql("".join(parts)) == expected


def test_url_options() -> None:
    url = parse_url("postgresql+asyncpg://u:p@h/db?statement_cache_size=0&application_name=app")
    assert url.backend == "asyncpg" and url.dialect == "postgresql"
    assert (
        url.obscured() == "postgresql+asyncpg://u:***@h:5432/db?statement_cache_size=0&application_name=app"
    )
    kwargs = connect_kwargs(url)
    assert kwargs["statement_cache_size"] == 0
    assert kwargs["server_settings"] == {"application_name": "app"}
    assert kwargs["database"] == "db" and "dbname" not in kwargs
    assert connect_kwargs(parse_url("postgres+asyncpg://h/db"))["statement_cache_size"] == 100
    for bad, message in [
        ("statement_cache_size=-1", "statement_cache_size must be an integer from 0 to 10000"),
        ("statement_cache_size=100001", "statement_cache_size must be an integer from 0 to 10000"),
        ("statement_cache_size=x", "PgBouncer"),
        ("sslmode=maybe", "sslmode must be one of"),
        ("keepalives=1", "not an option for backend 'asyncpg'.*statement_cache_size"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            parse_url(f"postgresql+asyncpg://h/db?{bad}")


# -- results equal psycopg's ---------------------------------------------------------------------


class Everything(peewee.Model):
    big = peewee.BigIntegerField(null=True)
    small = peewee.SmallIntegerField(null=True)
    flag = peewee.BooleanField(null=True)
    ratio = peewee.FloatField(null=True)
    amount = peewee.DecimalField(max_digits=20, decimal_places=6, null=True)
    name = peewee.CharField(max_length=64, null=True)
    body = peewee.TextField(null=True)
    born = peewee.DateField(null=True)
    at = peewee.DateTimeField(null=True)
    clock = peewee.TimeField(null=True)
    key = peewee.UUIDField(null=True)
    blob = peewee.BlobField(null=True)
    doc = JSONField(null=True)
    bdoc = BinaryJSONField(null=True)

    class Meta:
        table_name = "t_everything"


ROWS: list[dict[str, Any]] = [
    {
        "big": 2**62,
        "small": -7,
        "flag": True,
        "ratio": 0.1,
        "amount": decimal.Decimal("12345.678901"),
        "name": "ünï ' \" % $1",
        "body": "x" * 300,
        "born": datetime.date(1999, 12, 31),
        "at": datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
        "clock": datetime.time(12, 30, 1, 5),
        "key": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "blob": b"\x00\xff bytes",
        "doc": {"a": [1, 2.5, None, "s"], "b": {"c": True}},
        "bdoc": [1, {"k": "v"}],
    },
    {"name": None},
    {"flag": False, "amount": decimal.Decimal("-0.000001"), "doc": "just a string", "bdoc": 3},
]


@pytest.fixture
async def managers(tmp_path: Path) -> AsyncIterator[tuple[Manager, Manager]]:
    psycopg_url = topology_for("psycopg", tmp_path).primary
    plain = Manager(psycopg_url, health_check_interval=None)
    fast = Manager(asyncpg_url(psycopg_url), health_check_interval=None)
    try:
        yield plain, fast
    finally:
        await plain.close()
        await fast.close()


def typed(value: Any) -> Any:
    """A value with its exact type, for comparing results of two drivers."""
    if isinstance(value, peewee.Model):
        return {k: typed(v) for k, v in value.__data__.items()}
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # By name: Peewee makes a namedtuple class per query.
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value), value)


async def test_results_equal_psycopgs_value_for_value_and_type(managers: tuple[Manager, Manager]) -> None:
    plain, fast = managers
    await fast.drop_tables([Everything])
    await fast.create_tables([Everything])
    try:
        ids = [(await fast.create(Everything, **row)).id for row in ROWS]
        assert ids == [1, 2, 3]
        await fast.execute(Everything.update(small=Everything.small + 1).where(Everything.id == 1))
        queries = [
            Everything.select().order_by(Everything.id),
            Everything.select().order_by(Everything.id).dicts(),
            Everything.select(Everything.amount, Everything.key).order_by(Everything.id).tuples(),
            Everything.select(peewee.fn.COUNT(Everything.id).alias("n"), peewee.fn.SUM(Everything.amount)),
            Everything.select().where(Everything.key == "12345678123456781234567812345678"),
            Everything.select().where(Everything.doc.is_null(False)).order_by(Everything.id).namedtuples(),
        ]
        for query in queries:
            expected = await plain.execute(query)
            assert typed(await fast.execute(query)) == typed(expected), query
        row = await fast.get(Everything, id=1)
        assert typed(row) == typed(await plain.get(Everything, id=1))
        streamed = [r async for r in fast.iterate(Everything.select().order_by(Everything.id), chunk_size=2)]
        assert [typed(r) for r in streamed] == [
            typed(r) for r in await plain.execute(Everything.select().order_by(Everything.id))
        ]
        raw = "SELECT id, amount, at, key FROM t_everything WHERE id = %s AND name LIKE %s"
        assert typed(await fast.raw_sql(raw, (1, "ünï%"))) == typed(await plain.raw_sql(raw, (1, "ünï%")))
        # An untyped parameter: the server types it text; the value keeps its own type, as with
        # psycopg's client-side literal.
        for value in (7, 2.5, True, decimal.Decimal("1.5"), datetime.date(2020, 1, 2)):
            assert typed(await fast.raw_sql("SELECT %s", (value,))) == typed(
                await plain.raw_sql("SELECT %s", (value,))
            )
        counted = await fast.execute(Everything.update(flag=None).where(Everything.id > 1))
        assert counted == 2
        assert await fast.execute(Everything.delete().where(Everything.id == 3)) == 1
    finally:
        await fast.drop_tables([Everything])


async def test_errors_are_peewees(managers: tuple[Manager, Manager]) -> None:
    _, fast = managers
    await fast.drop_tables([Everything])
    await fast.create_tables([Everything])
    try:
        await fast.raw_sql("CREATE UNIQUE INDEX t_everything_name ON t_everything (name)")
        await fast.create(Everything, name="a")
        with pytest.raises(peewee.IntegrityError, match="duplicate key") as caught:
            await fast.create(Everything, name="a")
        assert caught.value.__context__.sqlstate == "23505"  # type: ignore[union-attr]
        with pytest.raises(peewee.ProgrammingError, match="does not exist"):
            await fast.raw_sql("SELECT * FROM t_nowhere")
        with pytest.raises(peewee.DataError):
            await fast.raw_sql("SELECT 1 / 0")
        async with fast.transaction():
            with pytest.raises(peewee.ProgrammingError):
                await fast.raw_sql("SELECT nonsense FROM t_everything")
            # Class 25 (asyncpg nests it three levels deep, where Peewee's wrapper cannot see it).
            with pytest.raises(peewee.InternalError, match="current transaction is aborted"):
                await fast.raw_sql("SELECT 1")
    finally:
        await fast.drop_tables([Everything])


# -- prepared statements ---------------------------------------------------------------------------


async def prepared_in_session(manager: Manager) -> int:
    async with manager.connection(node="primary"):
        for n in range(3):
            await manager.raw_sql("SELECT %s::int + 1", (n,))
        rows = await manager.raw_sql("SELECT count(*) FROM pg_prepared_statements")
        return int(rows[0][0])


async def test_the_statement_cache_prepares_and_the_url_option_turns_it_off(tmp_path: Path) -> None:
    url = topology_for("psycopg", tmp_path).primary
    cached = Manager(asyncpg_url(url), health_check_interval=None)
    uncached = Manager(asyncpg_url(url, statement_cache_size="0"), health_check_interval=None)
    try:
        assert await prepared_in_session(cached) >= 2  # the + 1 query and the count itself
        assert await prepared_in_session(uncached) == 0
    finally:
        await cached.close()
        await uncached.close()


async def test_a_cached_statement_whose_result_changed_is_prepared_again(tmp_path: Path) -> None:
    manager = Manager(asyncpg_url(topology_for("psycopg", tmp_path).primary), health_check_interval=None)
    try:
        async with manager.connection():  # one session, so the second SELECT finds the cached one
            await manager.raw_sql("DROP TABLE IF EXISTS t_reshaped")
            await manager.raw_sql("CREATE TABLE t_reshaped (a integer)")
            await manager.raw_sql("INSERT INTO t_reshaped VALUES (1)")
            assert await manager.raw_sql("SELECT * FROM t_reshaped") == [(1,)]
            await manager.raw_sql("ALTER TABLE t_reshaped ADD COLUMN b text DEFAULT 'x'")
            # asyncpg refuses the cached statement (its result type changed): it is prepared anew.
            assert await manager.raw_sql("SELECT * FROM t_reshaped") == [(1, "x")]
            await manager.raw_sql("DROP TABLE t_reshaped")
    finally:
        await manager.close()


class Counter(peewee.Model):
    name = peewee.CharField(max_length=32, unique=True)
    value = peewee.IntegerField(default=0)

    class Meta:
        table_name = "t_bounced_counter"


async def test_a_mixed_workload_through_pgbouncer_with_the_cache_off(tmp_path: Path) -> None:
    """Several managers share PgBouncer's server connections, transaction by transaction:
    any named statement would be missing on the next server connection."""
    topology_for("psycopg", tmp_path)
    if not cluster.cluster_available("pgbouncer"):
        pytest.fail("pgbouncer is not running (scripts/cluster.sh start)")
    url = asyncpg_url(cluster.PGBOUNCER, statement_cache_size="0")
    managers = [Manager(url, max_size=4, health_check_interval=None) for _ in range(3)]
    first = managers[0]
    try:
        await first.drop_tables([Counter])
        await first.create_tables([Counter])

        async def work(m: Manager, worker: int) -> None:
            for i in range(8):
                name = f"w{worker}-{i}"
                row = await m.create(Counter, name=name)
                assert (await m.get(Counter, name=name)).id == row.id
                async with m.transaction():
                    await m.execute(Counter.update(value=Counter.value + 1).where(Counter.id == row.id))
                    try:
                        async with m.transaction():  # savepoint
                            await m.create(Counter, name=name)
                    except peewee.IntegrityError:
                        pass
                    await m.execute(Counter.update(value=Counter.value + 1).where(Counter.id == row.id))
                streamed = [c.name async for c in m.iterate(Counter.select().where(Counter.id <= row.id))]
                assert name in streamed

        await asyncio.gather(*(work(m, w) for w, m in enumerate(managers * 2)))
        total = await first.raw_sql("SELECT count(*), sum(value) FROM t_bounced_counter")
        assert total == [(48, 96)]
    finally:
        await first.drop_tables([Counter])
        for m in managers:
            await m.close()


class Rollback(Exception):
    pass


async def test_a_stream_left_early_inside_a_transaction_closes_its_portal(
    managers: tuple[Manager, Manager],
) -> None:
    _, fast = managers
    await fast.drop_tables([Everything])
    await fast.create_tables([Everything])
    try:
        for row in ROWS:
            await fast.create(Everything, **row)
        with pytest.raises(Rollback):
            async with fast.transaction():
                async with fast.iterate(Everything.select(), chunk_size=1) as rows:
                    async for _ in rows:
                        break
                # PostgreSQL refuses this while a portal of this session still reads the table.
                await fast.raw_sql("DROP TABLE t_everything")
                raise Rollback
        assert await fast.count(Everything.select()) == len(ROWS)
    finally:
        await fast.drop_tables([Everything])
