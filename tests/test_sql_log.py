"""The ``aiopeewee_dist.sql`` logger (issue 12, item 5): each statement at DEBUG with its node,
duration and row count; parameters redacted unless ``log_params=True``; silent otherwise."""

from __future__ import annotations

import logging
import re

import peewee
import pytest
from conftest import Author, Topology

from aiopeewee_dist import Manager


def sql_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aiopeewee_dist.sql"]


async def test_each_statement_is_logged_with_node_duration_and_rows(
    tables: Manager, caplog: pytest.LogCaptureFixture
) -> None:
    manager = tables
    await manager.create(Author, name="secret-name", age=41)
    with caplog.at_level(logging.DEBUG, logger="aiopeewee_dist.sql"):
        await manager.execute(Author.update(age=42).where(Author.name == "secret-name"))
        rows = await manager.execute(Author.select().where(Author.age > 0), node="primary")
        with pytest.raises(peewee.DatabaseError):
            await manager.raw_sql("SELECT * FROM no_such_table_here", node="primary")
    lines = sql_lines(caplog)
    assert len(rows) == 1 and len(lines) == 3, lines
    update, select, failed = lines
    assert re.match(r"node=primary \d+\.\d{3}ms rows=1: UPDATE .*t_author.* params=\[2 redacted\]", update)
    assert re.match(r"node=primary \d+\.\d{3}ms rows=1: SELECT .* params=\[1 redacted\]", select)
    assert re.match(
        r"node=primary \d+\.\d{3}ms error \w+: SELECT \* FROM no_such_table_here params=\[\]", failed
    )
    assert "secret-name" not in " ".join(lines) and "42" not in update.split("params=")[1]


async def test_log_params_shows_the_values(topology: Topology, caplog: pytest.LogCaptureFixture) -> None:
    manager = topology.manager(log_params=True)
    try:
        with caplog.at_level(logging.DEBUG, logger="aiopeewee_dist.sql"):
            await manager.raw_sql("SELECT %s", ["visible"], node="primary")
    finally:
        await manager.close()
    assert any("params=['visible']" in line for line in sql_lines(caplog))


async def test_nothing_is_logged_above_debug(tables: Manager, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="aiopeewee_dist"):
        await tables.create(Author, name="quiet")
    assert sql_lines(caplog) == []
