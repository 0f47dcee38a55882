"""``raw_sql``: one placeholder style (``%s``) on every backend, one statement unless asked,
and a raw write counts for read-your-writes (issue 12, item 4)."""

from __future__ import annotations

import pytest
from conftest import Topology
from hypothesis import given
from hypothesis import strategies as st

from aiopeewee_dist import ConfigurationError, Manager
from aiopeewee_dist._rawsql import _split, prepare_raw_sql


async def test_percent_s_placeholders_on_every_backend(tables: Manager) -> None:
    manager = tables
    assert await manager.raw_sql("INSERT INTO t_author (name, age) VALUES (%s, %s)", ["ada", 36]) == 1
    rows = await manager.raw_sql(
        "SELECT name, age FROM t_author WHERE name LIKE %s AND name <> '%%s' AND age > %s",
        ["a%", 1],
        node="primary",
    )
    assert [tuple(r) for r in rows] == [("ada", 36)]
    # %% is a literal % when there are parameters (as the PostgreSQL and MySQL drivers want).
    [(text,)] = await manager.raw_sql(
        "SELECT CONCAT(%s, '%%')" if _concat(manager) else "SELECT %s || '%%'", ["50"]
    )
    assert text == "50%"


def _concat(manager: Manager) -> bool:
    return manager.primary_node.dialect == "mysql"


async def test_more_than_one_statement_is_refused(tables: Manager) -> None:
    manager = tables
    injected = "SELECT name FROM t_author WHERE id = 1; UPDATE t_author SET age = 99"
    with (
        manager.primary(),
        pytest.raises(ConfigurationError, match=r"2 statements.*multiple_statements=True"),
    ):
        await manager.raw_sql(injected)
    # A semicolon inside a literal or a comment is not a second statement; a trailing one is fine.
    assert await manager.raw_sql("SELECT ';' -- ; UPDATE\n;") is not None


async def test_explicit_multiple_statements_go_to_the_primary(topology: Topology, tables: Manager) -> None:
    if topology.kind == "sqlite":
        pytest.skip("sqlite3 runs one statement per execute() whatever is asked")
    manager = tables
    await manager.raw_sql("INSERT INTO t_author (name, age) VALUES ('x', 1)")
    # Starts with SELECT, but the second statement writes: the primary runs both.
    await manager.raw_sql("SELECT 1; UPDATE t_author SET age = 7 WHERE name = 'x'", multiple_statements=True)
    [(age,)] = await manager.raw_sql("SELECT age FROM t_author WHERE name = 'x'", node="primary")
    assert age == 7


async def test_a_raw_write_counts_for_read_your_writes(topology: Topology) -> None:
    manager = topology.manager(read_your_writes="fresh")  # the default; monitor off: nothing proven
    try:
        await manager.raw_sql("CREATE TABLE IF NOT EXISTS t_raw_ryw (v INTEGER)")
        with manager.consistency() as session:
            await manager.raw_sql("INSERT INTO t_raw_ryw (v) VALUES (%s)", [1])
            assert session.written_at is not None
            before = manager.stats()["router"].get("fresh_primary_reads", 0)
            await manager.raw_sql("SELECT v FROM t_raw_ryw")
            if topology.replicas:
                assert manager.stats()["router"]["fresh_primary_reads"] == before + 1
    finally:
        await manager.raw_sql("DROP TABLE IF EXISTS t_raw_ryw")
        await manager.close()


@given(st.text(alphabet="ab;'\"%s -\n/*?", max_size=30))
def test_sqlite_translation_matches_the_drivers_pyformat(text: str) -> None:
    """``%s`` -> ``?`` and ``%%`` -> ``%`` everywhere, as psycopg and PyMySQL read the text."""
    sql = text + " %s"
    translated, _ = prepare_raw_sql(sql, "sqlite", True, True)
    expected = []
    i = 0
    while i < len(sql):
        pair = sql[i : i + 2]
        if pair in ("%s", "%%"):
            expected.append("?" if pair == "%s" else "%")
            i += 2
        else:
            expected.append(sql[i])
            i += 1
    assert translated == "".join(expected)


@pytest.mark.parametrize(
    ("dialect", "sql", "count"),
    [
        ("postgresql", "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$", 1),
        ("postgresql", "DO $body$ BEGIN PERFORM 1; PERFORM 2; END $body$", 1),
        ("postgresql", "SELECT 'a;b', \"c;d\" -- e;f", 1),
        ("postgresql", "SELECT $1; DELETE FROM t", 2),
        ("postgresql", "CREATE FUNCTION f() RETURNS int AS 'SELECT 1'; DELETE FROM t", 2),
        ("mysql", "SELECT 'it\\'s; fine'", 1),
        ("mysql", "SELECT 'x'; DELETE FROM t", 2),
        ("mysql", "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END", 1),
        ("sqlite", "SELECT 1; SELECT 2;", 2),
    ],
)
def test_statements_are_counted_as_the_server_parses_them(dialect: str, sql: str, count: int) -> None:
    # A routine body holds semicolons but is one statement; a pasted "; DELETE" is a second one.
    assert len(_split(sql, dialect)) == count
