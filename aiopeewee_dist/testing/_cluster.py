"""A primary and its replicas as fake servers, with the failover a test scripts."""

from __future__ import annotations

import itertools
from typing import Any

from ._server import FakeServer

__all__ = ["FakeCluster"]

_ids = itertools.count(1)


class FakeCluster:
    """A fake primary with ``replicas`` fake replicas, named uniquely per cluster.

    ``Manager(cluster.primary_url, replicas=cluster.replica_urls)`` runs on it. Close it (or
    use it as a context manager) to drop the servers and their data.
    """

    def __init__(self, replicas: int = 2, *, name: str | None = None, **options: Any) -> None:
        self.name = name or f"cluster{next(_ids)}"
        self.primary = FakeServer(f"{self.name}-primary", **options)
        self.replicas = [
            self.primary.replica(f"{self.name}-replica-{i}", **options) for i in range(1, replicas + 1)
        ]

    def __repr__(self) -> str:
        return f"<FakeCluster {self.name!r} primary={self.primary.name!r} replicas={len(self.replicas)}>"

    @property
    def servers(self) -> list[FakeServer]:
        return [self.primary, *self.replicas]

    @property
    def primary_url(self) -> str:
        return self.primary.url

    @property
    def replica_urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]

    def failover(self, to: FakeServer, *, keep_old: bool = False) -> FakeServer:
        """Promote replica ``to``: the old primary goes down (or, with ``keep_old``, stays up
        read-only and follows ``to``), the other replicas follow ``to``. Returns the old primary."""
        old = self.primary
        if to not in self.replicas:
            raise ValueError(f"{to!r} is not a replica of this cluster")
        to.promote()
        self.replicas.remove(to)
        for replica in self.replicas:
            replica.follow(to)
        if keep_old:
            old.follow(to)
            self.replicas.append(old)
        else:
            old.down()
        self.primary = to
        return old

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __enter__(self) -> FakeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
