"""Test helpers for applications built on aiopeewee_dist (see docs/testing-your-app.md).

Rolled-back tests: :func:`rolled_back` runs every query of a manager inside one transaction on
its primary that is rolled back at the end; :func:`simulated_manager` builds a manager whose
replicas are simulated on the primary's server, so a test can make them lag, go down or take
over. The pytest plugin (:mod:`aiopeewee_dist.pytest_plugin`, loaded automatically) wraps both
in the ``aiopd`` and ``aiopd_manager`` fixtures.

Fake servers (httpx's ``MockTransport`` is the model): ``fake://NAME`` URLs reach the
:class:`FakeServer` of that name through a driver adapter like the real ones, so the manager,
router, pools, health monitor and transactions run their real code above it::

    from aiopeewee_dist import Manager
    from aiopeewee_dist.testing import FakeCluster

    async def test_lagging_replica() -> None:
        with FakeCluster(replicas=1) as cluster:
            manager = Manager(cluster.primary_url, replicas=cluster.replica_urls, max_lag=5.0)
            async with manager:
                cluster.replicas[0].pause()          # replay stops: the replica falls behind
                ...

Each fake server is a SQLite database (rows are real; Peewee compiles for the SQLite dialect)
with scripted latency, errors, dropped connections, hangs, roles and replication (see
:class:`FakeServer`). Servers are registered by name for the life of the process: close them
(``close()`` or ``with``) at the end of each test.
"""

from __future__ import annotations

from ._cluster import FakeCluster
from ._rollback import RolledBack, rolled_back, simulated_manager
from ._server import FakeServer, Statement
from ._session import FakeConnectionLost
from ._simdriver import SimulatedOutage

__all__ = [
    "FakeCluster",
    "FakeConnectionLost",
    "FakeServer",
    "RolledBack",
    "SimulatedOutage",
    "Statement",
    "rolled_back",
    "simulated_manager",
]
