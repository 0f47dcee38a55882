"""The per-node connection pool against real servers: exhaustion and PoolTimeout, stats, the
max_size bound seen from the server, pre-ping of killed connections, lifetime and expiry,
closing, min_size, and one manager reused across event loops.

Managers here run without the health monitor (as conftest's ``Topology.manager`` makes them):
its probes check connections out in the background, which would blur exact pool counts. The
event-loop test turns it on, since it is a task that must survive loop changes too.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import peewee
import pytest
from cluster import libpq_url, my_scalar, pg_scalar, until
from conftest import Topology, sleep_sql

from aiopeewee_dist import Manager, PoolClosed, PoolTimeout, QueryTimeout

QUIET: dict[str, Any] = {"health_check_interval": None, "read_your_writes": None}
BOUND = 3.0  # seconds allowed for server-side cleanup to show


# -- helpers ----------------------------------------------------------------------------


def with_params(url: str, **params: str) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def plain_pg(url: str) -> str:
    """A URL psycopg itself accepts (the aiopg and asyncpg backends' schemes are ours)."""
    return libpq_url(url)


def app_manager(topology: Topology, app: str | None = None, **options: Any) -> Manager:
    """A manager for ``topology`` (monitor and read-your-writes off unless asked for, as in
    conftest); on PostgreSQL every session carries application_name ``app``."""
    if topology.kind == "pg" and app is not None:
        topology = Topology(
            topology.backend,
            with_params(topology.primary, application_name=app),
            [with_params(u, application_name=app) for u in topology.replicas],
        )
    return topology.manager(**options)


def new_app() -> str:
    return f"aiopd_pool_{uuid.uuid4().hex[:12]}"


def pid_sql(topology: Topology) -> str:
    return "SELECT pg_backend_pid()" if topology.kind == "pg" else "SELECT CONNECTION_ID()"


def server_urls(topology: Topology) -> dict[str, str]:
    """Node name -> URL to ask that server directly."""
    urls = {"primary": topology.primary, **{f"replica-{i}": u for i, u in enumerate(topology.replicas, 1)}}
    return {name: plain_pg(u) if topology.kind == "pg" else u for name, u in urls.items()}


async def pg_app_count(url: str, app: str) -> int:
    return int(
        await pg_scalar(
            plain_pg(url),
            f"SELECT count(*) FROM pg_stat_activity WHERE usename = 'aiopd' AND application_name = '{app}'",
        )
    )


async def alive_sessions(topology: Topology, url: str, ids: set[int]) -> int:
    """How many of the server sessions ``ids`` still exist on the server at ``url``."""
    if not ids:
        return 0
    id_list = ", ".join(str(int(i)) for i in ids)
    if topology.kind == "pg":
        return int(
            await pg_scalar(plain_pg(url), f"SELECT count(*) FROM pg_stat_activity WHERE pid IN ({id_list})")
        )
    return int(
        await my_scalar(url, f"SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID IN ({id_list})")
    )


def hold_kwargs(topology: Topology) -> dict[str, Any]:
    """How to check out a connection of the primary's bounded pool: SQLite's writer pool always
    has one connection, its reader pool has ``max_size``; elsewhere the primary's pool."""
    return {"write": False} if topology.kind == "sqlite" else {}


async def hold(
    manager: Manager, topology: Topology, count: int
) -> tuple[list[Any], asyncio.Event, list[Any]]:
    """Start ``count`` tasks that each hold a connection until the returned event is set."""
    release = asyncio.Event()
    conns: list[Any] = []

    async def holder() -> None:
        async with manager.connection(**hold_kwargs(topology)) as conn:
            conns.append(conn)
            await release.wait()

    tasks = [asyncio.create_task(holder()) for _ in range(count)]

    async def all_held() -> bool:
        return len(conns) == count

    await until(all_held, BOUND, f"{count} connections held")
    return tasks, release, conns


async def release_all(tasks: list[Any], release: asyncio.Event) -> None:
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- exhaustion ----------------------------------------------------------------------------


async def test_pool_timeout_on_exhaustion(topology: Topology) -> None:
    manager = topology.manager(max_size=2, acquire_timeout=0.3, **QUIET)
    tasks, release, _ = await hold(manager, topology, 2)
    try:
        start = time.monotonic()
        with pytest.raises(PoolTimeout) as excinfo:
            async with manager.connection(**hold_kwargs(topology)):
                pass
        elapsed = time.monotonic() - start
        print(f"\n[{topology.backend}] PoolTimeout after {elapsed:.3f} s (acquire_timeout=0.3)")
        assert 0.25 <= elapsed <= 1.5, elapsed
        assert isinstance(excinfo.value, peewee.OperationalError)
        assert "'primary" in str(excinfo.value)  # names the node ('primary' / 'primary/readers')
        assert "max_size=2" in str(excinfo.value)
        assert manager.stats()["primary"]["timeouts"] == 1  # SQLite: writer + reader pools
        # Once a connection comes back, acquiring works again.
        release.set()
        await asyncio.gather(*tasks)
        async with manager.connection(**hold_kwargs(topology)) as conn:
            assert conn is not None
    finally:
        await release_all(tasks, release)
        await manager.close()


async def test_stats_keys_and_values(topology: Topology) -> None:
    manager = topology.manager(max_size=2, acquire_timeout=5.0, **QUIET)
    cleanup: list[tuple[list[Any], asyncio.Event]] = []
    try:
        stats = manager.stats()["primary"]
        assert {"size", "available", "waiting", "acquired", "queries", "errors"} <= set(stats)
        assert all(isinstance(stats[k], int) for k in ("size", "available", "waiting", "acquired"))
        assert (stats["size"], stats["available"], stats["acquired"], stats["waiting"]) == (0, 0, 0, 0)
        assert (stats["queries"], stats["errors"]) == (0, 0)

        for _ in range(3):
            assert await manager.raw_sql("SELECT 1", node="primary") == [(1,)]
        with pytest.raises(peewee.DatabaseError):
            await manager.raw_sql("SELECT * FROM no_such_table_aiopd", node="primary")
        stats = manager.stats()["primary"]
        assert (stats["queries"], stats["errors"]) == (4, 1)
        # Sequential queries reuse one connection, which is back in the pool.
        assert (stats["size"], stats["available"], stats["acquired"], stats["waiting"]) == (1, 1, 0, 0)

        tasks, release, _ = await hold(manager, topology, 2)
        cleanup.append((tasks, release))
        stats = manager.stats()["primary"]
        assert (stats["size"], stats["available"], stats["acquired"], stats["waiting"]) == (2, 0, 2, 0)

        waiter_got = asyncio.Event()

        async def waiter() -> None:
            async with manager.connection(**hold_kwargs(topology)):
                waiter_got.set()

        waiting_task = asyncio.create_task(waiter())
        tasks.append(waiting_task)

        async def one_waiting() -> bool:
            return manager.stats()["primary"]["waiting"] == 1

        await until(one_waiting, BOUND, "one waiter blocked")
        stats = manager.stats()["primary"]
        assert (stats["size"], stats["acquired"], stats["waiting"]) == (2, 2, 1)
        assert not waiter_got.is_set()

        release.set()
        await asyncio.gather(*tasks)
        assert waiter_got.is_set()
        stats = manager.stats()["primary"]
        assert (stats["size"], stats["available"], stats["acquired"], stats["waiting"]) == (2, 2, 0, 0)
    finally:
        for tasks, release in cleanup:
            await release_all(tasks, release)
        await manager.close()


async def test_max_size_respected_under_concurrency(topology: Topology) -> None:
    max_size = 3
    app = new_app()
    # SQLite runs the 50 statements (WITH ... counts as a write) one by one on its single writer:
    # on a loaded 2-core machine that queue alone can outlast a 10 s acquire_timeout.
    manager = app_manager(topology, app, max_size=max_size, acquire_timeout=60.0, **QUIET)
    node_names = [n.name for n in manager.nodes]
    urls = server_urls(topology)
    peak_pool: dict[str, int] = dict.fromkeys(node_names, 0)
    peak_server: dict[str, int] = dict.fromkeys(node_names, 0)
    snapshots: dict[str, list[set[int]]] = {name: [] for name in node_names}
    done = asyncio.Event()

    async def sample_pools() -> None:
        while not done.is_set():
            stats = manager.stats()
            for name in node_names:
                peak_pool[name] = max(peak_pool[name], stats[name]["size"])
            await asyncio.sleep(0.002)

    async def sample_servers() -> None:
        while not done.is_set():
            for name in node_names:
                if topology.kind == "pg":
                    peak_server[name] = max(peak_server[name], await pg_app_count(urls[name], app))
                else:
                    listed = await my_scalar(
                        urls[name],
                        "SELECT group_concat(ID) FROM information_schema.PROCESSLIST WHERE USER = 'aiopd'",
                    )
                    snapshots[name].append({int(i) for i in str(listed or "").split(",") if i})
            await asyncio.sleep(0.01)

    samplers = [asyncio.create_task(sample_pools())]
    if topology.kind != "sqlite":
        samplers.append(asyncio.create_task(sample_servers()))
    try:
        sql = sleep_sql(topology.kind, 0.03)
        queries = [manager.raw_sql(sql, node=name) for name in node_names for _ in range(50)]
        results = await asyncio.gather(*queries)
        done.set()
        await asyncio.gather(*samplers)
        assert len(results) == 50 * len(node_names)

        stats = manager.stats()
        for name in node_names:
            assert 0 < peak_pool[name] <= stats[name]["max_size"], (name, peak_pool)
            assert stats[name]["size"] <= stats[name]["max_size"]
        if topology.kind == "sqlite":
            return
        # Server side: every session the pool ever used, per node, is at most max_size ...
        by_node = [results[i * 50 : (i + 1) * 50] for i in range(len(node_names))]
        sessions = {
            name: {int(row[0][1]) for row in rows} for name, rows in zip(node_names, by_node, strict=True)
        }
        for name in node_names:
            assert 1 <= len(sessions[name]) <= max_size, (name, sessions)
        # ... and the server never saw more than max_size of them at once (sampled during the run).
        for name in node_names:
            if topology.kind == "pg":
                assert 1 <= peak_server[name] <= max_size, (name, peak_server)
            else:
                seen = [len(snap & sessions[name]) for snap in snapshots[name]]
                assert seen and max(seen) <= max_size, (name, seen)
        # Sampled after the run too: the idle pool holds at most max_size sessions per server.
        for name in node_names:
            if topology.kind == "pg":
                assert await pg_app_count(urls[name], app) <= max_size
            else:
                assert await alive_sessions(topology, urls[name], sessions[name]) <= max_size
    finally:
        done.set()
        for task in samplers:
            task.cancel()
        await manager.close()


# -- health of pooled connections ---------------------------------------------------------


async def kill_session(topology: Topology, session: int) -> None:
    if topology.kind == "pg":
        assert (
            await pg_scalar(plain_pg(topology.primary), f"SELECT pg_terminate_backend({int(session)})")
            is True
        )
    else:
        await my_scalar(topology.primary, f"KILL {int(session)}")


async def test_pre_ping_replaces_a_connection_killed_server_side(cluster_topology: Topology) -> None:
    topology = cluster_topology
    manager = topology.manager(ping_after_idle=0, max_size=2, **QUIET)
    try:
        first = (await manager.raw_sql(pid_sql(topology), node="primary"))[0][0]
        await kill_session(topology, first)

        async def gone() -> bool:
            return await alive_sessions(topology, topology.primary, {first}) == 0

        await until(gone, BOUND, "the killed session disappears from the server")
        # The next query succeeds transparently on a fresh connection.
        second = (await manager.raw_sql(pid_sql(topology), node="primary"))[0][0]
        assert second != first
        stats = manager.stats()["primary"]
        if topology.backend in ("aiopg", "asyncpg"):
            # aiopg and asyncpg watch the socket: it usually marks the connection closed as soon as the
            # server's goodbye arrives, and the pool then drops it at checkout without a ping.
            assert stats.get("pings_failed", 0) + stats.get("connections_closed", 0) == 1, stats
        else:
            assert stats.get("pings_failed") == 1, stats
        assert stats["errors"] == 0
        assert (stats["size"], stats["acquired"]) == (1, 0)
    finally:
        await manager.close()


async def session_of(manager: Manager, topology: Topology) -> tuple[Any, Any]:
    """(driver connection, server session id or None) of a primary connection, checked out once."""
    async with manager.connection() as conn:
        if topology.kind == "sqlite":
            return conn, None
        return conn, (await manager.raw_sql(pid_sql(topology), node="primary"))[0][0]


async def test_max_lifetime_replaces_old_connections(topology: Topology) -> None:
    manager = topology.manager(max_lifetime=0.2, **QUIET)
    try:
        conn1, session1 = await session_of(manager, topology)
        conn1_again, session1_again = await session_of(manager, topology)
        assert conn1_again is conn1 and session1_again == session1  # reused while young
        await asyncio.sleep(0.3)  # outlive max_lifetime (not a replication wait)
        conn2, session2 = await session_of(manager, topology)
        assert conn2 is not conn1
        if topology.kind != "sqlite":
            assert session2 != session1

            async def old_closed() -> bool:
                return await alive_sessions(topology, topology.primary, {session1}) == 0

            await until(old_closed, BOUND, "the expired connection is closed on the server")
        assert manager.stats()["primary"].get("connections_closed", 0) >= 1
    finally:
        await manager.close()


async def test_expire_connections_on_a_node(topology: Topology) -> None:
    manager = topology.manager(**QUIET)
    try:
        conn1, session1 = await session_of(manager, topology)
        manager.primary_node.expire_connections()
        conn2, session2 = await session_of(manager, topology)
        assert conn2 is not conn1
        if topology.kind != "sqlite":
            assert session2 != session1

        # A connection busy during expire_connections() is closed when it comes back.
        async with manager.connection() as busy:
            manager.node("primary").expire_connections()
            assert busy is conn2
        conn3, session3 = await session_of(manager, topology)
        assert conn3 is not conn2
        if topology.kind != "sqlite":
            assert session3 != session2

            async def both_closed() -> bool:
                return await alive_sessions(topology, topology.primary, {session1, session2}) == 0

            await until(both_closed, BOUND, "expired connections are closed on the server")
        assert manager.stats()["primary"]["size"] == 1
    finally:
        await manager.close()


# -- lifecycle -----------------------------------------------------------------------------


async def test_query_after_close_raises_pool_closed(topology: Topology) -> None:
    app = new_app()
    manager = app_manager(topology, app, **QUIET)
    assert await manager.raw_sql("SELECT 1") == [(1,)]
    assert await manager.raw_sql("SELECT 1", node="primary") == [(1,)]
    await manager.close()
    with pytest.raises(PoolClosed) as excinfo:
        await manager.raw_sql("SELECT 1")
    assert isinstance(excinfo.value, peewee.OperationalError)
    with pytest.raises(PoolClosed):
        await manager.raw_sql("SELECT 1", node="primary")
    with pytest.raises(PoolClosed):
        async with manager.transaction():
            pass
    for name, stats in manager.stats().items():
        if name in {n.name for n in manager.nodes}:
            assert stats["size"] == 0, (name, stats)
    if topology.kind == "pg":
        for url in server_urls(topology).values():

            async def closed(url: str = url) -> bool:
                return await pg_app_count(url, app) == 0

            await until(closed, BOUND, "the server sees the pool's sessions end")


async def test_async_with_opens_min_size_connections(topology: Topology) -> None:
    app = new_app()
    manager = app_manager(topology, app, min_size=2, max_size=4, **QUIET)
    async with manager as entered:
        assert entered is manager
        for node in manager.nodes:
            stats = manager.stats()[node.name]
            # SQLite: its single writer connection plus min_size readers.
            expected = 3 if topology.kind == "sqlite" else 2
            assert (stats["size"], stats["available"], stats["queries"]) == (expected, expected, 0), stats
        if topology.kind == "pg":
            for url in server_urls(topology).values():
                assert await pg_app_count(url, app) == 2
    for node in manager.nodes:
        assert manager.stats()[node.name]["size"] == 0
    if topology.kind == "pg":
        for url in server_urls(topology).values():

            async def closed(url: str = url) -> bool:
                return await pg_app_count(url, app) == 0

            await until(closed, BOUND, "the server sees the pool's sessions end")


# -- event loops -------------------------------------------------------------------------


def test_manager_reused_across_event_loops(topology: Topology) -> None:
    """One manager made outside any loop, used by five ``asyncio.run()`` calls in a row."""
    app = "looptest"
    if topology.kind == "pg":
        app = f"looptest_{uuid.uuid4().hex[:8]}"
    max_size = 2
    manager = app_manager(topology, app, max_size=max_size, acquire_timeout=5.0, health_check_interval=0.2)
    urls = server_urls(topology)
    sessions: dict[str, set[int]] = {name: set() for name in urls}
    opened: list[int] = []
    sql = sleep_sql(topology.kind, 0.02)

    async def one_run() -> None:
        # Four at once on every node: each pool opens its max_size connections in this loop.
        names = [n.name for n in manager.nodes]
        results = await asyncio.gather(*(manager.raw_sql(sql, node=name) for name in names for _ in range(4)))
        for i, rows in enumerate(results):
            sessions.setdefault(names[i // 4], set()).add(int(rows[0][1]))
        assert await manager.raw_sql("SELECT 1") == [(1,)]  # routed read
        async with manager.transaction():
            assert await manager.raw_sql("SELECT 2") == [(2,)]
        opened.append(manager.stats()["primary"]["connections_opened"])

    async def server_counts() -> dict[str, int]:
        if topology.kind == "pg":
            return {name: await pg_app_count(url, app) for name, url in urls.items()}
        return {name: await alive_sessions(topology, url, sessions[name]) for name, url in urls.items()}

    async def within_max_size() -> dict[str, int]:
        deadline = time.monotonic() + BOUND
        while True:
            counts = await server_counts()
            if all(c <= max_size for c in counts.values()) or time.monotonic() >= deadline:
                return counts
            await asyncio.sleep(0.05)

    try:
        for _ in range(5):
            asyncio.run(one_run())
        if topology.kind == "sqlite":
            # aiosqlite connections are not tied to a loop: the same ones serve every run
            # (the writer plus at most max_size readers, opened during the first run).
            assert opened == [opened[0]] * 5 and opened[0] <= 1 + max_size, opened
            return
        # A new loop cannot use the old loop's connections: they were replaced, and the old ones
        # closed, so the server never holds more than max_size per node.
        assert all(len(s) > max_size for s in sessions.values()), sessions
        counts = asyncio.run(within_max_size())
        assert all(c <= max_size for c in counts.values()), counts
    finally:
        asyncio.run(manager.close())
    if topology.kind != "sqlite":

        async def all_closed() -> dict[str, int]:
            deadline = time.monotonic() + BOUND
            while True:
                counts = await server_counts()
                if not any(counts.values()) or time.monotonic() >= deadline:
                    return counts
                await asyncio.sleep(0.05)

        counts = asyncio.run(all_closed())
        assert not any(counts.values()), counts


def test_sqlite_memory_database_survives_queries_and_loop_changes() -> None:
    from conftest import Author

    manager = Manager("sqlite:///:memory:")

    async def first() -> None:
        await manager.create_tables([Author])
        await manager.create(Author, name="loop1")

    async def later(n: int) -> int:
        # Reads and writes, also concurrent ones, share the one connection and so the data.
        counts = await asyncio.gather(*(manager.count(Author.select()) for _ in range(3)))
        assert len(set(counts)) == 1
        await manager.create(Author, name=f"loop{n}")
        return counts[0]

    asyncio.run(first())
    assert asyncio.run(later(2)) == 1
    assert asyncio.run(later(3)) == 2
    assert asyncio.run(later(4)) == 3

    async def check() -> None:
        assert {a.name for a in await manager.execute(Author.select())} == {
            "loop1",
            "loop2",
            "loop3",
            "loop4",
        }
        stats = manager.stats()["primary"]
        assert stats["connections_opened"] == 1 and stats["size"] == 1, stats
        await manager.close()

    asyncio.run(check())


# With a 1 ms monitor interval the shutdown cancels a probe mid-query most of the time, and
# psycopg/aiopg connections of such probes are sometimes garbage-collected unclosed (reported
# separately); this test is about the hang, so those warnings are not its business.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_loop_shutdown_is_not_blocked_by_the_health_monitor(cluster_topology: Topology) -> None:
    """``asyncio.run()`` ends by cancelling the tasks left running, the health monitor among them,
    once, and then waits for them: a monitor that lost that cancellation hung the run forever."""
    manager = cluster_topology.manager(health_check_interval=0.01)
    errors: list[BaseException] = []

    async def session(delay: float) -> None:
        assert await manager.raw_sql("SELECT 1") == [(1,)]  # starts the monitor in this loop
        await asyncio.sleep(delay)

    def runs() -> None:
        try:
            for i in range(60):
                asyncio.run(session((i % 10) * 0.001))
            asyncio.run(manager.close())
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    worker = threading.Thread(target=runs, daemon=True)
    worker.start()
    worker.join(30)
    gc.collect()  # surface leaked-connection warnings here, under this test's filters
    assert not worker.is_alive(), "asyncio.run() did not return: the monitor ignored its cancellation"
    assert not errors, errors


SLEEP_SQL = {"pg": "SELECT pg_sleep(2)", "mysql": "SELECT SLEEP(2)"}


async def test_query_timeout_discards_the_connection_and_the_manager_goes_on(topology: Topology) -> None:
    if topology.kind == "sqlite":
        pytest.skip("no server-side sleep in SQLite")
    manager = topology.manager(query_timeout=0.3, **QUIET)
    try:
        start = time.monotonic()
        with pytest.raises(QueryTimeout, match=r"query_timeout=0\.3s") as excinfo:
            await manager.raw_sql(SLEEP_SQL[topology.kind], node="primary")
        assert 0.25 <= time.monotonic() - start <= 1.5
        assert isinstance(excinfo.value, peewee.OperationalError)
        stats = manager.stats()["primary"]
        assert stats["acquired"] == 0 and stats["errors"] == 1
        # Inside a transaction the block fails and its connection is not reused half-way.
        with pytest.raises(QueryTimeout):
            async with manager.transaction():
                await manager.raw_sql(SLEEP_SQL[topology.kind])
        assert await manager.raw_sql("SELECT 1", node="primary") == [(1,)]
        await until_closed(manager)
    finally:
        await manager.close()


async def until_closed(manager: Manager) -> None:
    """Both timed-out connections were closed, not returned to the pool."""
    for _ in range(100):
        if manager.stats()["primary"]["connections_closed"] >= 2:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed-out connections were not closed: {manager.stats()['primary']}")


async def test_bounded_acquire_gives_back_a_connection_arriving_as_the_caller_is_cancelled(
    topology: Topology,
) -> None:
    """The health monitor's bounded acquire: a connection handed over in the same loop step as
    the caller's cancellation goes back to the pool (``asyncio.wait_for`` on Python 3.11 drops
    it, and it stays checked out until garbage collection)."""
    manager = topology.manager(max_size=1)
    try:
        pool = manager.primary_node.pool
        held = await pool.acquire()
        waiting = asyncio.ensure_future(pool.acquire_within(5.0))
        await until(lambda: pool.get_stats()["waiting"] > 0, BOUND, "the bounded acquire to wait")
        pool.release(held)  # handed to the waiter...
        waiting.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for _ in range(10):
            await asyncio.sleep(0)
        stats = pool.get_stats()
        assert (stats["acquired"], stats["available"]) == (0, 1), stats
    finally:
        await manager.close()


async def test_a_connect_cut_short_while_making_the_session_read_only_closes_it(
    cluster_topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    """connect_timeout firing after the server accepted us, while the replica session is being
    made read-only: that connection is closed, not left to the garbage collector."""
    if cluster_topology.kind != "pg":
        pytest.skip("PostgreSQL drivers have a separate read-only step to hold up")
    manager = cluster_topology.manager(connect_timeout=0.5)
    node = manager.replicas[0]
    made: list[Any] = []

    async def never_answers(self: Any, conn: Any) -> None:
        made.append(conn)
        await asyncio.Event().wait()

    monkeypatch.setattr(type(node.driver), "set_read_only", never_answers)
    try:
        with pytest.raises(peewee.OperationalError, match="cannot connect"):
            await node.run_sql("SELECT 1", write=False)
        assert made and all(node.driver.is_closed(conn) for conn in made)
    finally:
        await manager.close()


async def test_sqlite_memory_database_outlives_max_lifetime() -> None:
    from conftest import Author

    # Every connection of a file or server node is replaced after max_lifetime; the one
    # connection of :memory: is the database itself and is kept however short the lifetime.
    manager = Manager("sqlite:///:memory:", max_lifetime=0.01, max_idle=0.01)
    try:
        await manager.create_tables([Author])
        await manager.create(Author, name="kept")
        await asyncio.sleep(0.05)  # outlive max_lifetime and max_idle (not a replication wait)
        assert await manager.count(Author.select()) == 1
        assert manager.stats()["primary"]["connections_closed"] == 0
    finally:
        await manager.close()


async def test_sqlite_readers_opened_together_on_a_new_file_all_connect(tmp_path: Path) -> None:
    # Each one set the journal mode, which takes the file's lock: the loser's connect failed
    # at once with "database is locked" (in about 1 of 25 new files with 2 readers).
    for attempt in range(100):
        manager = Manager(f"sqlite:///{tmp_path}/new-{attempt}.db", max_size=4, health_check_interval=None)
        try:
            rows = await asyncio.gather(*(manager.raw_sql("SELECT 1", node="primary") for _ in range(4)))
            assert rows == [[(1,)]] * 4
        finally:
            await manager.close()
