"""A loopback TCP proxy the chaos tests control: a node that stops answering without closing.

::

    async with ChaosProxy("127.0.0.1", 5432) as proxy:   # listens on 127.0.0.1:proxy.port
        url = proxy.url(PG_PRIMARY)                      # the same URL through the proxy
        proxy.hold()            # sockets stay open, no byte moves either way
        proxy.forward()         # bytes held so far flow on, in order, then new ones
        proxy.blackhole_new()   # existing links keep working; new ones are accepted, never relayed
        await proxy.drop()      # reset every open link, both sides (RST, as a crashed host would)

Modes:

- ``forward``: relay both ways; a new connection gets its own upstream connection.
- ``hold``: a network partition. Bytes already read are kept and nothing is written either
  way, also end-of-stream: a client that gives up and closes is not seen by the server until
  the proxy forwards again, like a FIN retransmitted until the partition heals. A connection
  accepted during a hold opens its upstream connection only once the proxy forwards.
- ``blackhole_new``: links opened before keep relaying; a connection accepted now never gets
  an upstream connection and never receives a byte (it stays so after ``forward()``), until
  the client closes it or :meth:`drop` resets it.

On exit every link is reset and every task ended, so no transport is left to the garbage
collector (pytest runs with ``filterwarnings = error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

Mode = Literal["forward", "hold", "blackhole_new"]
_CHUNK = 65536


class _Link:
    """One client connection and, once relayed, its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.blackholed = False

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]


class ChaosProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.mode: Mode = "forward"
        self.accepted = 0  # connections accepted since start
        self.relayed = 0  # upstream connections opened
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: dict[asyncio.Task[Any], _Link] = {}
        self._server: asyncio.Server | None = None
        self.port = 0

    @classmethod
    def for_url(cls, url: str) -> ChaosProxy:
        """A proxy in front of the server ``url`` names."""
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        return cls(parts.hostname, parts.port)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's (userinfo, path, query kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def links(self) -> int:
        """Client connections open now."""
        return len(self._links)

    # -- modes ----------------------------------------------------------------------------

    def forward(self) -> None:
        self.mode = "forward"
        self._flowing.set()

    def hold(self) -> None:
        self.mode = "hold"
        self._flowing.clear()

    def blackhole_new(self) -> None:
        self.mode = "blackhole_new"
        self._flowing.set()

    async def drop(self) -> None:
        """Reset every open link on both sides; the mode stays as it is."""
        tasks = list(self._links)
        for link in self._links.values():
            for writer in link.writers():
                _reset(writer)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> ChaosProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ChaosProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- relaying ---------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        link = self._links[task] = _Link(writer)
        self.accepted += 1
        try:
            if self.mode == "blackhole_new":
                link.blackholed = True
                while await reader.read(_CHUNK):  # swallow everything until the client leaves
                    pass
                return
            await self._flowing.wait()
            up_reader, link.upstream = await asyncio.open_connection(*self.target)
            self.relayed += 1
            pumps = [
                asyncio.create_task(self._pump(reader, link.upstream)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            try:
                # Either side ending ends the link: neither protocol uses half-closed sockets.
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            # Upstream refused, a side reset, or drop()/close(): the link ends. The
            # cancellation is not passed on: asyncio's stream server logs a cancelled handler.
            pass
        finally:
            del self._links[task]
            for side in link.writers():
                side.close()
                with contextlib.suppress(Exception):
                    await side.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = await reader.read(_CHUNK)
                await self._flowing.wait()  # hold: keep what was read, write nothing (not even EOF)
                if not data:
                    return
                writer.write(data)
                await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: the peer's next read fails with 'connection reset'."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
