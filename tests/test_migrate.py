"""Migrations (aiopeewee_dist.migrate) against the real servers, on all four backends: up and
status, a dry run, a concurrent deploy, a failure in the middle of a sharded deploy, and the
lock timeout. Replicas get the changes by replication (nothing runs on them: they are read-only)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cluster
import pytest
from conftest import Topology, topology_for
from migration_files import CREATE, write

from aiopeewee_dist import Manager, ShardedManager
from aiopeewee_dist.migrate import MigrationError, MigrationLockTimeout, Migrations

OPTIONS: dict[str, Any] = {"health_check_interval": None, "read_your_writes": None, "acquire_timeout": 5.0}
TABLES = ("mig_note", "aiopeewee_migrations")

ADD_STARS = """
import peewee
from playhouse.migrate import migrate

def up(migrator):
    {pause}
    migrate(migrator.add_column("mig_note", "stars", peewee.IntegerField(default=0)))
"""
ADD_INDEX = """
from playhouse.migrate import migrate

def up(migrator):
    migrate(migrator.add_index("mig_note", ("stars",)), migrator.rename_column("mig_note", "text", "body"))
"""


def full_folder(path: Path, pause: str = "pass") -> Path:
    return write(
        path,
        {
            "0001_create.py": CREATE,
            "0002_add_stars.py": ADD_STARS.format(pause=pause),
            "0003_index_and_rename.py": ADD_INDEX,
        },
    )


async def drop(manager: Manager) -> None:
    for table in TABLES:
        await manager.raw_sql(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture
async def fresh(topology: Topology) -> AsyncIterator[Manager]:
    manager = topology.manager(**{k: v for k, v in OPTIONS.items() if k != "health_check_interval"})
    await drop(manager)
    try:
        yield manager
    finally:
        await drop(manager)
        await manager.close()


async def columns(manager: Manager) -> list[str]:
    result = await manager.primary_node.run_sql("SELECT * FROM mig_note WHERE 1 = 0", write=False)
    return sorted(column[0] for column in result.description or ())


async def test_up_status_and_replication(fresh: Manager, topology: Topology, tmp_path: Path) -> None:
    migrations = Migrations(full_folder(tmp_path / "m"))
    before = (await migrations.status(fresh))["primary"]
    assert before.applied == [] and before.version is None and len(before.pending) == 3
    everything = ["0001_create", "0002_add_stars", "0003_index_and_rename"]
    assert await migrations.up(fresh) == {"primary": everything}
    after = (await migrations.status(fresh))["primary"]
    assert after.version == "0003_index_and_rename" and after.pending == []
    assert await columns(fresh) == ["body", "id", "stars"]
    assert await migrations.up(fresh) == {"primary": []}  # nothing left to do
    await fresh.raw_sql("INSERT INTO mig_note (body, stars) VALUES ('x', 2)")
    await topology.wait_replicated()
    for replica in fresh.replicas:  # the replicas have the new schema, by replication
        assert await fresh.raw_sql("SELECT body, stars FROM mig_note", node=replica.name) == [("x", 2)]


async def test_dry_run_prints_sql_and_changes_nothing(
    fresh: Manager, topology: Topology, tmp_path: Path
) -> None:
    await Migrations(write(tmp_path / "first", {"0001_create.py": CREATE})).up(fresh)
    migrations = Migrations(full_folder(tmp_path / "m"))
    plan = (await migrations.plan(fresh))["primary"]
    add_stars = " ".join(sql for sql, _ in plan[0].statements).upper()
    assert plan[0].name == "0002_add_stars" and "ALTER TABLE" in add_stars and "STARS" in add_stars
    if topology.kind == "mysql":  # its NOT NULL step inspects the column, which is not there yet
        assert plan[0].incomplete is not None and len(plan) == 1
    else:  # run in a transaction rolled back: every step, exactly
        assert [p.name for p in plan] == ["0002_add_stars", "0003_index_and_rename"]
        assert plan[1].incomplete is None and any("INDEX" in sql.upper() for sql, _ in plan[1].statements)
    assert (await migrations.status(fresh))["primary"].pending == ["0002_add_stars", "0003_index_and_rename"]
    assert await columns(fresh) == ["id", "text"]


async def test_concurrent_deploys_apply_each_migration_once(
    fresh: Manager, topology: Topology, tmp_path: Path
) -> None:
    # 0002 pauses inside the lock, so the second deploy arrives while the first is running;
    # without the lock both would add the column and one would fail.
    pause = "migrator.database.execute_sql({!r})".format(
        {"pg": "SELECT pg_sleep(0.3)", "mysql": "SELECT SLEEP(0.3)"}.get(topology.kind, "SELECT 1")
    )
    folder = full_folder(tmp_path / "m", pause=pause)
    other = topology.manager(**{k: v for k, v in OPTIONS.items() if k != "health_check_interval"})
    try:
        results = await asyncio.gather(Migrations(folder).up(fresh), Migrations(folder).up(other))
    finally:
        await other.close()
    applied = sorted(len(r["primary"]) for r in results)
    assert applied == [0, 3]
    history = await fresh.raw_sql("SELECT name FROM aiopeewee_migrations ORDER BY name", node="primary")
    assert [row[0] for row in history] == ["0001_create", "0002_add_stars", "0003_index_and_rename"]


async def test_lock_timeout(fresh: Manager, topology: Topology, tmp_path: Path) -> None:
    folder = write(tmp_path / "m", {"0001_create.py": CREATE})
    holder = topology.manager(**{k: v for k, v in OPTIONS.items() if k != "health_check_interval"})
    try:
        async with holder.connection() as _:  # another deploy holding the lock
            lock = Migrations(folder, lock_timeout=0.2)._locked(holder)
            async with lock:
                with pytest.raises(MigrationLockTimeout, match="another deploy"):
                    await Migrations(folder, lock_timeout=1.0 if topology.kind == "mysql" else 0.2).up(fresh)
    finally:
        await holder.close()
    assert (await Migrations(folder).status(fresh))["primary"].pending == ["0001_create"]


def shard_urls(backend: str, tmp_path: Path) -> dict[str, str]:
    topology = topology_for(backend, tmp_path)
    if topology.kind == "sqlite":
        return {f"s{i}": f"sqlite:///{tmp_path / f's{i}.db'}" for i in (1, 2, 3)}
    base = topology.primary.rpartition("/")[0]
    return {f"s{i}": f"{base}/shard{i}" for i in ((1, 2, 3) if topology.kind == "pg" else (1, 2))}


async def test_failure_mid_shard_stops_and_reports_versions(backend: str, tmp_path: Path) -> None:
    urls = shard_urls(backend, tmp_path)
    sharded = ShardedManager(urls, **OPTIONS)
    names = list(urls)
    try:
        for shard in sharded.managers.values():
            await drop(shard)
        # A column in the way on the second shard only: 0002 fails there.
        await sharded.shard(names[1]).raw_sql(
            "CREATE TABLE mig_note (id INTEGER PRIMARY KEY, text VARCHAR(40), stars INTEGER)"
        )
        folder = full_folder(tmp_path / "m")
        # (0001's create_tables() is safe by default: it leaves the second shard's table as it is)
        (folder / "0003_index_and_rename.py").unlink()
        with pytest.raises(MigrationError) as failure:
            await Migrations(folder).up(sharded)
        error = failure.value
        assert error.failed == ("0002_add_stars", names[1])
        expected = {names[0]: "0002_add_stars", names[1]: "0001_create"}
        expected.update({name: "0001_create" for name in names[2:]})  # stopped before the later shards
        assert error.versions == expected
        assert f"failed on {names[1]}" in str(error)
        status = await Migrations(folder).status(sharded)
        assert {name: s.version for name, s in status.items()} == expected
        await sharded.shard(names[1]).raw_sql("ALTER TABLE mig_note DROP COLUMN stars")  # fixed: deploy again
        done = await Migrations(folder).up(sharded)
        assert done == {name: [] if name == names[0] else ["0002_add_stars"] for name in names}
        status = await Migrations(folder).status(sharded)
        assert {s.version for s in status.values()} == {"0002_add_stars"}
    finally:
        for shard in sharded.managers.values():
            await drop(shard)
        await sharded.close()


def test_bad_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        Migrations(tmp_path / "nope").load()
    write(tmp_path / "m", {"add_stars.py": "def up(m): pass\n"})
    with pytest.raises(MigrationError, match=r"must be named NNNN_description\.py"):
        Migrations(tmp_path / "m").load()
    write(tmp_path / "n", {"0001_x.py": "x = 1\n"})
    with pytest.raises(MigrationError, match="defines no up"):
        Migrations(tmp_path / "n").load()
    write(tmp_path / "o", {"10_b.py": "def up(m): pass\n", "9_a.py": "def up(m): pass\n"})
    assert [m.name for m in Migrations(tmp_path / "o").load()] == ["9_a", "10_b"]


_ = cluster  # the cluster module's URLs are what topology_for() uses


def test_command_line_up_status_and_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aiopeewee_dist._cli import main

    folder = str(full_folder(tmp_path / "m"))
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["migrate", "status", folder, "--primary", url]) == 0
    assert "primary: at nothing applied; pending: 0001_create, 0002_add_stars" in capsys.readouterr().out
    assert main(["migrate", "up", folder, "--primary", url, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "-- 0002_add_stars on primary" in dry and 'CREATE TABLE IF NOT EXISTS "mig_note"' in dry
    assert main(["migrate", "status", folder, "--primary", url, "--json"]) == 0
    assert '"version": null' in capsys.readouterr().out  # the dry run changed nothing
    assert main(["migrate", "up", folder, "--shard", f"only={url}"]) == 0
    assert "only: applied 0001_create, 0002_add_stars, 0003_index_and_rename" in capsys.readouterr().out
    assert main(["migrate", "up", folder, "--primary", url]) == 0
    assert "primary: applied nothing (up to date)" in capsys.readouterr().out
    broken = write(tmp_path / "broken", {"0001_bad.py": "def up(migrator):\n    raise ValueError('boom')\n"})
    assert main(["migrate", "up", str(broken), "--primary", f"sqlite:///{tmp_path / 'b.db'}"]) == 1
    assert "migration 0001_bad failed on primary: boom (now at: primary=none" in capsys.readouterr().err
    assert main(["migrate", "up", folder, "--shard", "nourl"]) == 2
    assert "--shard takes NAME=URL" in capsys.readouterr().err


def test_the_documented_migrations_run(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    doc = Path(__file__).resolve().parent.parent / "docs" / "migrations.md"
    for block in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S):
        name = block.splitlines()[0].removeprefix("# ").strip()
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(block)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}"}
    proc = subprocess.run(
        [sys.executable, "deploy.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('0001_create_note [\'CREATE TABLE IF NOT EXISTS "note"')
    assert lines[-2:] == ["{'primary': ['0001_create_note', '0002_note_stars']}", "0002_note_stars"]
