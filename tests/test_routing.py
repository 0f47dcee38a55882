"""Where queries run, checked by asking the servers themselves.

On the cluster backends (psycopg, aiopg: PostgreSQL primary :55432 + standbys :55433,
:55434; mysql: MariaDB primary :53306 + replica :53307) every "which node answered" is
``topology.whoami_sql`` (``(port, is_replica)``) or the session's backend id, and every "did it
reach the primary" is a query on a fresh connection of our own (``cluster.pg_scalar`` /
``cluster.my_scalar``), never the manager's word. SQLite tests at the end check reader (query_only)
versus writer connections.

The managers here turn off read-your-writes (reads right after a write would otherwise stay on
the primary for a while) and the background health monitor (so pool stats only move with the
test's own queries), unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomysql
import cluster
import peewee
import psycopg
import psycopg2
import pymysql
import pytest
from conftest import MODELS, Author, Topology, topology_for

from aiopeewee_dist import ConfigurationError, Manager, ReadOnlyError, RoutingError
from aiopeewee_dist._node import Node

QUIET: dict[str, Any] = {"read_your_writes": None, "health_check_interval": None}
DRIVER_ERRORS = (psycopg.Error, psycopg2.Error, pymysql.err.MySQLError)


# -- fixtures: in this module ``topology`` (and so conftest's ``tables``) is a cluster -------------


@pytest.fixture
def topology(cluster_topology: Topology) -> Topology:
    return cluster_topology


@pytest.fixture
async def manager(topology: Topology) -> AsyncIterator[Manager]:
    m = topology.manager(acquire_timeout=5.0, **QUIET)
    try:
        yield m
    finally:
        await m.close()


@pytest.fixture
async def make_manager(topology: Topology) -> AsyncIterator[Any]:
    """``make_manager(replicas=None, **options)``: extra managers on the cluster, closed afterwards."""
    made: list[Manager] = []

    def make(replicas: Any = None, **options: Any) -> Manager:
        options = {"acquire_timeout": 5.0, **QUIET, **options}
        m = Manager(topology.primary, topology.replicas if replicas is None else replicas, **options)
        made.append(m)
        return m

    yield make
    for m in made:
        await m.close()


# -- helpers ---------------------------------------------------------------------------------------


def port(url: str) -> int:
    value = urlsplit(url).port
    assert value is not None
    return value


def replica_ports(topology: Topology) -> dict[str, int]:
    """``{"replica-1": port, ...}`` in the order the manager names them."""
    return {f"replica-{i}": port(url) for i, url in enumerate(topology.replicas, start=1)}


def is_pg(topology: Topology) -> bool:
    return topology.kind == "pg"


async def whoami(manager: Manager, topology: Topology, **kwargs: Any) -> tuple[int, bool]:
    """``(port, is_replica)`` of the server that ran ``whoami_sql`` through ``manager.raw_sql``."""
    rows = await manager.raw_sql(topology.whoami_sql, **kwargs)
    assert len(rows) == 1
    return int(rows[0][0]), bool(rows[0][1])


def whoami_select(topology: Topology) -> Any:
    """A Peewee ``SELECT`` (no table) answering ``(port, is_replica)``, routed like any select."""
    columns = topology.whoami_sql.removeprefix("SELECT ")
    return peewee.Select(columns=[peewee.SQL(columns)]).tuples()


async def whoami_query(manager: Manager, topology: Topology, **kwargs: Any) -> tuple[int, bool]:
    rows = await manager.execute(whoami_select(topology), **kwargs)
    assert len(rows) == 1
    return int(rows[0][0]), bool(rows[0][1])


def session_id_sql(topology: Topology) -> str:
    """``(port, backend id)``: identifies one server session."""
    if is_pg(topology):
        return "SELECT inet_server_port(), pg_backend_pid()"
    return "SELECT @@port, CONNECTION_ID()"


async def on_primary(topology: Topology, sql: str) -> Any:
    """``sql``'s first value on a fresh connection to the primary (not through the manager)."""
    if is_pg(topology):
        return await cluster.pg_scalar(cluster.PG_PRIMARY, sql)
    return await cluster.my_scalar(cluster.MY_PRIMARY, sql)


async def primary_count(topology: Topology, where: str = "1 = 1") -> int:
    return int(await on_primary(topology, f"SELECT count(*) FROM t_author WHERE {where}"))


async def native(topology: Topology, conn: Any, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a raw driver connection with the driver's own API (not the library's)."""
    if topology.backend == "psycopg":
        cur = await conn.execute(sql)
        return [tuple(r) for r in await cur.fetchall()] if cur.description is not None else []
    if topology.backend == "aiopg":
        cur = await conn.cursor()
        try:
            await cur.execute(sql)
            return [tuple(r) for r in await cur.fetchall()] if cur.description is not None else []
        finally:
            cur.close()
    async with conn.cursor(aiomysql.Cursor) as cur:
        await cur.execute(sql)
        return [tuple(r) for r in await cur.fetchall()] if cur.description is not None else []


def stat(manager: Manager, key: str) -> dict[str, int]:
    return {node.name: node.get_stats().get(key, 0) for node in manager.nodes}


def acquires(manager: Manager) -> dict[str, int]:
    """Connections taken from each node's pool so far (cluster nodes have one pool each)."""
    return {node.name: node.pool.get_stats().get("acquires", 0) for node in manager.nodes}


def nothing_acquired(manager: Manager) -> bool:
    return set(stat(manager, "acquired").values()) == {0}


async def spread(manager: Manager, topology: Topology, n: int, **kwargs: Any) -> Counter[int]:
    """Ports that answered ``n`` reads; every one must have come from a replica."""
    answers = [await whoami(manager, topology, **kwargs) for _ in range(n)]
    assert all(is_replica for _, is_replica in answers), answers
    return Counter(p for p, _ in answers)


def needs_two_replicas(topology: Topology) -> None:
    if len(topology.replicas) < 2:
        pytest.skip("needs two replica servers (the MariaDB topology has one)")


# -- reads to replicas, writes to the primary ------------------------------------------------------


async def test_selects_go_to_replicas_and_writes_to_the_primary(tables: Manager, topology: Topology) -> None:
    m = tables
    ports = set(replica_ports(topology).values())
    for _ in range(4):
        p, is_replica = await whoami(m, topology)
        assert is_replica and p in ports
        p, is_replica = await whoami_query(m, topology)
        assert is_replica and p in ports

    before = stat(m, "queries")
    ada = await m.create(Author, name="ada")
    assert await m.execute(Author.update(age=5).where(Author.id == ada.id)) == 1
    moved = {name: stat(m, "queries")[name] - before[name] for name in before}
    assert moved == {name: (2 if name == "primary" else 0) for name in moved}
    # The write is on the primary, committed: a connection of our own sees it.
    assert await primary_count(topology, f"name = 'ada' AND age = 5 AND id = {ada.id}") == 1

    # A model select: the row comes back from a replica (which has replayed the write).
    await topology.wait_replicated()
    columns = peewee.SQL(topology.whoami_sql.removeprefix("SELECT "))
    ((name, answered_port, is_replica),) = await m.execute(Author.select(Author.name, columns).tuples())
    assert name == "ada" and bool(is_replica) and int(answered_port) in ports


async def test_default_options_read_from_replicas_and_write_to_the_primary(topology: Topology) -> None:
    m = topology.manager()  # health monitor and read-your-writes on, as users get it
    try:
        ports = set(replica_ports(topology).values())
        assert set(await spread(m, topology, 6)) == ports
        with pytest.raises(RoutingError, match="replica node 'replica-1'"):
            await m.raw_sql("CREATE TABLE t_never (id int)", node="replica-1")
    finally:
        await m.close()


async def test_round_robin_spreads_reads_over_the_replicas(manager: Manager, topology: Topology) -> None:
    ports = replica_ports(topology)
    got = await spread(manager, topology, 10)
    assert got == {p: 10 // len(ports) for p in ports.values()}


@pytest.mark.parametrize("strategy", ["round_robin", "random", "weighted", "least_busy"])
async def test_named_strategies_read_only_from_replicas(
    make_manager: Any, topology: Topology, strategy: str
) -> None:
    m = make_manager(strategy=strategy)
    got = await spread(m, topology, 40)
    # Every replica takes a share (random: all 40 on one of two has probability 2**-39).
    assert set(got) == set(replica_ports(topology).values())


async def test_weighted_never_reads_from_a_zero_weight_replica(make_manager: Any, topology: Topology) -> None:
    needs_two_replicas(topology)
    first, second = topology.replicas
    m = make_manager([f"{first}?weight=0", second], strategy="weighted")
    assert [node.weight for node in m.replicas] == [0.0, 1.0]
    assert await spread(m, topology, 30) == {port(second): 30}

    m.set_weight("replica-1", 1)  # back in the rotation
    assert set(await spread(m, topology, 40)) == {port(first), port(second)}


async def test_least_busy_avoids_a_replica_holding_a_connection(
    make_manager: Any, topology: Topology
) -> None:
    needs_two_replicas(topology)
    m = make_manager(strategy="least_busy")
    busy, idle = replica_ports(topology).values()
    async with m.connection(node="replica-1", write=False):
        assert await spread(m, topology, 6) == {idle: 6}
    assert set(await spread(m, topology, 6)) == {busy, idle}  # ties rotate


async def test_callable_strategy_gets_the_eligible_replicas(make_manager: Any, topology: Topology) -> None:
    calls: list[list[str]] = []

    def last_one(nodes: Any) -> Node:
        calls.append([node.name for node in nodes])
        return nodes[-1]

    m = make_manager(strategy=last_one)
    names = list(replica_ports(topology))
    ports = replica_ports(topology)
    assert await spread(m, topology, 5) == {ports[names[-1]]: 5}
    assert calls == [names] * 5

    if len(names) > 1:
        m.node(names[-1]).health.up = False  # ejected: no longer offered to the strategy
        assert await spread(m, topology, 2) == {ports[names[0]]: 2}
        assert calls[-2:] == [names[:-1]] * 2


async def test_a_strategy_returning_a_non_replica_is_refused(make_manager: Any, topology: Topology) -> None:
    holder: list[Manager] = []
    m = make_manager(strategy=lambda nodes: holder[0].primary_node)
    holder.append(m)
    with pytest.raises(RoutingError, match="not an eligible replica"):
        await m.raw_sql(topology.whoami_sql)
    assert stat(m, "queries") == {node.name: 0 for node in m.nodes}


@pytest.mark.parametrize("strategy", ["fastest", "ROUND_ROBIN", "", 42])
def test_unknown_strategy_is_a_configuration_error(strategy: Any) -> None:
    with pytest.raises(ConfigurationError, match="unknown routing strategy"):
        Manager("postgresql://u:p@127.0.0.1:1/db", ["postgresql://u:p@127.0.0.1:2/db"], strategy=strategy)


# -- explicit targets ------------------------------------------------------------------------------


async def test_using_primary_and_per_call_node(manager: Manager, topology: Topology) -> None:
    m = manager
    ports = replica_ports(topology)
    primary = (port(topology.primary), False)
    last = list(ports)[-1]

    with m.using(last):
        for _ in range(4):
            assert await whoami(m, topology) == (ports[last], True)
            assert await whoami_query(m, topology) == (ports[last], True)
        with m.primary():  # the innermost context wins ...
            assert await whoami(m, topology) == primary
        assert await whoami(m, topology) == (ports[last], True)  # ... and is undone on exit

    with m.primary():
        for _ in range(3):
            assert await whoami(m, topology) == primary
            assert await whoami_query(m, topology) == primary
        # A per-call node beats the context.
        assert await whoami(m, topology, node="replica-1") == (ports["replica-1"], True)

    for _ in range(3):
        assert await whoami(m, topology, node="replica-1") == (ports["replica-1"], True)
        assert await whoami_query(m, topology, node="replica-1") == (ports["replica-1"], True)
        assert await whoami(m, topology, node="primary") == primary
    with m.using("primary"):
        assert await whoami(m, topology) == primary
    assert (await whoami(m, topology))[1] is True  # no context left: a replica again


async def test_unknown_node_names_the_node_and_the_known_ones(manager: Manager, topology: Topology) -> None:
    known = ", ".join(repr(n) for n in ["primary", *replica_ports(topology)])
    with pytest.raises(RoutingError, match=rf"no node named 'nope' \(known: {known}\)"):
        manager.using("nope")
    with pytest.raises(RoutingError, match="'nope'"):
        await manager.raw_sql(topology.whoami_sql, node="nope")
    with pytest.raises(RoutingError, match="'nope'"):
        await manager.execute(Author.insert(name="x"), node="nope")
    assert stat(manager, "queries") == {node.name: 0 for node in manager.nodes}


async def test_writes_sent_to_a_replica_are_refused_before_any_server(
    tables: Manager, topology: Topology
) -> None:
    m = tables
    p = m.database.param
    queries, taken = stat(m, "queries"), acquires(m)

    with pytest.raises(RoutingError, match="replica node 'replica-1'"):
        await m.execute(Author.insert(name="x"), node="replica-1")
    with pytest.raises(RoutingError, match="replica node 'replica-1'"):
        await m.raw_sql(f"INSERT INTO t_author (name, age) VALUES ({p}, {p})", ["x", 1], node="replica-1")
    with m.using("replica-1"):
        with pytest.raises(RoutingError, match="replica node 'replica-1'"):
            await m.create(Author, name="y")
        with pytest.raises(RoutingError, match="replica node 'replica-1'"):
            await m.execute(Author.update(age=1))
        with pytest.raises(RoutingError, match="replica node 'replica-1'"):
            await m.execute(Author.delete())
        with pytest.raises(RoutingError, match="replica node 'replica-1'"):
            await m.raw_sql("DELETE FROM t_author")
        with pytest.raises(RoutingError, match="replica node 'replica-1'"):
            await m.execute(Author.select().for_update())  # a locking read is a write
        with pytest.raises(RoutingError, match="replica node 'replica-1'"):
            async with m.transaction():
                pass

    assert stat(m, "queries") == queries
    assert acquires(m) == taken  # not even a connection was taken
    assert await primary_count(topology) == 0


async def test_locking_selects_go_to_the_primary(tables: Manager, topology: Topology) -> None:
    m = tables
    ada = await m.create(Author, name="ada")
    await topology.wait_replicated()
    primary = (port(topology.primary), False)
    columns = peewee.SQL(topology.whoami_sql.removeprefix("SELECT "))
    plain = Author.select(columns).where(Author.id == ada.id).tuples()

    for _ in range(3):
        (row,) = await m.execute(plain.for_update())
        assert (int(row[0]), bool(row[1])) == primary
        (row,) = await m.raw_sql(f"{topology.whoami_sql} FROM t_author WHERE id = {ada.id} FOR UPDATE")
        assert (int(row[0]), bool(row[1])) == primary
    share = "FOR SHARE" if is_pg(topology) else "LOCK IN SHARE MODE"
    (row,) = await m.raw_sql(f"{topology.whoami_sql} FROM t_author WHERE id = {ada.id} {share}")
    assert (int(row[0]), bool(row[1])) == primary

    (row,) = await m.execute(plain)  # the same select without the lock: a replica
    assert bool(row[1]) is True


# -- read_only() -----------------------------------------------------------------------------------


async def test_read_only_refuses_every_write_before_the_server(tables: Manager, topology: Topology) -> None:
    m = tables
    p = m.database.param
    ada = await m.create(Author, name="ada", age=1)
    await topology.wait_replicated()
    queries, taken = stat(m, "queries"), acquires(m)

    with m.read_only():
        with pytest.raises(ReadOnlyError):
            await m.create(Author, name="new")
        with pytest.raises(ReadOnlyError):
            await m.save(Author(name="new2"))
        ada.age = 99
        with pytest.raises(ReadOnlyError):
            await m.save(ada)
        with pytest.raises(ReadOnlyError):
            await m.execute(Author.insert(name="new3"))
        with pytest.raises(ReadOnlyError):
            await m.insert_many(Author, [{"name": "new4"}])
        with pytest.raises(ReadOnlyError):
            await m.execute(Author.update(age=50))
        with pytest.raises(ReadOnlyError):
            await m.execute(Author.delete())
        with pytest.raises(ReadOnlyError):
            await m.delete_instance(ada)
        with pytest.raises(ReadOnlyError):
            await m.raw_sql(f"INSERT INTO t_author (name) VALUES ({p})", ["new5"])
        with pytest.raises(ReadOnlyError):
            await m.raw_sql("UPDATE t_author SET age = 7")
        with pytest.raises(ReadOnlyError):
            await m.raw_sql("DELETE FROM t_author")
        with pytest.raises(ReadOnlyError):
            await m.execute(Author.select().for_update())
        with m.primary(), pytest.raises(ReadOnlyError):  # even when aimed at the primary
            await m.create(Author, name="new6")
        with pytest.raises(ReadOnlyError):
            await m.execute(Author.insert(name="new7"), node="primary")
        assert stat(m, "queries") == queries
        assert acquires(m) == taken

        # Reads still work, on the replicas.
        got = await m.get(Author, name="ada")
        assert (got.id, got.age) == (ada.id, 1)
        assert await m.count(Author.select()) == 1
        assert (await whoami(m, topology))[1] is True

    assert stat(m, "queries")["primary"] == queries["primary"]
    assert await on_primary(topology, "SELECT count(*) FROM t_author") == 1
    assert await on_primary(topology, f"SELECT age FROM t_author WHERE id = {ada.id}") == 1
    # Outside the block, writes work again.
    await m.create(Author, name="after")
    assert await primary_count(topology, "name = 'after'") == 1


# -- transactions ----------------------------------------------------------------------------------


async def test_transaction_runs_everything_on_its_primary_connection(
    tables: Manager, topology: Topology
) -> None:
    m = tables
    primary = (port(topology.primary), False)
    session_sql = session_id_sql(topology)
    replica_queries = {name: n for name, n in stat(m, "queries").items() if name != "primary"}

    async with m.transaction():
        (session,) = await m.raw_sql(session_sql)
        for _ in range(3):
            assert await whoami(m, topology) == primary
            assert await whoami_query(m, topology) == primary
            assert await m.raw_sql(session_sql) == [session]  # one connection throughout
        ada = await m.create(Author, name="in-tx")
        # The transaction's own reads see its uncommitted row ...
        assert (await m.get(Author, name="in-tx")).id == ada.id
        assert await m.count(Author.select()) == 1
        assert await m.execute(Author.select(Author.name).tuples()) == [("in-tx",)]
        # ... nobody else does yet.
        assert await primary_count(topology) == 0
        assert stat(m, "acquired")["primary"] == 1
        assert int(session[0]) == port(topology.primary)

    assert {name: n for name, n in stat(m, "queries").items() if name != "primary"} == replica_queries
    assert nothing_acquired(m)
    assert await primary_count(topology, "name = 'in-tx'") == 1

    with pytest.raises(RuntimeError, match="undo"):
        async with m.transaction():
            await m.create(Author, name="rolled-back")
            assert await m.count(Author.select()) == 2
            raise RuntimeError("undo")
    assert await primary_count(topology) == 1
    assert nothing_acquired(m)


# -- node-keyed connection state (the peewee-async pitfalls) ---------------------------------------


async def test_replica_read_inside_a_primary_transaction_runs_on_the_replica(
    tables: Manager, topology: Topology
) -> None:
    m = tables
    replica = (replica_ports(topology)["replica-1"], True)
    async with m.transaction():
        await m.create(Author, name="uncommitted")
        for _ in range(3):
            assert await whoami(m, topology, node="replica-1") == replica
            assert await whoami_query(m, topology, node="replica-1") == replica
        # Not the transaction's connection: the uncommitted row is not there.
        assert await m.count(Author.select(), node="replica-1") == 0
        assert await m.count(Author.select()) == 1  # default routing: the transaction
        assert await whoami(m, topology) == (port(topology.primary), False)
    assert nothing_acquired(m)


async def test_write_inside_a_pinned_replica_connection_goes_to_the_primary(
    tables: Manager, topology: Topology
) -> None:
    m = tables
    session_sql = session_id_sql(topology)
    async with m.connection(node="replica-1", write=False) as conn:
        (pinned,) = await native(topology, conn, session_sql)
        assert int(pinned[0]) == replica_ports(topology)["replica-1"]
        replica_queries = stat(m, "queries")["replica-1"]

        ada = await m.create(Author, name="from-replica-block")
        assert await m.execute(Author.update(age=3).where(Author.id == ada.id)) == 1
        # Committed on the primary (a connection of our own sees it) ...
        assert await primary_count(topology, f"id = {ada.id} AND age = 3") == 1
        # ... and the pinned replica connection was not used or changed.
        assert stat(m, "queries")["replica-1"] == replica_queries
        assert not m.node("replica-1").driver.in_transaction(conn)
        assert await native(topology, conn, session_sql) == [pinned]
        # Reads sent to replica-1 in the block use the pinned connection.
        assert [tuple(r) for r in await m.raw_sql(session_sql, node="replica-1")] == [pinned]
        assert stat(m, "acquired")["replica-1"] == 1
    assert nothing_acquired(m)


async def test_two_nodes_in_one_task_keep_separate_connections(tables: Manager, topology: Topology) -> None:
    m = tables
    session_sql = session_id_sql(topology)
    async with m.transaction():
        async with m.connection(node="replica-1", write=False) as replica_conn:
            on_p = [tuple(r) for _ in range(2) for r in await m.raw_sql(session_sql, node="primary")]
            on_p += [tuple(r) for r in await m.raw_sql(session_sql)]  # the transaction: primary
            on_r = [tuple(r) for _ in range(2) for r in await m.raw_sql(session_sql, node="replica-1")]
            assert len(set(on_p)) == 1 and len(set(on_r)) == 1  # each node: one pinned session
            assert on_p[0] != on_r[0]
            assert int(on_p[0][0]) == port(topology.primary)
            assert int(on_r[0][0]) == replica_ports(topology)["replica-1"]
            assert await native(topology, replica_conn, session_sql) == [on_r[0]]
            assert stat(m, "acquired")["primary"] == 1 and stat(m, "acquired")["replica-1"] == 1
        # The replica block ended; the transaction's connection is still the same one.
        assert [tuple(r) for r in await m.raw_sql(session_sql)] == [on_p[0]]
        assert stat(m, "acquired")["replica-1"] == 0
    assert nothing_acquired(m)


async def test_a_replica_session_refuses_writes_by_itself(tables: Manager, topology: Topology) -> None:
    m = tables
    async with m.connection(node="replica-1", write=False) as conn:
        # The library made the session read-only (a fresh session on the replica is not).
        if is_pg(topology):
            assert await native(topology, conn, "SHOW default_transaction_read_only") == [("on",)]
        else:
            assert await native(topology, conn, "SELECT @@session.tx_read_only") == [(1,)]
        # Defence in depth: a write that bypasses the router fails on the server.
        with pytest.raises(DRIVER_ERRORS, match=r"(?i)read[- ]only"):
            await native(topology, conn, "INSERT INTO t_author (name) VALUES ('sneaky')")
        assert [tuple(r) for r in await native(topology, conn, "SELECT count(*) FROM t_author")] == [(0,)]
    assert nothing_acquired(m)
    assert await primary_count(topology) == 0


# -- no replicas -----------------------------------------------------------------------------------


async def test_without_replicas_reads_go_to_the_primary(make_manager: Any, topology: Topology) -> None:
    m = make_manager([])
    assert [node.name for node in m.nodes] == ["primary"]
    primary = (port(topology.primary), False)
    for _ in range(3):
        assert await whoami(m, topology) == primary
        assert await whoami_query(m, topology) == primary
    assert m.stats()["router"]["reads"] == 6
    assert m.stats()["router"].get("replica_fallbacks", 0) == 0


# -- SQLite: reader connections and the writer -----------------------------------------------------


@pytest.fixture
async def sqlite_manager(tmp_path: Path) -> AsyncIterator[Manager]:
    m = topology_for("sqlite", tmp_path).manager(acquire_timeout=5.0, **QUIET)
    try:
        await m.create_tables(MODELS)
        yield m
    finally:
        await m.close()


async def test_sqlite_reads_use_reader_connections_writes_the_writer(sqlite_manager: Manager) -> None:
    m = sqlite_manager
    writer = m.primary_node.pool
    for _ in range(3):
        assert await m.raw_sql("PRAGMA query_only") == [(1,)]
    written = writer.get_stats().get("acquires", 0)
    assert await m.execute(Author.select()) == []
    assert await m.count(Author.select()) == 0
    assert writer.get_stats().get("acquires", 0) == written  # reads never took the writer

    # A query_only connection would refuse these: they ran on the writer.
    ada = await m.create(Author, name="ada")
    assert await m.execute(Author.update(age=2).where(Author.id == ada.id)) == 1
    assert writer.get_stats().get("acquires", 0) == written + 2
    assert await m.execute(Author.select(Author.name, Author.age).tuples()) == [("ada", 2)]

    async with m.connection(write=False) as conn:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await conn.execute("INSERT INTO t_author (name) VALUES ('sneaky')")
    assert await m.count(Author.select()) == 1
    assert nothing_acquired(m)


async def test_sqlite_transactions_run_on_the_writer(sqlite_manager: Manager) -> None:
    m = sqlite_manager
    async with m.transaction():
        assert await m.raw_sql("PRAGMA query_only") == [(0,)]
        await m.create(Author, name="in-tx")
        assert await m.count(Author.select()) == 1  # the transaction's connection sees it
        # A reader (another task, its own connection) does not, before commit.
        assert await asyncio.create_task(m.count(Author.select())) == 0
    assert await m.count(Author.select()) == 1
    assert await m.raw_sql("PRAGMA query_only") == [(1,)]
    assert nothing_acquired(m)
