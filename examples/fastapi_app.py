"""A FastAPI app on aiopeewee_dist: GETs read from replicas, writes go to the primary, and a
client reads its own writes on the next request (the middleware sends it a token).

Serve it (``pip install 'aiopeewee-dist[fastapi]' uvicorn``)::

    DATABASE_URL=postgresql://app:secret@db1/app \\
    DATABASE_REPLICA_URLS=postgresql://app:secret@db2/app \\
    uvicorn examples.fastapi_app:app          # or: python examples/fastapi_app.py --serve

Without ``--serve`` the script starts the app on a free loopback port, sends it a few requests
with httpx and stops (on SQLite in a temp directory unless ``DATABASE_URL`` is set).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import peewee
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

from aiopeewee_dist import Manager
from aiopeewee_dist.integrations.fastapi import ManagerDep, force_primary, setup

DEFAULT_DB = Path(tempfile.gettempdir()) / "aiopd-fastapi-example.db"


class Note(peewee.Model):
    id = peewee.AutoField()
    text = peewee.CharField(max_length=200)

    class Meta:
        table_name = "example_fastapi_note"


class NewNote(BaseModel):
    text: str


manager = Manager.from_env(environ={"DATABASE_URL": "sqlite:///" + quote(str(DEFAULT_DB)), **os.environ})


@asynccontextmanager
async def create_tables(app: FastAPI) -> AsyncIterator[None]:
    # Runs inside setup()'s lifespan: the manager is open here and closes after it.
    await manager.create_tables([Note])
    yield


app = FastAPI(title="notes", lifespan=create_tables)
# One call: opens/closes the manager with the app and installs the per-request middleware
# (header X-DB-Consistency / cookie aiopd_consistency carry the read-your-writes token).
setup(app, manager)


@app.post("/notes", status_code=201)
async def create_note(note: NewNote, db: ManagerDep) -> dict[str, Any]:
    created = await db.create(Note, text=note.text)  # POST: the primary
    return {"id": created.id, "text": created.text}


@app.get("/notes/{note_id}")
async def read_note(note_id: int, db: ManagerDep) -> dict[str, Any]:
    # GET: a replica, or the primary if this client's token says it just wrote.
    note = await db.get_or_none(Note, id=note_id)
    if note is None:
        raise HTTPException(status_code=404, detail="no such note")
    return {"id": note.id, "text": note.text}


@app.get("/notes/{note_id}/fresh", dependencies=[Depends(force_primary)])
async def read_note_from_primary(note_id: int, db: ManagerDep) -> dict[str, Any]:
    # force_primary: this GET always reads from the primary, token or not.
    return await read_note(note_id, db)


async def demo() -> None:
    """Serve the app on a free loopback port and talk to it like a client would."""
    import httpx
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():  # startup failed: show why
                serving.result()
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            created = await client.post("/notes", json={"text": "hello"})
            print(f"POST /notes -> {created.status_code} {created.json()}")
            in_header = "X-DB-Consistency" in created.headers
            in_cookie = "aiopd_consistency" in client.cookies
            print(f"  read-your-writes token in the header: {in_header}, in a cookie: {in_cookie}")
            note_id = created.json()["id"]
            read = await client.get(f"/notes/{note_id}")  # the cookie goes back: reads its write
            print(f"GET /notes/{note_id} -> {read.status_code} {read.json()}")
            fresh = await client.get(f"/notes/{note_id}/fresh")
            print(f"GET /notes/{note_id}/fresh -> {fresh.status_code}")
            missing = await client.get("/notes/999999")
            print(f"GET /notes/999999 -> {missing.status_code}")
    finally:
        server.should_exit = True
        await serving
    # The lifespan closed the manager; drop the example's table with a short-lived one.
    async with manager:
        await manager.drop_tables([Note])


if __name__ == "__main__":
    if "--serve" in sys.argv:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
    else:
        try:
            asyncio.run(demo())
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{DEFAULT_DB}{suffix}").unlink(missing_ok=True)
        print("done")
