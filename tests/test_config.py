"""Configuration errors name the part at fault; passwords never leak (reprs, messages, logs);
connecting fails fast and as peewee.OperationalError (wrong password, closed or silent port)."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import peewee
import pytest
from cluster import APP_PASSWORD, MY_PRIMARY, MY_REPLICA, PG_PRIMARY, my_scalar, pg_scalar, until
from conftest import Topology

import aiopeewee_dist._drivers as drivers
from aiopeewee_dist import ConfigurationError, Manager

ESCAPED = "p%40ss%3Aw%2Frd%201"
assert APP_PASSWORD == "p@ss:w/rd 1"
SECRETS = (APP_PASSWORD, ESCAPED)

PG = f"postgresql://aiopd:{ESCAPED}@127.0.0.1:55432/aiopd"
PG_REPLICA = f"postgresql://aiopd:{ESCAPED}@127.0.0.1:55433/aiopd"
MY = f"mysql://aiopd:{ESCAPED}@127.0.0.1:53306/aiopd"


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"password {secret!r} leaked in: {text}"


def with_netloc(url: str, *, password: str | None = None, port: int | None = None) -> str:
    """``url`` with another password and/or port (the cluster URLs may come from AIOPD_*)."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, old_password = userinfo.partition(":")
    host = hostport.rsplit(":", 1)[0]
    netloc = f"{user}:{old_password if password is None else password}@{host}:{port or parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def no_monitor(**options: Any) -> dict[str, Any]:
    """As conftest's Topology.manager: no background monitor, no read-your-writes."""
    options.setdefault("health_check_interval", None)
    options.setdefault("read_your_writes", None)
    return options


# -- each bad configuration names its part ------------------------------------------------

BAD_CONFIGS: list[tuple[str, Callable[[], Any], tuple[str, ...]]] = [
    ("unknown scheme", lambda: Manager(f"oracle://aiopd:{ESCAPED}@127.0.0.1/aiopd"), ("scheme", "'oracle'")),
    ("port out of range", lambda: Manager(f"postgresql://aiopd:{ESCAPED}@127.0.0.1:99999/aiopd"), ("port",)),
    ("port not a number", lambda: Manager(f"postgresql://aiopd:{ESCAPED}@127.0.0.1:5x32/aiopd"), ("port",)),
    (
        "missing database",
        lambda: Manager(f"postgresql://aiopd:{ESCAPED}@127.0.0.1:55432/"),
        ("database name",),
    ),
    (
        "missing database (mysql)",
        lambda: Manager(f"mysql://aiopd:{ESCAPED}@127.0.0.1:53306"),
        ("database name",),
    ),
    ("unknown query option", lambda: Manager(f"{PG}?frobnicate=1"), ("'frobnicate'",)),
    ("unknown mysql query option", lambda: Manager(f"{MY}?sslmode=require"), ("'sslmode'",)),
    ("max_size=0", lambda: Manager(PG, max_size=0), ("max_size",)),
    ("min_size > max_size", lambda: Manager(PG, min_size=5, max_size=2), ("min_size", "max_size")),
    ("acquire_timeout=-1", lambda: Manager(PG, acquire_timeout=-1), ("acquire_timeout",)),
    ("max_size=ten in URL", lambda: Manager(f"{PG}?max_size=ten"), ("max_size", "'ten'")),
    ("replica min_size above max_size", lambda: Manager(PG, [f"{PG_REPLICA}?min_size=20"]), ("min_size",)),
    (
        "duplicate replica names",
        lambda: Manager(PG, [f"{PG_REPLICA}?name=east", f"{PG_REPLICA}?name=east"]),
        ("'east'", "unique"),
    ),
    ("replica named like the primary", lambda: Manager(PG, {"primary": PG_REPLICA}), ("'primary'", "unique")),
    ("mixed dialects", lambda: Manager(PG, [MY]), ("dialect", "mysql", "postgresql")),
    ("replicas as one string", lambda: Manager(PG, PG_REPLICA), ("replicas", "list")),
    ("unknown strategy", lambda: Manager(PG, [PG_REPLICA], strategy="fastest"), ("strategy", "'fastest'")),
    ("from_env without DATABASE_URL", lambda: Manager.from_env(environ={}), ("DATABASE_URL",)),
    (
        "from_env with a bad replica URL",
        lambda: Manager.from_env(
            environ={"DATABASE_URL": PG, "DATABASE_REPLICA_URLS": f"{PG_REPLICA},redis://x"}
        ),
        ("scheme", "'redis'"),
    ),
]


@pytest.mark.parametrize(("case", "make", "parts"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_configuration_names_the_part(case: str, make: Callable[[], Any], parts: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        make()
    message = str(excinfo.value)
    for part in parts:
        assert part in message, f"{case}: {part!r} not named in {message!r}"
    assert isinstance(excinfo.value, ValueError)
    assert_no_secret(message)
    assert_no_secret(repr(excinfo.value))
    # The cause chain would show up in tracebacks too.
    cause = excinfo.value.__cause__ or excinfo.value.__context__
    while cause is not None:
        assert_no_secret(str(cause))
        cause = cause.__cause__ or cause.__context__


def test_from_env_primary_only() -> None:
    manager = Manager.from_env(environ={"DATABASE_URL": f"  {PG}  "}, **no_monitor())
    assert [n.name for n in manager.nodes] == ["primary"]
    assert manager.primary_node.role == "primary"
    assert manager.primary_node.url.port == 55432
    assert manager.replicas == []


def test_from_env_with_comma_separated_replicas() -> None:
    replicas = f"{PG_REPLICA}, postgresql://aiopd:{ESCAPED}@127.0.0.1:55434/aiopd ,"
    manager = Manager.from_env(
        environ={"DATABASE_URL": PG, "DATABASE_REPLICA_URLS": replicas}, **no_monitor()
    )
    assert [(n.name, n.role, n.url.port) for n in manager.nodes] == [
        ("primary", "primary", 55432),
        ("replica-1", "replica", 55433),
        ("replica-2", "replica", 55434),
    ]
    assert manager.node("replica-2") is manager.replicas[1]
    # Other variable names, and options passed on to the manager.
    manager = Manager.from_env(
        primary_var="APP_DB",
        replicas_var="APP_DB_RO",
        environ={"APP_DB": MY, "APP_DB_RO": MY_REPLICA},
        max_size=3,
    )
    assert [n.name for n in manager.nodes] == ["primary", "replica-1"]
    assert all(n.options.max_size == 3 for n in manager.nodes)


@pytest.mark.parametrize(
    ("backend", "module", "url", "extra"),
    [
        ("aiomysql", "aiomysql", MY, "mysql"),
        ("psycopg", "psycopg", PG, "postgresql"),
        ("aiopg", "aiopg", PG.replace("postgresql://", "postgresql+aiopg://"), "aiopg"),
        ("aiosqlite", "aiosqlite", "sqlite:///:memory:", "sqlite"),
    ],
)
def test_missing_driver_names_the_pip_extra(
    monkeypatch: pytest.MonkeyPatch, backend: str, module: str, url: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # "import <module>" now raises ImportError
    monkeypatch.delitem(sys.modules, f"aiopeewee_dist._drivers._{backend}", raising=False)
    monkeypatch.delitem(drivers._instances, backend, raising=False)
    with pytest.raises(ConfigurationError) as excinfo:
        Manager(url)
    message = str(excinfo.value)
    assert f"aiopeewee-dist[{extra}]" in message
    assert repr(module) in message
    assert_no_secret(message)


# -- no password anywhere ---------------------------------------------------------------------


def test_password_absent_from_reprs() -> None:
    manager = Manager(
        f"{PG}?name=main", [PG_REPLICA, f"{PG_REPLICA}?name=east&sslpassword=hunter2"], **no_monitor()
    )
    texts = [repr(manager), str(manager)]
    for node in manager.nodes:
        texts += [repr(node), str(node), repr(node.url), str(node.url), node.url.obscured(), repr(node.pool)]
    assert manager.primary_node.url.password == APP_PASSWORD  # it is there, just never shown
    for text in texts:
        assert_no_secret(text)
        assert "hunter2" not in text
    assert "main" in repr(manager) and "east" in repr(manager)
    assert "***" in str(manager.primary_node.url)


async def test_password_absent_from_logs_and_errors(
    cluster_topology: Topology, caplog: pytest.LogCaptureFixture
) -> None:
    topology = cluster_topology
    caplog.set_level(logging.DEBUG, logger="aiopeewee_dist")
    texts: list[str] = []

    # A run of queries, including a pooled connection killed behind the pool's back (its
    # failed ping is logged with the driver's message).
    manager = topology.manager(ping_after_idle=0, health_check_interval=0.2)
    try:
        async with manager.transaction():
            await manager.raw_sql("SELECT 1")
        await manager.raw_sql("SELECT 1")
        pid_sql = "SELECT pg_backend_pid()" if topology.kind == "pg" else "SELECT CONNECTION_ID()"
        session = (await manager.raw_sql(pid_sql, node="primary"))[0][0]
        if topology.kind == "pg":
            await pg_scalar(PG_PRIMARY, f"SELECT pg_terminate_backend({int(session)})")
        else:
            await my_scalar(MY_PRIMARY, f"KILL {int(session)}")
        await asyncio.sleep(0.1)  # let the server close the session (only the logs depend on it)
        assert await manager.raw_sql("SELECT 1", node="primary") == [(1,)]
        await asyncio.sleep(0.3)  # a round or two of the health monitor, logging at DEBUG
        texts.append(repr(manager.stats()))
    finally:
        await manager.close()

    # A failed connection: right host, wrong (closed) port, on the primary and the replicas.
    broken = Manager(
        with_netloc(topology.primary, port=1),
        [with_netloc(u, port=2 + i) for i, u in enumerate(topology.replicas)],
        connect_timeout=1,
        **no_monitor(),
    )
    try:
        for call in (lambda: broken.raw_sql("SELECT 1"), lambda: broken.raw_sql("SELECT 1", node="primary")):
            with pytest.raises(peewee.OperationalError) as excinfo:
                await call()
            texts += [str(excinfo.value), repr(excinfo.value)]
            cause = excinfo.value.__cause__ or excinfo.value.__context__
            while cause is not None:
                texts.append(str(cause))
                cause = cause.__cause__ or cause.__context__
    finally:
        await broken.close()

    records = [r for r in caplog.records if r.name.startswith("aiopeewee_dist")]
    # Records that carry driver text: the failed ping (psycopg, aiomysql; aiopg notices the
    # closed socket before any ping) and the replica read retried after "cannot connect".
    assert any("ping" in r.getMessage() or "cannot connect" in r.getMessage() for r in records), [
        r.getMessage() for r in records
    ]
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in records:
        texts.append(formatter.format(record))  # message, args and any exception traceback
        texts.append(repr(record.args))
    for text in texts:
        assert_no_secret(text)


# -- failing to connect fails fast, as peewee.OperationalError --------------------------------


@pytest.mark.cluster
@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+aiopg"])
async def test_wrong_password_is_an_operational_error_not_a_hang(scheme: str) -> None:
    url = with_netloc(PG_PRIMARY, password="not-the-password").replace("postgresql://", f"{scheme}://", 1)
    manager = Manager(url, connect_timeout=5, **no_monitor())
    try:
        start = time.monotonic()
        with pytest.raises(peewee.OperationalError) as excinfo:
            await manager.raw_sql("SELECT 1")
        assert time.monotonic() - start < 2.0
        assert "password authentication failed" in str(excinfo.value)
        assert_no_secret(str(excinfo.value))
        assert "not-the-password" not in str(excinfo.value)
    finally:
        await manager.close()


@pytest.mark.cluster
async def test_wrong_password_on_mysql_is_an_operational_error() -> None:
    manager = Manager(with_netloc(MY_PRIMARY, password="not-the-password"), connect_timeout=5, **no_monitor())
    try:
        with pytest.raises(peewee.OperationalError) as excinfo:
            await manager.raw_sql("SELECT 1")
        assert "Access denied" in str(excinfo.value)
        assert "not-the-password" not in str(excinfo.value)
    finally:
        await manager.close()


URLS_ON_PORT = {
    "psycopg": lambda port: f"postgresql://aiopd:{ESCAPED}@127.0.0.1:{port}/aiopd",
    "aiopg": lambda port: f"postgresql+aiopg://aiopd:{ESCAPED}@127.0.0.1:{port}/aiopd",
    "mysql": lambda port: f"mysql://aiopd:{ESCAPED}@127.0.0.1:{port}/aiopd",
}


@pytest.mark.parametrize("backend", list(URLS_ON_PORT))
async def test_closed_port_fails_within_connect_timeout(backend: str) -> None:
    manager = Manager(URLS_ON_PORT[backend](1), connect_timeout=1, **no_monitor())
    try:
        start = time.monotonic()
        with pytest.raises(peewee.OperationalError) as excinfo:
            await manager.raw_sql("SELECT 1")
        assert time.monotonic() - start < 1.5
        assert_no_secret(str(excinfo.value))
    finally:
        await manager.close()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts TCP connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_connect_failing_across_expire_connections_gives_its_slot_back(silent_port: int) -> None:
    """expire_connections() (also called when a connection is found dead) while a connect is
    under way: the failed connect must still give back the place it took in the pool."""
    manager = Manager(URLS_ON_PORT["psycopg"](silent_port), connect_timeout=0.5, max_size=1, **no_monitor())
    try:
        node = manager.primary_node
        query = asyncio.ensure_future(manager.raw_sql("SELECT 1"))
        await until(lambda: node.pool.size == 1, 5, "the connect to start")
        node.expire_connections()
        with pytest.raises(peewee.OperationalError, match="cannot connect"):
            await query
        stats = manager.stats()["primary"]
        assert (stats["size"], stats["acquired"]) == (0, 0), stats
    finally:
        await manager.close()


@pytest.mark.parametrize("backend", list(URLS_ON_PORT))
async def test_silent_server_fails_after_connect_timeout(backend: str, silent_port: int) -> None:
    manager = Manager(
        URLS_ON_PORT[backend](silent_port), connect_timeout=1, acquire_timeout=10, **no_monitor()
    )
    try:
        start = time.monotonic()
        with pytest.raises(peewee.OperationalError) as excinfo:
            await manager.raw_sql("SELECT 1")
        elapsed = time.monotonic() - start
        assert 0.9 <= elapsed < 2.0, elapsed
        assert_no_secret(str(excinfo.value))
        assert manager.stats()["primary"]["acquired"] == 0
        # The connect cut short left nothing open for the garbage collector to find.
        del excinfo  # its traceback keeps the driver's frames, and their objects, alive
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)], caught
    finally:
        await manager.close()
