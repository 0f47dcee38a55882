"""Fake database servers for tests that need no server (httpx's ``MockTransport`` is the model).

``fake://NAME`` URLs reach the :class:`FakeServer` of that name through a driver adapter like
the real ones, so the manager, router, pools, health monitor and transactions run their real
code above it::

    from aiopeewee_dist import Manager
    from aiopeewee_dist.testing import FakeCluster

    async def test_lagging_replica() -> None:
        with FakeCluster(replicas=1) as cluster:
            manager = Manager(cluster.primary_url, replicas=cluster.replica_urls, max_lag=5.0)
            async with manager:
                cluster.replicas[0].pause()          # replay stops: the replica falls behind
                ...

Each server is a SQLite database (rows are real; Peewee compiles for the SQLite dialect) with
scripted latency, errors, dropped connections, hangs, roles and replication (see
:class:`FakeServer`). Servers are registered by name for the life of the process: close them
(``close()`` or ``with``) at the end of each test.
"""

from ._cluster import FakeCluster
from ._server import FakeServer, Statement
from ._session import FakeConnectionLost

__all__ = ["FakeCluster", "FakeConnectionLost", "FakeServer", "Statement"]
