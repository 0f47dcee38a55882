"""Read-your-writes by default, under any replication lag (issue 12, item 1).

Replicas are delayed for real (``cluster.sh delay``). A client writes a row, then reads it back
on a schedule; every read must see the row, through the plain manager (a new consistency scope
per read, continued from the write's token, as another request would) and through the FastAPI
and aiohttp integrations (token carried by the cookie jar). A second client, which wrote
nothing, reads on the same schedule and must always be served by a replica.

The managers use the library's defaults (``read_your_writes="fresh"``, a health check every
second): before the change the default was ``sticky`` for 2 s, and the read at 2.5 s behind
replicas 3 s late returned nothing.

``make test`` runs one delay (3 s) and reads up to 5 s, both backends and all three paths at the
same time (~8 s); ``AIOPD_CHAOS=full`` runs the whole matrix of the issue: delays 0.5, 3 and
10 s, reads at 0.1, 1, 2.5, 5 and 12 s. Figures are printed, and written to
``$AIOPD_RYW_REPORT`` (JSON) when set.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cluster
import httpx
import peewee
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import topology_for
from fastapi import FastAPI, HTTPException, Request

from aiopeewee_dist import Manager
from aiopeewee_dist.integrations import aiohttp as aiohttp_db
from aiopeewee_dist.integrations import fastapi as fastapi_db

pytestmark = pytest.mark.cluster

FULL = os.environ.get("AIOPD_CHAOS") == "full"
DELAYS = (0.5, 3.0, 10.0) if FULL else (3.0,)
READS_AT = (0.1, 1.0, 2.5, 5.0, 12.0) if FULL else (0.1, 1.0, 2.5, 5.0)
PATHS = ("manager", "fastapi", "aiohttp")
REPLICAS = {"pg": ("pg-replica-1", "pg-replica-2"), "mysql": ("my-replica",)}
WHOAMI = {"pg": "SELECT pg_is_in_recovery()", "mysql": "SELECT @@read_only"}


class RywItem(peewee.Model):
    name = peewee.CharField(max_length=64)

    class Meta:
        table_name = "t_ryw_item"


def write_report(path: Path, table: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1))


Read = Callable[[int | None], Awaitable[tuple[bool, bool]]]  # id (None: whoami only) -> (seen, replica)


async def served_by_replica(manager: Manager, kind: str) -> bool:
    [(flag,)] = await manager.raw_sql(WHOAMI[kind])
    return bool(int(flag))


async def lookup(manager: Manager, kind: str, item_id: int | None) -> dict[str, Any]:
    replica = await served_by_replica(manager, kind)  # first: the node the lookup will use
    found = item_id is not None and await manager.get_or_none(RywItem, id=item_id) is not None
    return {"seen": found, "replica": replica}


# -- the three paths: each gives (write, read) for one client -------------------------------------


class PlainClient:
    """The manager alone; the token travels between scopes like a cookie between requests."""

    def __init__(self, manager: Manager, kind: str) -> None:
        self.manager, self.kind, self.token = manager, kind, None

    async def write(self, name: str) -> int:
        with self.manager.consistency() as session:
            item = await self.manager.create(RywItem, name=name)
            self.token = session.token()
        return int(item.id)

    async def read(self, item_id: int | None) -> tuple[bool, bool]:
        with self.manager.consistency(self.token):
            answer = await lookup(self.manager, self.kind, item_id)
        return answer["seen"], answer["replica"]


def fastapi_app(manager: Manager, kind: str) -> FastAPI:
    app = FastAPI()
    fastapi_db.setup(app, manager)

    @app.post("/items", status_code=201)
    async def create(request: Request, db: fastapi_db.ManagerDep) -> dict[str, int]:
        item = await db.create(RywItem, name=(await request.json())["name"])
        return {"id": item.id}

    @app.get("/items/{item_id}")
    async def read(item_id: int, db: fastapi_db.ManagerDep) -> dict[str, Any]:
        answer = await lookup(db, kind, item_id if item_id else None)
        if item_id and not answer["seen"]:
            raise HTTPException(404, detail=answer)
        return answer

    return app


class FastAPIClient:
    def __init__(self, app: FastAPI) -> None:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    async def write(self, name: str) -> int:
        response = await self.http.post("/items", json={"name": name})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def read(self, item_id: int | None) -> tuple[bool, bool]:
        response = await self.http.get(f"/items/{item_id or 0}")
        body = response.json()
        answer = body.get("detail", body)
        return response.status_code == 200 and bool(answer["seen"]), bool(answer["replica"])


def aiohttp_app(manager: Manager, kind: str) -> web.Application:
    app = web.Application()
    aiohttp_db.setup(app, manager)

    async def create(request: web.Request) -> web.Response:
        item = await aiohttp_db.get_manager(request).create(RywItem, name=(await request.json())["name"])
        return web.json_response({"id": item.id}, status=201)

    async def read(request: web.Request) -> web.Response:
        item_id = int(request.match_info["item_id"]) or None
        return web.json_response(await lookup(aiohttp_db.get_manager(request), kind, item_id))

    app.router.add_post("/items", create)
    app.router.add_get("/items/{item_id}", read)
    return app


class AiohttpClient:
    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.http = client

    async def write(self, name: str) -> int:
        response = await self.http.post("/items", json={"name": name})
        assert response.status == 201
        return int((await response.json())["id"])

    async def read(self, item_id: int | None) -> tuple[bool, bool]:
        answer = await (await self.http.get(f"/items/{item_id or 0}")).json()
        return bool(answer["seen"]), bool(answer["replica"])


# -- the schedule ------------------------------------------------------------------------------------


async def on_schedule(read: Read, item_id: int | None, start: float) -> list[tuple[float, bool, bool]]:
    """Read at each offset of READS_AT after ``start`` (monotonic); (offset, seen, by a replica)."""
    results = []
    for offset in READS_AT:
        await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
        seen, replica = await read(item_id)
        results.append((offset, seen, replica))
    return results


async def run_path(path: str, kind: str, urls: tuple[str, list[str]]) -> dict[str, Any]:
    manager = Manager(urls[0], urls[1], acquire_timeout=10.0)  # the defaults under test
    closers: list[Callable[[], Awaitable[Any]]] = []
    try:
        if path == "manager":
            writer: Any = PlainClient(manager, kind)
            idle: Any = PlainClient(manager, kind)
        elif path == "fastapi":
            app = fastapi_app(manager, kind)
            writer, idle = FastAPIClient(app), FastAPIClient(app)
            closers += [writer.http.aclose, idle.http.aclose]
            await manager.connect()
        else:
            clients = [TestClient(TestServer(aiohttp_app(manager, kind), host="127.0.0.1")) for _ in "ab"]
            for client in clients:
                await client.start_server()
                closers.append(client.close)
            writer, idle = AiohttpClient(clients[0]), AiohttpClient(clients[1])
        item_id = await writer.write(f"{path}-{uuid.uuid4().hex[:12]}")
        start = time.monotonic()
        wrote, idle_reads = await asyncio.gather(
            on_schedule(writer.read, item_id, start), on_schedule(idle.read, None, start)
        )
        return {"writer": wrote, "idle": idle_reads, "router": dict(manager.stats()["router"])}
    finally:
        for close in reversed(closers):
            await close()
        await manager.close()


async def run_backend(kind: str, tmp_path: Path) -> dict[float, dict[str, Any]]:
    topology = topology_for("psycopg" if kind == "pg" else "mysql", tmp_path)
    admin = topology.manager()
    try:
        await admin.drop_tables([RywItem])
        await admin.create_tables([RywItem])
    finally:
        await admin.close()
    await topology.wait_replicated()
    figures: dict[float, dict[str, Any]] = {}
    try:
        for delay in DELAYS:
            for node in REPLICAS[kind]:
                await asyncio.to_thread(cluster.cluster, "delay", node, str(delay))
            urls = (topology.primary, topology.replicas)
            runs = await asyncio.gather(*(run_path(path, kind, urls) for path in PATHS))
            figures[delay] = dict(zip(PATHS, runs, strict=True))
    finally:
        for node in REPLICAS[kind]:
            await asyncio.to_thread(cluster.cluster, "delay", node, "0")
    return figures


def summary(results: dict[str, dict[float, dict[str, Any]]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for kind, by_delay in results.items():
        for delay, by_path in by_delay.items():
            for path, run in by_path.items():
                writer, idle = run["writer"], run["idle"]
                table[f"{kind} delay={delay}s {path}"] = {
                    "saw_write": f"{sum(seen for _, seen, _ in writer)}/{len(writer)}",
                    "writer_reads_on_replica": [t for t, _, replica in writer if replica],
                    "idle_reads_on_replica": f"{sum(r for _, _, r in idle)}/{len(idle)}",
                }
    return table


async def test_a_client_always_reads_its_write_and_others_read_replicas(tmp_path: Path) -> None:
    for kind in REPLICAS:
        topology_for("psycopg" if kind == "pg" else "mysql", tmp_path)  # skip/fail without the cluster
    kinds = list(REPLICAS)
    runs = await asyncio.gather(*(run_backend(kind, tmp_path / kind) for kind in kinds))
    results = dict(zip(kinds, runs, strict=True))
    table = summary(results)
    print(json.dumps(table, indent=1))
    if os.environ.get("AIOPD_RYW_REPORT"):
        await asyncio.to_thread(write_report, Path(os.environ["AIOPD_RYW_REPORT"]), table)
    for kind, by_delay in results.items():
        for delay, by_path in by_delay.items():
            for path, run in by_path.items():
                missed = [t for t, seen, _ in run["writer"] if not seen]
                assert not missed, f"{kind}, replicas {delay}s late, {path}: write not seen at {missed} s"
                on_primary = [t for t, _, replica in run["idle"] if not replica]
                assert not on_primary, f"{kind} {delay}s {path}: a client that wrote nothing read the primary"
