"""The Conduit example against RealWorld's own API test collection (Postman, run by newman).

The collection is not part of this repository: point ``REALWORLD_POSTMAN`` at a copy of
``api/Conduit.postman_collection.json`` from https://github.com/gothinkster/realworld (the test
is skipped without it, or without ``npx``; newman comes from the npm registry on first use).
It runs on SQLite, and on the PostgreSQL primary with both standbys replaying 1 s late, where
every read after a write must still see it. What the collection checks that matters most here
(tagList in alphabetical order, read-your-writes) is also in ``test_conduit.py``'s walk, which
always runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cluster
import pytest
import uvicorn
from conftest import topology_for

from aiopeewee_dist import Manager

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from conduit import Settings, create_app  # noqa: E402 (examples/ is not a package)
from conduit.app import create_tables  # noqa: E402
from conduit.models import MODELS, use_table_prefix  # noqa: E402

COLLECTION = os.environ.get("REALWORLD_POSTMAN", "")
NEWMAN = os.environ.get("REALWORLD_NEWMAN", "newman@6")
PREFIX = "cp_"

pytestmark = [
    pytest.mark.skipif(
        not COLLECTION or not Path(COLLECTION).is_file(),
        reason="REALWORLD_POSTMAN does not name RealWorld's Conduit.postman_collection.json",
    ),
    pytest.mark.skipif(shutil.which("npx") is None, reason="newman needs npx (Node.js)"),
]


@pytest.fixture
def prefixed() -> Iterator[None]:
    use_table_prefix(PREFIX)
    try:
        yield
    finally:
        use_table_prefix("")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_collection(manager: Manager, settings: Settings, tmp_path: Path) -> dict[str, Any]:
    """Serve the app on loopback, run newman over the collection; its JSON report's run stats."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, manager), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started
        user = f"u{time.time_ns()}"
        report = tmp_path / "newman.json"
        proc = await asyncio.create_subprocess_exec(
            "npx", "--yes", NEWMAN, "run", COLLECTION,
            "--global-var", f"APIURL=http://127.0.0.1:{port}/api",
            "--global-var", f"USERNAME={user}",
            "--global-var", f"EMAIL={user}@mail.com",
            "--global-var", "PASSWORD=password",
            "--delay-request", "1",
            "--reporters", "cli,json", "--reporter-json-export", str(report),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(proc.communicate(), 300)
        text = output.decode(errors="replace")
        assert report.exists(), text
        run = json.loads(report.read_text())["run"]
        failures = [f"{f['source'].get('name')}: {f['error'].get('message')}" for f in run["failures"]]
        assert proc.returncode == 0 and not failures, "\n".join(failures) or text
        stats: dict[str, Any] = run["stats"]
        print(f"newman: {stats['assertions']}")
        return stats
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


async def test_postman_collection_on_sqlite(tmp_path: Path, prefixed: None) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'conduit.db'}", table_prefix=PREFIX)
    manager = Manager(settings.database_url)
    try:
        await create_tables(manager)
        stats = await run_collection(manager, settings, tmp_path)
    finally:
        await manager.close()
    assert stats["assertions"]["failed"] == 0 and stats["assertions"]["total"] > 100


async def test_postman_collection_with_lagging_replicas(tmp_path: Path, prefixed: None) -> None:
    topology_for("psycopg", tmp_path)
    settings = Settings(
        database_url=cluster.PG_PRIMARY, replica_urls=list(cluster.PG_REPLICAS), table_prefix=PREFIX
    )
    setup = Manager(cluster.PG_PRIMARY, health_check_interval=None)
    try:
        await setup.drop_tables(MODELS)
        await create_tables(setup)
    finally:
        await setup.close()
    await cluster.wait_pg_replayed(cluster.PG_PRIMARY, cluster.PG_REPLICAS)
    manager = Manager(settings.database_url, settings.replica_urls, acquire_timeout=10.0)
    try:
        for node in ("pg-replica-1", "pg-replica-2"):
            await asyncio.to_thread(cluster.cluster, "delay", node, "1")
        stats = await run_collection(manager, settings, tmp_path)
        router = manager.stats()["router"]
    finally:
        await manager.close()
        for node in ("pg-replica-1", "pg-replica-2"):
            await asyncio.to_thread(cluster.cluster, "delay", node, "0")
        cleanup = Manager(cluster.PG_PRIMARY, health_check_interval=None)
        try:
            await cleanup.drop_tables(MODELS)
        finally:
            await cleanup.close()
    assert stats["assertions"]["failed"] == 0 and stats["assertions"]["total"] > 100
    assert router.get("fresh_primary_reads", 0) > 0  # reads after writes were held on the primary
