"""The FastAPI and aiohttp integrations, driven through real HTTP against the PostgreSQL cluster.

Every "who answered" is the server's own word: the test apps return
``SELECT inet_server_port(), pg_is_in_recovery()`` run through ``manager.raw_sql``, so a GET
that reports port 55433/55434 and ``replica: true`` really ran on a standby.

FastAPI runs in-process through ``httpx.ASGITransport`` (same task as the test, like a real
server's per-request task) and once behind a real uvicorn on a free loopback port (lifespan
included); aiohttp runs on its test server on loopback. Read-your-writes across requests is
checked with both standbys delayed (``cluster.sh delay``, undone in ``finally``): the write's
token makes the next GET see it; the same GET without the token lands on a standby that has
not replayed it yet.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cluster
import httpx
import peewee
import pytest
import uvicorn
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import topology_for
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from aiopeewee_dist import ConfigurationError, Manager
from aiopeewee_dist.integrations import ScopeOptions, current_scope
from aiopeewee_dist.integrations import aiohttp as aiohttp_db
from aiopeewee_dist.integrations import fastapi as fastapi_db

pytestmark = pytest.mark.cluster

WHOAMI = "SELECT inet_server_port(), pg_is_in_recovery()"
PRIMARY_PORT = urlsplit(cluster.PG_PRIMARY).port
REPLICA_PORTS = {urlsplit(url).port for url in cluster.PG_REPLICAS}
HEADER = "X-DB-Consistency"
COOKIE = "aiopd_consistency"


class Item(peewee.Model):
    name = peewee.CharField(max_length=64)

    class Meta:
        table_name = "ix_item"


def make_manager(**options: Any) -> Manager:
    # The monitor is off so that both standbys stay in rotation whatever their delay:
    # the point is to show what the token does, not what max_lag does.
    options.setdefault("health_check_interval", None)
    # The default read_your_writes ("fresh"): with the monitor off no standby is ever proven to
    # hold a write, so a client that wrote reads from the primary.
    return Manager(cluster.PG_PRIMARY, cluster.PG_REPLICAS, acquire_timeout=5.0, **options)


async def whoami(manager: Manager) -> dict[str, Any]:
    [(port, in_recovery)] = await manager.raw_sql(WHOAMI)
    return {"port": port, "replica": in_recovery}


@pytest.fixture
async def table(tmp_path: Path) -> AsyncIterator[None]:
    topology_for("psycopg", tmp_path)  # skips (or fails under AIOPD_REQUIRE_CLUSTER=1) without the cluster
    manager = make_manager()
    try:
        await manager.drop_tables([Item])
        await manager.create_tables([Item])
        await cluster.wait_pg_replayed(cluster.PG_PRIMARY, cluster.PG_REPLICAS)
    finally:
        await manager.close()
    yield
    manager = make_manager()
    try:
        await manager.drop_tables([Item])
    finally:
        await manager.close()


@pytest.fixture
def delayed_replicas() -> Iterator[None]:
    """Both standbys replay 0.5 s late for the test; the delay is removed whatever happens."""
    try:
        cluster.cluster("delay", "pg-replica-1", "0.5")
        cluster.cluster("delay", "pg-replica-2", "0.5")
        yield
    finally:
        for node in ("pg-replica-1", "pg-replica-2"):
            try:
                cluster.cluster("delay", node, "0")
            except cluster.ClusterError as exc:  # keep going: the other one must be undone too
                print(f"could not undo the delay of {node}: {exc}")


# -- the FastAPI test app -------------------------------------------------------------------------


def fastapi_app(manager: Manager, **options: Any) -> FastAPI:
    app = FastAPI()
    fastapi_db.setup(app, manager, **options)

    @app.get("/whoami")
    async def get_whoami(db: fastapi_db.ManagerDep) -> dict[str, Any]:
        return await whoami(db)

    @app.post("/whoami")
    async def post_whoami(db: fastapi_db.ManagerDep) -> dict[str, Any]:
        return await whoami(db)

    @app.get("/whoami/primary", dependencies=[Depends(fastapi_db.force_primary)])
    async def forced_whoami(db: fastapi_db.ManagerDep) -> dict[str, Any]:
        return await whoami(db)

    @app.post("/items", status_code=201)
    async def create_item(request: Request, db: fastapi_db.ManagerDep) -> dict[str, Any]:
        body = await request.json()
        item = await db.create(Item, name=body["name"])
        return {"id": item.id, **await whoami(db)}

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, db: fastapi_db.ManagerDep) -> dict[str, Any]:
        who = await whoami(db)  # first, so it reports the node the lookup will use
        item = await db.get_or_none(Item, id=item_id)
        if item is None:
            raise HTTPException(404, detail=who)
        return {"id": item.id, "name": item.name, **who}

    @app.api_route("/scope", methods=["GET", "POST"])
    async def scope_info(request: Request) -> dict[str, Any]:
        state = fastapi_db.get_scope(request)
        assert state is not None and state is current_scope()
        return {"on_primary": state.on_primary, "incoming": state.incoming_token}

    @app.post("/fail")
    async def fail(db: fastapi_db.ManagerDep) -> JSONResponse:
        await db.create(Item, name="written before an error")
        return JSONResponse({"error": "but the write happened"}, status_code=409)

    return app


def asgi_client(app: FastAPI, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", **kwargs)


async def test_fastapi_routes_safe_methods_to_replicas_and_others_to_primary(table: None) -> None:
    manager = make_manager()
    app = fastapi_app(manager)
    try:
        async with asgi_client(app) as client:
            gets = [(await client.get("/whoami")).json() for _ in range(4)]
            assert {g["port"] for g in gets} == REPLICA_PORTS  # round robin over both standbys
            assert all(g["replica"] for g in gets)

            posted = (await client.post("/whoami")).json()
            assert posted == {"port": PRIMARY_PORT, "replica": False}
            # A POST that did not write sends no token back.
            assert HEADER not in (await client.post("/whoami")).headers

            forced = (await client.get("/whoami/primary")).json()
            assert forced == {"port": PRIMARY_PORT, "replica": False}
            by_header = (await client.get("/whoami", headers={"X-DB-Primary": "1"})).json()
            assert by_header == {"port": PRIMARY_PORT, "replica": False}
            head = await client.head("/whoami")
            assert head.status_code in (200, 405)
            assert (await client.get("/scope")).json() == {"on_primary": False, "incoming": None}
            assert (await client.post("/scope")).json()["on_primary"] is True
    finally:
        await manager.close()


async def test_fastapi_primary_header_can_be_disabled(table: None) -> None:
    manager = make_manager()
    app = fastapi_app(manager, primary_header=None)
    try:
        async with asgi_client(app) as client:
            answers = [(await client.get("/whoami", headers={"X-DB-Primary": "1"})).json() for _ in range(2)]
            assert all(a["replica"] for a in answers)
            # The dependency still works: it is the app's decision, not the client's.
            assert (await client.get("/whoami/primary")).json()["replica"] is False
    finally:
        await manager.close()


async def test_fastapi_token_gives_read_your_writes_across_requests(
    table: None, delayed_replicas: None
) -> None:
    manager = make_manager()
    app = fastapi_app(manager)
    try:
        async with asgi_client(app) as client:
            created = await client.post("/items", json={"name": "ada"})
            assert created.status_code == 201
            item = created.json()
            assert item["port"] == PRIMARY_PORT
            token = created.headers[HEADER]
            set_cookie = created.headers["set-cookie"]
            assert set_cookie.startswith(f"{COOKIE}=") and "HttpOnly" in set_cookie
            assert "Max-Age=3600" in set_cookie  # renewed while a standby may lack the write

            # Same client: the cookie comes back, the GET goes to the primary and sees the row.
            same = await client.get(f"/items/{item['id']}")
            assert same.status_code == 200, same.text
            assert same.json() == {"id": item["id"], "name": "ada", "port": PRIMARY_PORT, "replica": False}
            # No standby is proven to hold the write (no monitor here): the token is renewed,
            # unchanged, so the cookie outlives any lag.
            assert same.headers[HEADER] == token

        # Header only (no cookie jar): the token is what routes the read.
        async with asgi_client(app) as bare:
            bare.cookies.clear()
            with_header = await bare.get(f"/items/{item['id']}", headers={HEADER: token})
            assert with_header.status_code == 200
            assert with_header.json()["port"] == PRIMARY_PORT

            # Without the token (the renewed cookie dropped too) the same GET goes to a standby,
            # which has not replayed the insert yet.
            bare.cookies.clear()
            without = await bare.get(f"/items/{item['id']}")
            assert without.status_code == 404
            assert without.json()["detail"]["replica"] is True
            assert without.json()["detail"]["port"] in REPLICA_PORTS

            # A token that is not one is ignored (routing as if none was sent), not an error.
            garbage = await bare.get(f"/items/{item['id']}", headers={HEADER: "nonsense"})
            assert garbage.status_code == 404

            # The write is announced even when the endpoint answers with an error status.
            failed = await bare.post("/fail")
            assert failed.status_code == 409 and HEADER in failed.headers
    finally:
        await manager.close()


async def test_fastapi_under_uvicorn_with_lifespan(table: None) -> None:
    """A real server on a free loopback port: lifespan opens and closes the manager."""
    manager = make_manager(min_size=1)  # so that connect() visibly opens a connection per node
    app = fastapi_app(manager)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(200):  # bounded wait for startup
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started
        assert all(node.pool.size == 1 for node in manager.nodes)  # connect() ran in the lifespan
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            created = (await client.post("/items", json={"name": "grace"})).json()
            assert created["port"] == PRIMARY_PORT
            read = await client.get(f"/items/{created['id']}")
            assert read.status_code == 200 and read.json()["port"] == PRIMARY_PORT  # cookie carried
            client.cookies.clear()
            assert (await client.get("/whoami")).json()["replica"] is True  # no token: a standby
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
    assert all(node.closed for node in manager.nodes)  # the lifespan closed it at shutdown


def test_scope_options_validate() -> None:
    with pytest.raises(ConfigurationError):
        ScopeOptions(cookie_samesite="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ScopeOptions(cookie_max_age=-1)
    assert ScopeOptions(safe_methods=frozenset({"get"})).safe_methods == {"GET"}


async def test_get_manager_without_setup_is_a_clear_error() -> None:
    app = FastAPI()

    @app.get("/")
    async def root(db: fastapi_db.ManagerDep) -> dict[str, str]:
        return {"manager": repr(db)}

    async with asgi_client(app) as client:
        with pytest.raises(RuntimeError, match="setup"):
            await client.get("/")


# -- aiohttp -----------------------------------------------------------------------------------------


def aiohttp_app(manager: Manager) -> web.Application:
    app = web.Application()
    aiohttp_db.setup(app, manager)

    async def get_whoami(request: web.Request) -> web.Response:
        return web.json_response(await whoami(aiohttp_db.get_manager(request)))

    @aiohttp_db.force_primary
    async def forced_whoami(request: web.Request) -> web.Response:
        return web.json_response(await whoami(aiohttp_db.get_manager(request)))

    async def create_item(request: web.Request) -> web.Response:
        db = aiohttp_db.get_manager(request)
        body = await request.json()
        item = await db.create(Item, name=body["name"])
        return web.json_response({"id": item.id, **await whoami(db)}, status=201)

    async def read_item(request: web.Request) -> web.Response:
        db = aiohttp_db.get_manager(request)
        who = await whoami(db)
        item = await db.get_or_none(Item, id=int(request.match_info["item_id"]))
        if item is None:
            raise web.HTTPNotFound(text=str(who["port"]))
        return web.json_response({"id": item.id, "name": item.name, **who})

    async def redirect_after_write(request: web.Request) -> web.Response:
        item = await aiohttp_db.get_manager(request).create(Item, name="redirected")
        raise web.HTTPSeeOther(f"/items/{item.id}")

    app.router.add_get("/whoami", get_whoami)
    app.router.add_post("/whoami", get_whoami)
    app.router.add_get("/whoami/primary", forced_whoami)
    app.router.add_post("/items", create_item)
    app.router.add_get("/items/{item_id}", read_item)
    app.router.add_post("/redirect", redirect_after_write)
    return app


@pytest.fixture
async def aiohttp_client_for() -> AsyncIterator[Any]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(manager: Manager) -> TestClient[web.Request, web.Application]:
        client = TestClient(TestServer(aiohttp_app(manager), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    try:
        yield start
    finally:
        for client in clients:
            await client.close()


async def test_aiohttp_routing_and_cleanup_ctx(table: None, aiohttp_client_for: Any) -> None:
    manager = make_manager()
    client = await aiohttp_client_for(manager)
    gets = [await (await client.get("/whoami")).json() for _ in range(4)]
    assert {g["port"] for g in gets} == REPLICA_PORTS and all(g["replica"] for g in gets)
    assert await (await client.post("/whoami")).json() == {"port": PRIMARY_PORT, "replica": False}
    assert (await (await client.get("/whoami/primary")).json())["replica"] is False
    by_header = await (await client.get("/whoami", headers={"X-DB-Primary": "yes"})).json()
    assert by_header["replica"] is False
    await client.close()
    assert all(node.closed for node in manager.nodes)  # cleanup_ctx closed the manager


async def test_aiohttp_token_gives_read_your_writes(
    table: None, delayed_replicas: None, aiohttp_client_for: Any
) -> None:
    manager = make_manager()
    client = await aiohttp_client_for(manager)
    created = await client.post("/items", json={"name": "ada"})
    assert created.status == 201
    item = await created.json()
    token = created.headers[HEADER]
    assert COOKIE in created.cookies

    # Same client: its cookie jar returns the token, the read goes to the primary.
    same = await client.get(f"/items/{item['id']}")
    assert same.status == 200
    assert (await same.json())["port"] == PRIMARY_PORT

    # Without the token (cookie jar emptied): a standby that has not replayed the insert.
    client.session.cookie_jar.clear()
    without = await client.get(f"/items/{item['id']}")
    assert without.status == 404
    assert int(await without.text()) in REPLICA_PORTS
    with_header = await client.get(f"/items/{item['id']}", headers={HEADER: token})
    assert with_header.status == 200

    # A raised response (a redirect after a write) carries the token too.
    client.session.cookie_jar.clear()
    redirected = await client.post("/redirect", allow_redirects=False)
    assert redirected.status == 303 and HEADER in redirected.headers
    followed = await client.get(redirected.headers["Location"])
    assert followed.status == 200  # the cookie set by the redirect routes the read


async def test_fastapi_causal_token_carries_the_position(table: None, delayed_replicas: None) -> None:
    """Causal mode: the token holds the primary's WAL position; the cookie is percent-encoded."""
    manager = make_manager(read_your_writes="causal", causal_wait=0.0)
    app = fastapi_app(manager, cookie_max_age=30)
    try:
        async with asgi_client(app) as client:
            created = await client.post("/items", json={"name": "lsn"})
            token = created.headers[HEADER]
            assert token.startswith("v1|t=") and "|p=pg:" in token
            set_cookie = created.headers["set-cookie"]
            assert "|" not in set_cookie.split(";")[0] and "Max-Age=30" in set_cookie
            # No standby is known to have replayed that position (they are 0.5 s behind): the primary.
            read = await client.get(f"/items/{created.json()['id']}")
            assert read.status_code == 200 and read.json()["port"] == PRIMARY_PORT
    finally:
        await manager.close()


async def test_fastapi_header_only(table: None) -> None:
    manager = make_manager()
    app = fastapi_app(manager, cookie=None, header="X-Token")
    try:
        async with asgi_client(app) as client:
            created = await client.post("/items", json={"name": "no cookie"})
            assert "set-cookie" not in created.headers and "X-Token" in created.headers
            state = await client.get("/scope", headers={"X-Token": created.headers["X-Token"]})
            assert state.json()["incoming"] == created.headers["X-Token"]
    finally:
        await manager.close()
