"""The aiopg driver against the real PostgreSQL primary.

aiopg closes a connection itself when a statement is cancelled or times out. Closing it
again (as the pool does with every interrupted connection) must not touch the socket
number it had: libpq freed it at the first close and a newer connection may own it now.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg2
import pytest
from cluster import PG_PRIMARY, needs_cluster, pg_scalar

from aiopeewee_dist._drivers import get_driver
from aiopeewee_dist._url import parse_url

pytestmark = needs_cluster("pg")

URL = parse_url(PG_PRIMARY.replace("postgresql://", "postgresql+aiopg://", 1))
# Generous: a healthy local server answers in milliseconds, a lost reader never does.
ANSWER_WITHIN = 5.0


async def _closed_by_cancellation(driver: Any) -> tuple[Any, int]:
    """A connection aiopg closed itself (statement cut by wait_for), and its old socket number."""
    conn = await driver.connect(URL, timeout=10.0)
    fileno = conn.raw.fileno()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(driver.execute(conn, "SELECT pg_sleep(5)", ()), 0.05)
    assert driver.is_closed(conn)
    return conn, fileno


@pytest.mark.parametrize("how", ["close", "terminate"])
async def test_closing_a_cancelled_connection_leaves_a_reused_socket_alone(how: str) -> None:
    driver = get_driver("aiopg")
    old, old_fileno = await _closed_by_cancellation(driver)
    new = await driver.connect(URL, timeout=10.0)
    try:
        # The kernel hands out the lowest free descriptor: the one libpq just closed.
        assert new.raw.fileno() == old_fileno
        if how == "close":
            await driver.close(old)
        else:
            driver.terminate(old)
        result = await asyncio.wait_for(driver.execute(new, "SELECT 1", ()), ANSWER_WITHIN)
        assert result.rows == [(1,)]
    finally:
        await driver.close(new)


async def test_closing_a_cancelled_connection_does_not_stall_a_connect_in_progress() -> None:
    driver = get_driver("aiopg")
    old, old_fileno = await _closed_by_cancellation(driver)
    connecting = asyncio.ensure_future(driver.connect(URL, timeout=10.0))
    await asyncio.sleep(0)  # psycopg2 opened the socket; the handshake waits for the server
    # What the pool does when the interrupted connection comes back (release -> close).
    await driver.close(old)
    new = await asyncio.wait_for(connecting, ANSWER_WITHIN)
    try:
        assert new.raw.fileno() == old_fileno
        assert (await driver.execute(new, "SELECT 1", ())).rows == [(1,)]
    finally:
        await driver.close(new)


async def test_close_and_terminate_release_an_open_or_broken_connection() -> None:
    driver = get_driver("aiopg")
    for end in ("close", "terminate"):
        for broken in (False, True):
            conn = await driver.connect(URL, timeout=10.0)
            fileno = conn.raw.fileno()
            if broken:  # the server ends the session: psycopg2 then reports closed == 2
                pid = (await driver.execute(conn, "SELECT pg_backend_pid()", ())).rows[0][0]
                await pg_scalar(PG_PRIMARY, f"SELECT pg_terminate_backend({pid})")
                # OperationalError, or InterfaceError when aiopg's reader saw the EOF first.
                with pytest.raises((psycopg2.OperationalError, psycopg2.InterfaceError)):
                    await driver.execute(conn, "SELECT 1", ())
                assert conn.raw.closed == 2
            if end == "close":
                await driver.close(conn)
            else:
                driver.terminate(conn)
            assert conn.raw.closed == 1  # libpq's handle is released
            # Nothing is left watching that socket number.
            assert fileno not in asyncio.get_running_loop()._selector.get_map()  # type: ignore[attr-defined]
