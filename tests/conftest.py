"""Shared fixtures: one real topology per backend, a fresh Manager per test (and per loop).

Backends (``backend`` fixture, parametrised over all four):

- ``sqlite``: a WAL file in tmp_path (writer connection + reader pool), no replicas;
- ``psycopg`` / ``aiopg``: PostgreSQL primary :55432 + standbys :55433, :55434;
- ``mysql``: MariaDB primary :53306 + GTID replica :53307.

Cluster backends are skipped when the cluster is not running, unless
``AIOPD_REQUIRE_CLUSTER=1`` (set by ``make test``), which turns that into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee
import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

import cluster

from aiopeewee_dist import Manager

BACKENDS = ["sqlite", "psycopg", "aiopg", "mysql"]
CLUSTER_BACKENDS = ["psycopg", "aiopg", "mysql"]
REQUIRE_CLUSTER = os.environ.get("AIOPD_REQUIRE_CLUSTER") == "1"

# Verdicts must not depend on the machine's speed: on a loaded 2-core CI runner an example can
# take seconds, which Hypothesis's deadline and too_slow check would report as failures.
settings.register_profile("aiopd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("aiopd")


@dataclass
class Topology:
    """URLs of one backend's nodes and how to ask a server who it is."""

    backend: str
    primary: str
    replicas: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return {"sqlite": "sqlite", "psycopg": "pg", "aiopg": "pg", "mysql": "mysql"}[self.backend]

    @property
    def whoami_sql(self) -> str:
        """SQL answering ``(port, is_replica)`` for the server that runs it."""
        if self.kind == "pg":
            return "SELECT inet_server_port(), pg_is_in_recovery()"
        if self.kind == "mysql":
            return "SELECT @@port, @@read_only"
        return "PRAGMA query_only"  # sqlite: 1 on reader connections, 0 on the writer

    def manager(self, **options: Any) -> Manager:
        """A manager on this topology. The background monitor and read-your-writes are off
        unless asked for, so that routing is deterministic in the core tests."""
        options.setdefault("health_check_interval", None)
        options.setdefault("read_your_writes", None)
        return Manager(self.primary, self.replicas, **options)

    async def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until every replica has replayed the primary's current position."""
        if self.kind == "pg":
            await cluster.wait_pg_replayed(cluster.PG_PRIMARY, cluster.PG_REPLICAS, timeout)
        elif self.kind == "mysql":
            await cluster.wait_mysql_replayed(cluster.MY_PRIMARY, cluster.MY_REPLICA, timeout)


def _scheme(backend: str, url: str) -> str:
    if backend == "aiopg":
        return url.replace("postgresql://", "postgresql+aiopg://", 1)
    return url


def topology_for(backend: str, tmp_path: Path) -> Topology:
    if backend == "sqlite":
        return Topology("sqlite", f"sqlite:///{tmp_path / 'test.db'}")
    kind = "pg" if backend in ("psycopg", "aiopg") else "mysql"
    if not cluster.cluster_available(kind):
        message = f"the {kind} cluster is not running (scripts/cluster.sh start)"
        if REQUIRE_CLUSTER:
            pytest.fail(message)
        pytest.skip(message)
    if kind == "pg":
        replicas = [_scheme(backend, url) for url in cluster.PG_REPLICAS]
        return Topology(backend, _scheme(backend, cluster.PG_PRIMARY), replicas)
    return Topology(backend, cluster.MY_PRIMARY, [cluster.MY_REPLICA])


def _needs_cluster(item: pytest.Item) -> bool:
    """Whether a test talks to the local cluster: a cluster backend among its parameters, a
    cluster-only fixture, or a ``needs_cluster`` skip condition."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    # Backend-parametrised fixtures (``backend``, ``cluster_backend``, test_streaming's ``filled``).
    if any(isinstance(value, str) and value in CLUSTER_BACKENDS for value in params.values()):
        return True
    if {"cluster_topology", "cluster_backend"} & set(getattr(item, "fixturenames", ())):
        return True
    return any(
        "topology not running" in str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif")
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # ``-m "not cluster"`` selects exactly the tests that need no server (SQLite files and the
    # fake servers of aiopeewee_dist.testing count as no server). The chaos suite's scenarios are
    # load tests on every backend, SQLite included: ``slow``, like other full-size runs.
    for item in items:
        if _needs_cluster(item):
            item.add_marker(pytest.mark.cluster)
        if item.path.parent.name == "chaos":
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=CLUSTER_BACKENDS)
def cluster_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def topology(backend: str, tmp_path: Path) -> Topology:
    return topology_for(backend, tmp_path)


@pytest.fixture
def cluster_topology(cluster_backend: str, tmp_path: Path) -> Topology:
    return topology_for(cluster_backend, tmp_path)


@pytest.fixture
async def manager(topology: Topology) -> AsyncIterator[Manager]:
    m = topology.manager(acquire_timeout=5.0)
    try:
        yield m
    finally:
        await m.close()


# -- models shared by the tests ---------------------------------------------------------


class Author(peewee.Model):
    name = peewee.CharField(max_length=64, unique=True)
    age = peewee.IntegerField(default=0)

    class Meta:
        table_name = "t_author"


class Book(peewee.Model):
    author = peewee.ForeignKeyField(Author, backref="books", on_delete="CASCADE")
    title = peewee.CharField(max_length=128)
    pages = peewee.IntegerField(default=100)

    class Meta:
        table_name = "t_book"


MODELS = [Author, Book]


@pytest.fixture
async def tables(manager: Manager, topology: Topology) -> AsyncIterator[Manager]:
    """Fresh ``t_author``/``t_book`` tables on the primary, replicated before the test starts."""
    await manager.drop_tables(MODELS)
    await manager.create_tables(MODELS)
    await topology.wait_replicated()
    yield manager


WaitReplicated = Callable[[], Awaitable[None]]


def sleep_sql(kind: str, seconds: float) -> str:
    """A statement that keeps the server busy for about ``seconds`` (``kind``: "pg", "mysql" or
    "sqlite"); its one row is (anything, the server session id, 0 on SQLite)."""
    if kind == "pg":
        return f"SELECT pg_sleep({seconds}), pg_backend_pid()"
    if kind == "mysql":
        return f"SELECT SLEEP({seconds}), CONNECTION_ID()"
    # SQLite has no sleep: count through a recursive CTE (about 6M rows/s here, so this lasts
    # at least ``seconds`` on a fast machine).
    rows = int(seconds * 8_000_000)
    return (
        f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})"
        " SELECT max(x), 0 FROM c"
    )


def reads_on(manager: Manager, name: str) -> int:
    """Reads the router has sent to node ``name`` so far."""
    return int(manager.stats()["router"].get(f"reads:{name}", 0))


# -- examples --------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    """Run ``examples/<name>`` as a user would: a fresh interpreter with warnings shown,
    ``TMPDIR`` inside ``tmp_path``; it must exit 0 with nothing on stderr. Returns stdout lines."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_REPLICA_URLS")}
    proc = subprocess.run(
        [sys.executable, "-W", "default", str(EXAMPLES / name)],
        cwd=tmp_path,
        env={**base, "TMPDIR": str(tmp_path), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    return proc.stdout.splitlines()


def expect(lines: list[str], *wanted: str) -> None:
    """Every line of ``wanted`` appears in ``lines``."""
    for line in wanted:
        assert line in lines, f"missing {line!r} in:\n" + "\n".join(lines)
