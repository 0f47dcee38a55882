"""Connection settings and sizes shared by the orchestrator and the workers (stdlib only)."""

from __future__ import annotations

import os
from urllib.parse import quote

HOST = "127.0.0.1"
_OFFSET = int(os.environ.get("AIOPD_PORT_OFFSET") or 0)  # as scripts/cluster.sh
PRIMARY_PORT = int(os.environ.get("BENCH_PG_PORT") or 55432 + _OFFSET)
REPLICA_PORTS = (55433 + _OFFSET, 55434 + _OFFSET)
USER = "aiopd"
PASSWORD = "p@ss:w/rd 1"
DATABASE = "aiopd"
SHARDS = ("shard1", "shard2", "shard3")

POOL_MAX_SIZE = 16
# BENCH_TABLE_PREFIX lets a smoke run use its own tables while a full run is going on.
PREFIX = os.environ.get("BENCH_TABLE_PREFIX") or "bench"
TABLE = f"{PREFIX}_item"
STREAM_TABLE = f"{PREFIX}_stream"
SHARD_TABLE = f"{PREFIX}_shard_item"
SEED_ROWS = 10_000


def url(port: int = PRIMARY_PORT, database: str = DATABASE, scheme: str = "postgresql") -> str:
    """A URL with the password escaped (it contains '@', ':', '/' and a space)."""
    return f"{scheme}://{USER}:{quote(PASSWORD, safe='')}@{HOST}:{port}/{database}"


def kwargs(port: int = PRIMARY_PORT, database: str = DATABASE) -> dict[str, object]:
    return {"host": HOST, "port": port, "user": USER, "password": PASSWORD, "database": database}


def conninfo(port: int = PRIMARY_PORT, database: str = DATABASE) -> str:
    """A libpq keyword string (quoted values), for psycopg and aiopg."""
    pw = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    return f"host={HOST} port={port} user={USER} password='{pw}' dbname={database}"
