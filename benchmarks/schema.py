"""Creates and seeds the benchmark tables on the primary (psycopg, idempotent)."""

from __future__ import annotations

import contextlib

import psycopg

from . import settings

ITEM_DDL = (
    "CREATE TABLE IF NOT EXISTS {t}"
    " (id serial PRIMARY KEY, name varchar(64) NOT NULL, value integer NOT NULL)"
)


def _reset_items(conn: psycopg.Connection, table: str, rows: int) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(ITEM_DDL.format(t=table))
    conn.execute(
        f"INSERT INTO {table} (name, value) SELECT 'item ' || g, g FROM generate_series(1, %s) g", (rows,)
    )
    conn.execute(f"ANALYZE {table}")


def prepare(stream_rows: int = 0, shard_rows: int = 0) -> None:
    """Reset ``bench_item`` to SEED_ROWS rows; make sure ``bench_stream`` has at least
    ``stream_rows`` rows and each shard's ``bench_shard_item`` at least ``shard_rows`` (kept
    between runs: filling them takes seconds; a quick run reuses a full run's tables)."""
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        _reset_items(conn, settings.TABLE, settings.SEED_ROWS)
        if stream_rows:
            conn.execute(ITEM_DDL.format(t=settings.STREAM_TABLE))
            have = conn.execute(f"SELECT count(*) FROM {settings.STREAM_TABLE}").fetchone()
            if not have or have[0] < stream_rows:
                _reset_items(conn, settings.STREAM_TABLE, stream_rows)
    if shard_rows:
        for shard in settings.SHARDS:
            with psycopg.connect(settings.conninfo(database=shard), autocommit=True) as conn:
                have = None
                with contextlib.suppress(psycopg.errors.UndefinedTable):
                    have = conn.execute(f"SELECT count(*) FROM {settings.SHARD_TABLE}").fetchone()
                if not have or have[0] < shard_rows:
                    _reset_items(conn, settings.SHARD_TABLE, shard_rows)
