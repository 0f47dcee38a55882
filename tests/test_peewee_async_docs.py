"""Every code block of docs/peewee-async.md runs, in order, as one program, on every backend."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import peewee
import pytest
from conftest import Topology

DOC = Path(__file__).resolve().parents[1] / "docs" / "peewee-async.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.MULTILINE | re.DOTALL)


class DocUser(peewee.Model):
    """The guide's ``User`` table, to clear what a failed run may have left behind."""

    class Meta:
        table_name = "user"


def test_the_guide_has_its_steps() -> None:
    blocks = python_blocks()
    assert len(blocks) == 4
    assert "peewee_async.SqliteDatabase" in blocks[0] and "manager.database" in blocks[1]


async def _clear(topology: Topology) -> None:
    manager = topology.manager()
    try:
        await manager.drop_tables([DocUser])
    finally:
        await manager.close()


def test_migration_guide_runs(topology: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_clear(topology))
    monkeypatch.chdir(tmp_path)  # the "before" app's app.db
    monkeypatch.setenv("DATABASE_URL", topology.primary)
    monkeypatch.setenv("DATABASE_REPLICA_URLS", ",".join(topology.replicas))
    namespace: dict[str, object] = {"__name__": "peewee_async_guide"}
    for number, block in enumerate(python_blocks(), start=1):
        exec(compile(block, f"{DOC}:python block {number}", "exec"), namespace)
    asyncio.run(_clear(topology))
