"""Which contenders exist, which module implements each and which venv runs it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    name: str
    module: str
    venv: str
    label: str
    kind: str  # "driver", "orm" (a peer) or "ours"


CONTENDERS: tuple[Entry, ...] = (
    Entry("psycopg", "psycopg_raw", "main", "raw psycopg 3 (AsyncConnectionPool)", "driver"),
    Entry(
        "psycopg_client",
        "psycopg_client",
        "main",
        "raw psycopg 3, client-side binding, no prepare (aiopeewee_dist's driver settings)",
        "driver",
    ),
    Entry(
        "asyncpg_held",
        "asyncpg_held",
        "main",
        "raw asyncpg, one held connection per task (the limit)",
        "driver",
    ),
    Entry("asyncpg", "asyncpg_raw", "main", "raw asyncpg (its pool, per operation)", "driver"),
    Entry("aiopg", "aiopg_raw", "main", "raw aiopg", "driver"),
    Entry("peewee_async", "peewee_async_raw", "main", "peewee-async (Psycopg3Database + AioModel)", "orm"),
    Entry("pwasyncio", "pwasyncio", "main", "peewee 4 playhouse.pwasyncio (asyncpg)", "orm"),
    Entry("peewee_aio", "peewee_aio_raw", "peewee-aio", "peewee-aio (aio-databases, asyncpg)", "orm"),
    Entry("sqlalchemy", "sqlalchemy_orm", "main", "SQLAlchemy 2 async ORM (asyncpg)", "orm"),
    Entry("tortoise", "tortoise_orm", "tortoise", "Tortoise ORM (asyncpg)", "orm"),
    Entry("aiopd", "aiopd", "main", "aiopeewee_dist, primary only (psycopg 3)", "ours"),
    Entry("aiopd_asyncpg", "aiopd_asyncpg", "main", "aiopeewee_dist, primary only (asyncpg)", "ours"),
    Entry("aiopd_aiopg", "aiopd_aiopg", "main", "aiopeewee_dist, primary only (aiopg)", "ours"),
    Entry("aiopd_replicas", "aiopd_replicas", "main", "aiopeewee_dist, primary + 2 replicas", "ours"),
)

BASELINE = "psycopg"
QUICK = ("psycopg", "aiopd")
BY_NAME = {entry.name: entry for entry in CONTENDERS}
