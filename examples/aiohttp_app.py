"""An aiohttp.web app on aiopeewee_dist: GETs read from replicas, writes go to the primary, and
a client reads its own writes on the next request (the middleware sends it a token).

Serve it (``pip install 'aiopeewee-dist[aiohttp]'``)::

    DATABASE_URL=postgresql://app:secret@db1/app \\
    DATABASE_REPLICA_URLS=postgresql://app:secret@db2/app \\
    python examples/aiohttp_app.py --serve

Without ``--serve`` the script starts the app on a free loopback port, sends it a few requests
with aiohttp's client and stops (on SQLite in a temp directory unless ``DATABASE_URL`` is set).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import peewee
from aiohttp import web

from aiopeewee_dist import Manager
from aiopeewee_dist.integrations.aiohttp import MANAGER_KEY, force_primary, get_manager, setup

DEFAULT_DB = Path(tempfile.gettempdir()) / "aiopd-aiohttp-example.db"


class Note(peewee.Model):
    id = peewee.AutoField()
    text = peewee.CharField(max_length=200)

    class Meta:
        table_name = "example_aiohttp_note"


async def create_note(request: web.Request) -> web.Response:
    body = await request.json()
    note = await get_manager(request).create(Note, text=str(body["text"]))  # POST: the primary
    return web.json_response({"id": note.id, "text": note.text}, status=201)


async def read_note(request: web.Request) -> web.Response:
    # GET: a replica, or the primary if this client's token says it just wrote.
    note = await get_manager(request).get_or_none(Note, id=int(request.match_info["note_id"]))
    if note is None:
        raise web.HTTPNotFound(text="no such note")
    return web.json_response({"id": note.id, "text": note.text})


@force_primary  # this GET always reads from the primary, token or not
async def read_note_from_primary(request: web.Request) -> web.Response:
    return await read_note(request)


async def create_tables(app: web.Application) -> AsyncIterator[None]:
    # A cleanup context added after setup(): the manager is open here, and closes after it.
    db = app[MANAGER_KEY]
    await db.create_tables([Note])
    yield
    # Dropped at shutdown only because this is a throwaway example.
    await db.drop_tables([Note])


def make_app(manager: Manager) -> web.Application:
    app = web.Application()
    # One call: cleanup_ctx opens/closes the manager; the middleware routes every request
    # (header X-DB-Consistency / cookie aiopd_consistency carry the read-your-writes token).
    setup(app, manager)
    app.cleanup_ctx.append(create_tables)
    app.router.add_post("/notes", create_note)
    app.router.add_get("/notes/{note_id}", read_note)
    app.router.add_get("/notes/{note_id}/fresh", read_note_from_primary)
    return app


async def demo(app: web.Application) -> None:
    """Serve the app on a free loopback port and talk to it like a client would."""
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts' startup halves: the manager connects
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        # unsafe=True: accept cookies from an IP address (127.0.0.1), which aiohttp refuses by default.
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", cookie_jar=jar) as client:
            async with client.post("/notes", json={"text": "hello"}) as created:
                note = await created.json()
                print(f"POST /notes -> {created.status} {note}")
                print(f"  read-your-writes token in the header: {'X-DB-Consistency' in created.headers}")
            async with client.get(f"/notes/{note['id']}") as read:  # the cookie goes back
                print(f"GET /notes/{note['id']} -> {read.status} {await read.json()}")
            async with client.get(f"/notes/{note['id']}/fresh") as fresh:
                print(f"GET /notes/{note['id']}/fresh -> {fresh.status}")
            async with client.get("/notes/999999") as missing:
                print(f"GET /notes/999999 -> {missing.status}")
    finally:
        await runner.cleanup()  # the cleanup contexts' shutdown halves: the manager closes


if __name__ == "__main__":
    default_url = "sqlite:///" + quote(str(DEFAULT_DB))
    app = make_app(Manager.from_env(environ={"DATABASE_URL": default_url, **os.environ}))
    if "--serve" in sys.argv:
        web.run_app(app, host="127.0.0.1", port=8000)
    else:
        try:
            asyncio.run(demo(app))
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{DEFAULT_DB}{suffix}").unlink(missing_ok=True)
        print("done")
