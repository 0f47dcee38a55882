"""The chaos proxy itself, against a loopback echo server (no database needed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from cluster import until

from chaos.proxy import ChaosProxy

WAIT = 5.0  # bound on anything that should happen
SILENCE = 0.3  # how long "nothing arrives" is watched


class Echo:
    """An echo server that records what it saw: connections and the EOFs it received."""

    def __init__(self) -> None:
        self.connections = 0
        self.eofs = 0
        self.eof_seen = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
            self.eofs += 1
            self.eof_seen.set()
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Echo, int]]:
    state = Echo()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    try:
        yield state, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in state.writers:
            writer.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def client(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), WAIT)


async def silent(reader: asyncio.StreamReader) -> bool:
    """True if nothing (not even EOF) arrives within SILENCE."""
    try:
        await asyncio.wait_for(reader.read(1), SILENCE)
    except asyncio.TimeoutError:
        return True
    return False


async def test_forward_hold_forward(echo: tuple[Echo, int]) -> None:
    state, port = echo
    async with asyncio.timeout(20), ChaosProxy("127.0.0.1", port) as proxy, client(proxy.port) as (r, w):
        assert await roundtrip(r, w, b"hello") == b"hello"
        proxy.hold()
        w.write(b"held")
        assert await silent(r)
        # A connection opened during the hold reaches nobody until the proxy forwards.
        async with client(proxy.port) as (r2, w2):
            w2.write(b"late")
            assert await silent(r2)
            assert state.connections == 1
            proxy.forward()
            # What was held flows on, in order, and the link works as before.
            assert await asyncio.wait_for(r.readexactly(4), WAIT) == b"held"
            assert await asyncio.wait_for(r2.readexactly(4), WAIT) == b"late"
            assert await roundtrip(r, w, b"again") == b"again"
        assert state.connections == 2


async def test_hold_keeps_the_client_close_from_the_server(echo: tuple[Echo, int]) -> None:
    state, port = echo
    async with asyncio.timeout(20), ChaosProxy("127.0.0.1", port) as proxy:
        async with client(proxy.port) as (r, w):
            assert await roundtrip(r, w, b"x") == b"x"
            proxy.hold()
        await asyncio.sleep(SILENCE)  # the client is gone; the server must not know yet
        assert state.eofs == 0 and proxy.links == 1
        proxy.forward()
        await asyncio.wait_for(state.eof_seen.wait(), WAIT)
        await until(lambda: proxy.links == 0, WAIT, "the link to end")


async def test_blackhole_new_keeps_existing_links(echo: tuple[Echo, int]) -> None:
    state, port = echo
    async with asyncio.timeout(20), ChaosProxy("127.0.0.1", port) as proxy, client(proxy.port) as (r, w):
        assert await roundtrip(r, w, b"before") == b"before"
        proxy.blackhole_new()
        async with client(proxy.port) as (r2, w2):
            w2.write(b"void")
            assert await silent(r2)
            assert await roundtrip(r, w, b"still") == b"still"
            proxy.forward()
            assert await silent(r2)  # a blackholed link stays so
            async with client(proxy.port) as (r3, w3):
                assert await roundtrip(r3, w3, b"new") == b"new"
        assert state.connections == 2 and proxy.relayed == 2 and proxy.accepted == 3


async def test_drop_resets_both_sides(echo: tuple[Echo, int]) -> None:
    state, port = echo
    async with asyncio.timeout(20), ChaosProxy("127.0.0.1", port) as proxy, client(proxy.port) as (r, w):
        assert await roundtrip(r, w, b"x") == b"x"
        proxy.hold()
        await proxy.drop()
        assert proxy.links == 0
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(r.read(1), WAIT)
        # The server side was reset too: its handler ended without seeing a clean EOF.
        await until(lambda: state.writers[0].is_closing(), WAIT, "the server side to close")
        assert state.eofs == 0
        proxy.forward()
        async with client(proxy.port) as (r2, w2):
            assert await roundtrip(r2, w2, b"after") == b"after"


async def test_exit_closes_everything(echo: tuple[Echo, int]) -> None:
    _, port = echo
    async with asyncio.timeout(20):
        async with ChaosProxy("127.0.0.1", port) as proxy:
            async with client(proxy.port) as (r, w):
                assert await roundtrip(r, w, b"x") == b"x"
                proxy.hold()
                w.write(b"y")
                held_port = proxy.port
                before = len(asyncio.all_tasks())
            async with client(proxy.port):
                pass
        assert proxy.links == 0
        assert len(asyncio.all_tasks()) < before
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", held_port)


def test_url_goes_through_the_proxy() -> None:
    proxy = ChaosProxy.for_url("postgresql://u:p%40ss@db.example:5432/app?name=x")
    assert proxy.target == ("db.example", 5432)
    proxy.port = 40000
    assert proxy.url("postgresql://u:p%40ss@db.example:5432/app?name=x") == (
        "postgresql://u:p%40ss@127.0.0.1:40000/app?name=x"
    )
