"""The Galera provider: one writer at a time, reads on the other Synced nodes.

Every node of a Galera cluster accepts writes, but two nodes writing the same rows at once
make certification conflicts (the loser's transaction fails with MySQL error 1213 at its next
statement or COMMIT). Sending every write to one node avoids them. Each refresh asks every
node for its ``wsrep_ready``, ``wsrep_local_state_comment`` and ``wsrep_cluster_status``: a node
is fit only when it is ``ON``, ``Synced`` and in the ``Primary`` component, so a donor, a desynced
node or one cut off in a non-primary component leaves the rotation. The writer stays the same
while it is fit; when it is not, writing moves to the first fit node in the order given.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from ._errors import ConfigurationError, NodeUnavailable
from ._node import Node
from ._options import PoolOptions
from ._providers import Member, TopologySnapshot, check_interval
from ._url import parse_url

__all__ = ["WSREP_SQL", "GaleraProvider"]

#: One row: (wsrep_ready, wsrep_local_state_comment, wsrep_cluster_status).
WSREP_SQL = (
    "SELECT"
    " (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_READY'),"
    " (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
    " WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE_COMMENT'),"
    " (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
    " WHERE VARIABLE_NAME = 'WSREP_CLUSTER_STATUS')"
)
_CAUSAL = "init_command=" + quote("SET SESSION wsrep_sync_wait=1", safe="")


class GaleraProvider:
    """Where to write and read on a Galera cluster, from the nodes' own wsrep status.

    ::

        provider = GaleraProvider({"g1": url1, "g2": url2, "g3": url3})
        manager = await Manager.from_provider(provider, refresh_interval=0.5)

    ``urls``: the nodes' ``mysql://`` URLs, a list (named ``galera-1``, ...) or a ``{name: url}``
    mapping; the order is the order of preference for the writer. ``timeout`` bounds each status
    query (seconds). ``causal_reads=True`` makes every read wait until its node has applied
    everything the cluster committed before it (``wsrep_sync_wait=1``): read-your-writes and
    no stale read at the price of a cluster round trip per read.
    """

    def __init__(
        self,
        urls: Sequence[str] | Mapping[str, str],
        *,
        timeout: float = 1.0,
        causal_reads: bool = False,
    ) -> None:
        if isinstance(urls, str) or not urls:
            raise ConfigurationError(
                "GaleraProvider: urls must be a non-empty list (or mapping) of mysql:// URLs"
            )
        named = dict(urls) if isinstance(urls, Mapping) else {f"galera-{i}": u for i, u in enumerate(urls, 1)}
        self.timeout = check_interval("GaleraProvider: timeout", timeout, 0.05, 60.0)
        options = PoolOptions(max_size=1, connect_timeout=self.timeout, acquire_timeout=self.timeout)
        self._nodes: dict[str, Node] = {}
        self._urls: dict[str, str] = {}
        for name, url in named.items():
            parsed = parse_url(url)
            if parsed.dialect != "mysql":
                raise ConfigurationError(f"GaleraProvider: node {name!r} is not a MySQL/MariaDB URL")
            # Status sessions select no database: they never show up among the application's.
            status_url = dataclasses.replace(parsed, database="")
            self._nodes[name] = Node(status_url, name=f"{name}/status", role="primary", options=options)
            self._urls[name] = url
        self.causal_reads = bool(causal_reads)
        self.writer: str | None = None
        #: Each node's last status: (ready, state, cluster status), or the error that stood for it.
        self.status: dict[str, tuple[str, str, str] | str] = {}

    def __repr__(self) -> str:
        return f"<GaleraProvider {', '.join(self._nodes)}>"

    def _reader_url(self, name: str) -> str:
        url = self._urls[name]
        if not self.causal_reads:
            return url
        return f"{url}{'&' if '?' in url else '?'}{_CAUSAL}"

    async def _fit(self, name: str) -> bool:
        try:
            row = await self._nodes[name].probe(WSREP_SQL, self.timeout)
        except Exception as exc:  # unreachable: not fit (the next refresh asks again)
            self.status[name] = f"{type(exc).__name__}: {exc}"
            return False
        ready, state, cluster = (_text(v) for v in (row or ("", "", "")))
        self.status[name] = (ready, state, cluster)
        return ready == "ON" and state == "Synced" and cluster == "Primary"

    async def fetch(self) -> TopologySnapshot:
        """Ask every node at once; NodeUnavailable when none is fit."""
        names = list(self._nodes)
        fit = dict(zip(names, await asyncio.gather(*(self._fit(n) for n in names)), strict=True))
        healthy = [name for name in names if fit[name]]
        if not healthy:
            raise NodeUnavailable(f"no Galera node is ready, Synced and Primary: {self.status}")
        if self.writer not in healthy:
            self.writer = healthy[0]
        writer = self.writer
        readers = tuple(Member(n, self._reader_url(n), "Synced") for n in healthy if n != writer)
        return TopologySnapshot(Member(writer, self._urls[writer], "Synced"), readers)

    async def close(self) -> None:
        for node in self._nodes.values():
            await node.close()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value or "")
