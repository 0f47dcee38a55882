"""A serverless function (AWS Lambda style): one module-level manager, ``asyncio.run()`` per event.

The platform imports this module once per container ("cold start") and then calls
``handler(event, context)`` for every event, often with a new event loop each time. The
manager is built once, at import, from environment variables; its pools notice the new loop
on the next query and drop the previous loop's connections (they cannot be used from another
loop), so nothing leaks and no "attached to a different loop" error is raised.

Configuration (environment):

- ``DATABASE_URL``: the primary, e.g. ``postgresql://app:secret@db/app?application_name=signup``;
  through PgBouncer in transaction pooling mode works as is (no prepared statements);
  defaults to a SQLite file in the temp directory, so the example runs anywhere;
- ``DATABASE_REPLICA_URLS``: comma-separated read replicas (optional).

Run it: ``.venv/bin/python examples/serverless_handler.py`` (a few events, like a platform would).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import peewee

from aiopeewee_dist import Manager

DEFAULT_DB = Path(tempfile.gettempdir()) / "aiopd-serverless.db"
DEFAULT_URL = "sqlite:///" + quote(str(DEFAULT_DB))


class Signup(peewee.Model):
    id = peewee.AutoField()
    email = peewee.CharField(max_length=128, unique=True)
    created = peewee.DateTimeField(default=datetime.datetime.now)

    class Meta:
        table_name = "serverless_signup"


# Built at import, reused by every invocation of this container.
manager = Manager.from_env(
    environ={"DATABASE_URL": DEFAULT_URL, **os.environ},
    min_size=0,  # no connection is kept open for an idle container ...
    max_size=2,  # ... and few are opened: there are many containers, each doing one thing at a time
    max_idle=10.0,  # connections unused this long are closed (only meaningful on a warm container)
    acquire_timeout=5.0,
    connect_timeout=5.0,
    # No background health monitor: an invocation is too short for it, and its task would
    # only be cancelled when asyncio.run() returns.
    health_check_interval=None,
)
_tables_ready = False  # once per container, not once per event


async def handle(event: dict[str, Any]) -> dict[str, Any]:
    """The async body of one invocation."""
    global _tables_ready
    if not _tables_ready:
        await manager.create_tables([Signup])  # CREATE TABLE IF NOT EXISTS, on the primary
        _tables_ready = True

    if event.get("action") == "signup":
        try:
            signup = await manager.create(Signup, email=event["email"])
        except peewee.IntegrityError:  # the driver's error, as Peewee's own exception
            return {"statusCode": 409, "body": f"{event['email']} is already signed up"}
        return {"statusCode": 201, "body": f"signup #{signup.id}"}

    count = await manager.count(Signup.select())  # a read: a replica if there is one
    return {"statusCode": 200, "body": f"{count} signups"}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The entry point the platform calls: a fresh event loop for every event."""
    return asyncio.run(handle(event))


def main() -> None:
    """What a platform does: call the handler several times in one process."""
    try:
        for email in ("ada@example.com", "alan@example.com", "ada@example.com"):
            print(handler({"action": "signup", "email": email}))
        print(handler({"action": "count"}))
        stats = manager.stats()["primary"]
        print(f"queries on the primary: {stats['queries']}, connections open: {stats['size']}")
    finally:
        # Not needed on a platform (the container is frozen, then killed). In a script it is:
        # SQLite connections live in threads that would keep the interpreter from exiting.
        asyncio.run(clean_up())
        if manager.primary_node.url.dialect == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{DEFAULT_DB}{suffix}").unlink(missing_ok=True)
    print("done")


async def clean_up() -> None:
    """Drop the example's table and close the manager."""
    async with manager:  # (re)opens the pools, closes them on the way out
        await manager.drop_tables([Signup])


if __name__ == "__main__":
    main()
