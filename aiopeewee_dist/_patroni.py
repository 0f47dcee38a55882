"""The Patroni provider: the topology from Patroni's REST API ``GET /cluster``.

Any member's REST API answers for the whole cluster (it reads the DCS), so the provider asks
the members in turn, starting with the one that answered last, and one member down costs at
most one ``timeout``. The leader becomes the primary; members with role ``replica`` or
``sync_standby`` in an accepted state (``streaming``, or ``running``: up but not streaming, as
every replica is while the leader is lost) and within ``max_lag_bytes``
become the replicas, once they are on the leader's timeline.
Needs ``aiohttp`` (``pip install 'aiopeewee-dist[patroni]'``).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from ._errors import ConfigurationError, NodeUnavailable
from ._providers import Member, TopologySnapshot, check_interval

__all__ = ["PatroniProvider"]

_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg3", "postgresql+aiopg")


def _aiohttp() -> Any:
    try:
        return importlib.import_module("aiohttp")
    except ImportError:
        raise ConfigurationError(
            "PatroniProvider needs aiohttp: pip install 'aiopeewee-dist[patroni]'"
        ) from None


class PatroniProvider:
    """Where the primary and the replicas are, according to Patroni.

    ::

        provider = PatroniProvider(
            ["http://db1:8008", "http://db2:8008", "http://db3:8008"],
            user="app", password="secret", database="app",
        )
        manager = await Manager.from_provider(provider, refresh_interval=1.0)

    ``rest_urls``: the members' REST API base URLs. ``user``, ``password``, ``database`` and
    ``options`` (a URL query string such as ``"sslmode=require"``) complete the node URLs built
    from each member's ``host:port``. ``scheme`` picks the driver. ``timeout`` bounds each REST
    call (seconds). ``states``: member states fit for reads. ``max_lag_bytes``: replicas further
    behind the leader than this (Patroni's ``lag``) get no reads; None accepts any lag (the
    manager's own ``max_lag`` still applies).
    """

    def __init__(
        self,
        rest_urls: Sequence[str],
        *,
        user: str,
        password: str = "",
        database: str = "postgres",
        scheme: str = "postgresql",
        options: str = "",
        timeout: float = 1.0,
        states: Sequence[str] = ("streaming", "running"),
        max_lag_bytes: int | None = None,
    ) -> None:
        if isinstance(rest_urls, str) or not rest_urls:
            raise ConfigurationError("PatroniProvider: rest_urls must be a non-empty list of http(s) URLs")
        for url in rest_urls:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                raise ConfigurationError(f"PatroniProvider: not an http(s) URL: {url!r}")
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                f"PatroniProvider: scheme must be one of {', '.join(_SCHEMES)}, got {scheme!r}"
            )
        bad_lag = isinstance(max_lag_bytes, bool) or not isinstance(max_lag_bytes, int) or max_lag_bytes < 0
        if max_lag_bytes is not None and bad_lag:
            raise ConfigurationError(
                f"PatroniProvider: max_lag_bytes must be an integer >= 0, got {max_lag_bytes!r}"
            )
        self.rest_urls = [url.rstrip("/") for url in rest_urls]
        self.timeout = check_interval("PatroniProvider: timeout", timeout, 0.05, 60.0)
        self.states = frozenset(states)
        self.max_lag_bytes = max_lag_bytes
        self._userinfo = (
            f"{quote(user, safe='')}:{quote(password, safe='')}" if password else quote(user, safe="")
        )
        self._tail = f"/{quote(database, safe='')}" + (f"?{options.lstrip('?')}" if options else "")
        self._scheme = scheme
        self._first = 0
        self._session: Any = None

    def __repr__(self) -> str:
        return f"<PatroniProvider {', '.join(self.rest_urls)}>"

    def member_url(self, host: str, port: int) -> str:
        host_text = f"[{host}]" if ":" in host else host
        return f"{self._scheme}://{self._userinfo}@{host_text}:{port}{self._tail}"

    async def fetch(self) -> TopologySnapshot:
        """``GET /cluster`` from the first member that answers; NodeUnavailable if none does."""
        data = await self.cluster()
        return self.snapshot(data)

    async def cluster(self) -> dict[str, Any]:
        """The raw ``/cluster`` document."""
        aiohttp = _aiohttp()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        errors: list[str] = []
        count = len(self.rest_urls)
        for step in range(count):
            index = (self._first + step) % count
            url = self.rest_urls[index]
            try:
                async with self._session.get(f"{url}/cluster") as response:
                    response.raise_for_status()
                    data: dict[str, Any] = await response.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            self._first = index
            return data
        raise NodeUnavailable("no Patroni REST API answered: " + "; ".join(errors))

    def snapshot(self, data: dict[str, Any]) -> TopologySnapshot:
        """The topology a ``/cluster`` document describes."""
        primary: Member | None = None
        candidates: list[tuple[Member, Any]] = []
        leader_timeline: Any = None
        for item in data.get("members", []):
            name, host, port = item.get("name"), item.get("host"), item.get("port")
            if not isinstance(name, str) or not isinstance(host, str) or not isinstance(port, int):
                continue
            lag = item.get("lag")
            member = Member(
                name,
                self.member_url(host, port),
                str(item.get("state", "")),
                lag if isinstance(lag, int) else None,
            )
            role = item.get("role")
            if role in ("leader", "standby_leader", "master", "primary"):
                primary, leader_timeline = member, item.get("timeline")
            elif role in ("replica", "sync_standby", "quorum_standby") and self._readable(member):
                candidates.append((member, item.get("timeline")))
        # Right after a failover a replica still on the old timeline has not started following
        # the new leader yet: it misses every write since, so it gets no reads until it has.
        replicas = [m for m, timeline in candidates if leader_timeline is None or timeline == leader_timeline]
        if primary is not None and primary.state != "running":
            # A leader stopping (switchover) or not up yet: the members are mid-transition and
            # their states say little; no snapshot keeps the nodes as they were until it settles.
            return TopologySnapshot(None, ())
        return TopologySnapshot(primary, tuple(sorted(replicas, key=lambda m: m.name)))

    def _readable(self, member: Member) -> bool:
        if member.state not in self.states:
            return False
        return self.max_lag_bytes is None or (member.lag is not None and member.lag <= self.max_lag_bytes)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
