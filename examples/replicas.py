"""Read replicas: where each query runs, and reading your own writes.

Run it on SQLite (no replicas; every query runs on the one file)::

    .venv/bin/python examples/replicas.py

or on a primary with replicas (``scripts/cluster.sh env`` prints these for the test cluster)::

    DATABASE_URL=postgresql://app:secret@db1/app \\
    DATABASE_REPLICA_URLS=postgresql://app:secret@db2/app,postgresql://app:secret@db3/app \\
    .venv/bin/python examples/replicas.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import peewee

from aiopeewee_dist import Manager

T = TypeVar("T")


class Note(peewee.Model):
    id = peewee.AutoField()
    text = peewee.CharField(max_length=200)

    class Meta:
        table_name = "example_replicas_note"


async def ran_on(manager: Manager, call: Awaitable[T]) -> tuple[T, str]:
    """Run one call and tell where the router sent it (from the router's counters)."""
    before = dict(manager.stats()["router"])
    result = await call
    after: dict[str, int] = manager.stats()["router"]
    moved = [key for key in after if after[key] > before.get(key, 0)]
    nodes = [key.removeprefix("reads:") for key in moved if key.startswith("reads:")]
    if "writes" in moved:
        nodes.insert(0, manager.primary_node.name)  # writes only ever go to the primary
    return result, ",".join(nodes)


async def main(url: str, replica_urls: list[str]) -> None:
    manager = Manager(
        url,
        replica_urls,
        # causal: after a write, reads go to a replica that has replayed it (or the primary);
        # "sticky" would read from the primary for sticky_seconds after a write instead.
        read_your_writes="causal",
        causal_wait=1.0,  # wait up to 1 s for a replica to catch up before using the primary
        health_check_interval=0.5,
    )
    print(f"nodes: {', '.join(node.name for node in manager.nodes)}")
    async with manager:
        await manager.drop_tables([Note])  # DDL always runs on the primary
        await manager.create_tables([Note])

        note, node = await ran_on(manager, manager.create(Note, text="written"))
        print(f"insert ran on: {node}")  # writes: always the primary

        # Read-your-writes: this read waits (bounded) for a replica that replayed the insert.
        rows, node = await ran_on(manager, manager.execute(Note.select()))
        print(f"read after the write ran on: {node}, saw {len(rows)} note(s)")

        # The session travels as a token: another request (or process) continues it.
        token = manager.consistency_token()
        with manager.consistency(token):
            found, node = await ran_on(manager, manager.get_or_none(Note, id=note.id))
            print(f"another request with the token ran on: {node}, found the note: {found is not None}")

        with manager.primary():  # this block reads from the primary
            _, node = await ran_on(manager, manager.count(Note.select()))
            print(f"inside primary(): {node}")

        if manager.replicas:
            name = manager.replicas[-1].name
            with manager.using(name):  # everything in this block goes to that node
                _, node = await ran_on(manager, manager.raw_sql("SELECT 1"))
                print(f"inside using({name!r}): {node}")

        router: dict[str, Any] = manager.stats()["router"]
        print(f"router: {router.get('reads', 0)} reads, {router.get('writes', 0)} writes")
        await manager.drop_tables([Note])
    print("done")


if __name__ == "__main__":
    replicas = [u.strip() for u in os.environ.get("DATABASE_REPLICA_URLS", "").split(",") if u.strip()]
    if os.environ.get("DATABASE_URL"):
        asyncio.run(main(os.environ["DATABASE_URL"], replicas))
    else:
        with tempfile.TemporaryDirectory(prefix="aiopd-replicas-") as tmp:
            asyncio.run(main("sqlite:///" + quote(str(Path(tmp) / "replicas.db")), replicas))
