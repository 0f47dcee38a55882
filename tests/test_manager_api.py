"""The Manager's query API against real servers, on every backend.

Each test runs on SQLite (a WAL file), PostgreSQL through psycopg and aiopg (primary + two
standbys) and MariaDB through aiomysql (primary + replica). Writes go to the primary and plain
reads to a replica, so a read that must see a write waits for the replicas first
(``topology.wait_replicated()``, a bounded wait on the replayed position; a no-op on SQLite).

The ``manager`` here turns off read-your-writes, so reads really run on replica connections
(results are shaped from them too), and the background health monitor, so pool stats move only
with the test's own queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import peewee
import peewee_async
import pytest
from conftest import MODELS, Author, Book, Topology

from aiopeewee_dist import Manager
from aiopeewee_dist._guard import SYNC_GUARD

NODE_STAT_KEYS = {"size", "available", "waiting", "acquired", "queries", "errors"}


@pytest.fixture
async def manager(topology: Topology) -> AsyncIterator[Manager]:
    """Overrides conftest's ``manager`` (and so the one ``tables`` uses): see the module docstring."""
    m = topology.manager(acquire_timeout=5.0, read_your_writes=None, health_check_interval=None)
    try:
        yield m
    finally:
        await m.close()


# -- helpers ---------------------------------------------------------------------------------------


def node_stat(manager: Manager, key: str) -> dict[str, int]:
    """``{node name: stats[key]}`` for every node (counters that never moved read as 0)."""
    return {node.name: node.get_stats().get(key, 0) for node in manager.nodes}


def pool_acquires(manager: Manager) -> dict[str, int]:
    """Connections taken from each node's (writer) pool so far."""
    return {node.name: node.pool.get_stats().get("acquires", 0) for node in manager.nodes}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after}


def primary_answer(topology: Topology) -> tuple[Any, ...]:
    """What ``topology.whoami_sql`` answers on the primary (on SQLite: the writer connection)."""
    if topology.kind == "sqlite":
        return (0,)
    port = urlsplit(topology.primary).port
    return (port, False) if topology.kind == "pg" else (port, 0)


async def names(manager: Manager, topology: Topology) -> list[str]:
    """Author names, read (from a replica) once the replicas caught up."""
    await topology.wait_replicated()
    return [
        name for (name,) in await manager.execute(Author.select(Author.name).order_by(Author.name).tuples())
    ]


class DirtyAuthor(peewee.Model):
    """``t_author`` with ``only_save_dirty``: ``save()`` writes only the fields that changed."""

    name = peewee.CharField(max_length=64, unique=True)
    age = peewee.IntegerField(default=0)

    class Meta:
        table_name = "t_author"
        only_save_dirty = True


class SqliteBoundAuthor(peewee.Model):
    """``t_author`` bound to a (never connected) SQLite database: its own dialect must not leak."""

    name = peewee.CharField(max_length=64, unique=True)
    age = peewee.IntegerField(default=0)

    class Meta:
        table_name = "t_author"
        database = peewee.SqliteDatabase(None)


class PostgresBoundAuthor(peewee.Model):
    """``t_author`` bound to a (never connected) PostgreSQL database."""

    name = peewee.CharField(max_length=64, unique=True)
    age = peewee.IntegerField(default=0)

    class Meta:
        table_name = "t_author"
        database = peewee.PostgresqlDatabase(None)


def aio_author_model(manager: Manager) -> type[peewee_async.AioModel]:
    """A peewee-async ``AioModel`` on ``t_author`` bound to the manager's primary database."""

    class AioAuthor(peewee_async.AioModel):
        name = peewee.CharField(max_length=64, unique=True)
        age = peewee.IntegerField(default=0)

        class Meta:
            table_name = "t_author"
            database = manager.database

    return AioAuthor


# -- get / create ----------------------------------------------------------------------------------


async def test_create_get_get_or_none_get_by_id(tables: Manager, topology: Topology) -> None:
    m = tables
    ada = await m.create(Author, name="ada", age=36)
    bob = await m.create(Author, name="bob", age=20)
    assert isinstance(ada, Author) and isinstance(ada.id, int)
    assert isinstance(bob.id, int) and bob.id != ada.id
    await topology.wait_replicated()

    got = await m.get(Author, name="ada")
    assert isinstance(got, Author)
    assert (got.id, got.name, got.age) == (ada.id, "ada", 36)
    assert (await m.get(Author, Author.age < 30)).id == bob.id
    assert (await m.get(Author.select().where(Author.name == "bob"))).id == bob.id
    with pytest.raises(Author.DoesNotExist, match="instance matching query does not exist"):
        await m.get(Author, name="nobody")

    found = await m.get_or_none(Author, name="ada")
    assert found is not None and found.id == ada.id
    assert await m.get_or_none(Author, name="nobody") is None
    assert await m.get_or_none(Author.select().where(Author.age > 100)) is None

    assert (await m.get_by_id(Author, bob.id)).name == "bob"
    with pytest.raises(Author.DoesNotExist):
        await m.get_by_id(Author, max(ada.id, bob.id) + 1000)


async def test_get_or_create_creates_then_finds_on_the_primary(tables: Manager, topology: Topology) -> None:
    m = tables
    ada, created = await m.get_or_create(Author, name="ada", defaults={"age": 36})
    assert created is True
    assert isinstance(ada.id, int) and ada.age == 36

    # Right after the write, without waiting for the replicas: the lookup runs on the primary.
    reads_before = node_stat(m, "queries")
    again, created = await m.get_or_create(Author, name="ada", defaults={"age": 99})
    assert created is False
    assert (again.id, again.age) == (ada.id, 36)
    moved = delta(node_stat(m, "queries"), reads_before)
    assert moved == {name: (1 if name == "primary" else 0) for name in moved}

    assert await names(m, topology) == ["ada"]


async def test_get_or_create_race_returns_one_row(tables: Manager, topology: Topology) -> None:
    m = tables
    errors_before = node_stat(m, "errors")["primary"]
    for name in ("race-1", "race-2", "race-3"):
        results = await asyncio.gather(*(m.get_or_create(Author, name=name) for _ in range(2)))
        assert sorted(created for _, created in results) == [False, True]
        assert len({author.id for author, _ in results}) == 1
        assert all(author.name == name for author, _ in results)
    # Both lookups ran before either insert: the loser's insert hit the unique index and it
    # then found the winner's row (that is the path being tested, not a lucky ordering).
    assert node_stat(m, "errors")["primary"] > errors_before
    assert await names(m, topology) == ["race-1", "race-2", "race-3"]


# -- select results --------------------------------------------------------------------------------


async def test_execute_select_in_every_row_type(tables: Manager, topology: Topology) -> None:
    m = tables
    ids = [(await m.create(Author, name=n, age=a)).id for n, a in (("ann", 1), ("ben", 2), ("cat", 3))]
    await topology.wait_replicated()
    query = Author.select().order_by(Author.id)

    models = await m.execute(query)
    assert isinstance(models, list) and all(type(a) is Author for a in models)
    assert [(a.id, a.name, a.age) for a in models] == list(
        zip(ids, ["ann", "ben", "cat"], [1, 2, 3], strict=True)
    )

    assert await m.execute(query.dicts()) == [
        {"id": ids[0], "name": "ann", "age": 1},
        {"id": ids[1], "name": "ben", "age": 2},
        {"id": ids[2], "name": "cat", "age": 3},
    ]
    assert await m.execute(Author.select(Author.name, Author.age).order_by(Author.id).tuples()) == [
        ("ann", 1),
        ("ben", 2),
        ("cat", 3),
    ]
    rows = await m.execute(query.namedtuples())
    assert rows[0]._fields == ("id", "name", "age")
    assert [(r.id, r.name, r.age) for r in rows] == [
        (ids[0], "ann", 1),
        (ids[1], "ben", 2),
        (ids[2], "cat", 3),
    ]


async def test_execute_join_builds_related_models(tables: Manager, topology: Topology) -> None:
    m = tables
    ada = await m.create(Author, name="ada")
    await m.create(Book, author=ada, title="Notes", pages=42)
    await topology.wait_replicated()
    books = await m.execute(Book.select(Book, Author).join(Author).order_by(Book.id))
    assert len(books) == 1
    # The author came from the join: reading it needs no (synchronous) query.
    assert (books[0].title, books[0].pages, books[0].author.id, books[0].author.name) == (
        "Notes",
        42,
        ada.id,
        "ada",
    )


async def test_insert_returns_id_update_and_delete_return_rowcounts(
    tables: Manager, topology: Topology
) -> None:
    m = tables
    first = await m.execute(Author.insert(name="a", age=1))
    second = await m.execute(Author.insert(name="b", age=2))
    assert isinstance(first, int) and isinstance(second, int) and second > first

    assert await m.execute(Author.update(age=Author.age + 10).where(Author.age >= 1)) == 2
    assert await m.execute(Author.update(age=0).where(Author.name == "nobody")) == 0
    assert await m.execute(Author.delete().where(Author.name == "a")) == 1
    assert await m.execute(Author.delete().where(Author.name == "a")) == 0

    await topology.wait_replicated()
    assert await m.execute(Author.select().order_by(Author.id).tuples()) == [(second, "b", 12)]


async def test_count_exists_scalar(tables: Manager, topology: Topology) -> None:
    m = tables
    await m.insert_many(Author, [{"name": f"n{i}", "age": i} for i in range(10)])
    await topology.wait_replicated()
    query = Author.select()

    assert await m.count(query) == 10
    assert await m.count(query.where(Author.age >= 7)) == 3
    limited = query.order_by(Author.age).limit(4)
    assert await m.count(limited) == 4
    assert await m.count(limited.offset(8)) == 2
    assert await m.count(limited, clear_limit=True) == 10
    assert await m.count(limited.offset(8), clear_limit=True) == 10
    assert await m.count(Author.select(Author.age < 5).distinct()) == 2  # not a "simple" count
    assert await m.count(query.where(Author.age > 100)) == 0

    assert await m.exists(query.where(Author.age == 3)) is True
    assert await m.exists(query.where(Author.age == 99)) is False

    assert await m.scalar(Author.select(peewee.fn.MAX(Author.age))) == 9
    low_high = await m.scalar(
        Author.select(peewee.fn.MIN(Author.age), peewee.fn.MAX(Author.age)), as_tuple=True
    )
    assert tuple(low_high) == (0, 9)
    assert await m.scalar(Author.select(Author.age).where(Author.age > 100)) is None


# -- save / delete_instance ------------------------------------------------------------------------


async def test_save_inserts_then_updates(tables: Manager, topology: Topology) -> None:
    m = tables
    ada = Author(name="ada", age=1)
    assert await m.save(ada) == 1
    assert isinstance(ada.id, int)
    assert ada.dirty_fields == []

    ada.age = 2
    assert await m.save(ada) == 1  # an UPDATE of that row, not a second INSERT
    await topology.wait_replicated()
    assert await m.execute(Author.select().tuples()) == [(ada.id, "ada", 2)]


async def test_save_writes_only_dirty_or_named_fields(tables: Manager, topology: Topology) -> None:
    m = tables
    dirty = DirtyAuthor(name="d", age=1)
    assert await m.save(dirty) == 1
    # Someone else changes the age on the server; our instance still has age=1.
    assert await m.execute(Author.update(age=50).where(Author.id == dirty.id)) == 1

    dirty.name = "d2"
    assert dirty.dirty_fields == [DirtyAuthor.name]
    assert await m.save(dirty) == 1
    assert dirty.dirty_fields == []
    assert await m.save(dirty) is False  # nothing changed: nothing sent
    await topology.wait_replicated()
    assert await m.execute(Author.select(Author.name, Author.age).tuples()) == [("d2", 50)]

    # A plain model writes every field, unless told which (only=).
    plain = await m.get_by_id(Author, dirty.id)
    assert await m.execute(Author.update(age=70).where(Author.id == dirty.id)) == 1
    plain.name = "d3"
    assert await m.save(plain, only=[Author.name]) == 1
    await topology.wait_replicated()
    assert await m.execute(Author.select(Author.name, Author.age).tuples()) == [("d3", 70)]
    plain.name = "d4"
    assert await m.save(plain) == 1
    await topology.wait_replicated()
    assert await m.execute(Author.select(Author.name, Author.age).tuples()) == [("d4", 50)]


async def test_delete_instance_and_recursive(tables: Manager, topology: Topology) -> None:
    m = tables
    ada = await m.create(Author, name="ada")
    bob = await m.create(Author, name="bob")
    keep = await m.create(Author, name="keep")
    for title in ("b1", "b2", "b3"):
        await m.create(Book, author=bob, title=title)
    await m.create(Book, author=keep, title="k1")

    before = node_stat(m, "queries")["primary"]
    assert await m.delete_instance(ada) == 1
    assert node_stat(m, "queries")["primary"] - before == 1

    before = node_stat(m, "queries")["primary"]
    assert await m.delete_instance(bob, recursive=True) == 1
    # Recursive: the books went by a statement of their own before the author's row (the
    # schema's ON DELETE CASCADE alone would delete them in one statement).
    assert node_stat(m, "queries")["primary"] - before == 2

    assert await m.delete_instance(bob) == 0  # already gone
    await topology.wait_replicated()
    assert await names(m, topology) == ["keep"]
    assert await m.execute(Book.select(Book.title).tuples()) == [("k1",)]


# -- many rows -------------------------------------------------------------------------------------


async def test_insert_many_and_bulk_create(tables: Manager, topology: Topology) -> None:
    m = tables
    result = await m.insert_many(Author, [{"name": "a1", "age": 1}, {"name": "a2", "age": 2}])
    await m.insert_many(Author, [("a3", 3), ("a4", 4)], fields=[Author.name, Author.age])
    authors = [Author(name=f"b{i}", age=i) for i in range(5)]
    assert await m.bulk_create(Author, authors, batch_size=2) is None
    await topology.wait_replicated()

    ids = dict(await m.execute(Author.select(Author.name, Author.id).tuples()))
    assert sorted(ids) == ["a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4"]
    if topology.kind == "pg":
        # RETURNING gives the new keys: to insert_many's caller and to bulk_create's instances.
        assert result == [(ids["a1"],), (ids["a2"],)]
        assert [a.id for a in authors] == [ids[f"b{i}"] for i in range(5)]

    # Foreign keys are written from the related instance.
    owner = await m.get(Author, name="a1", node="primary")
    books = [Book(author=owner, title=f"t{i}", pages=10 + i) for i in range(3)]
    await m.bulk_create(Book, books)
    await topology.wait_replicated()
    assert await m.execute(
        Book.select(Book.author, Book.title, Book.pages).order_by(Book.title).tuples()
    ) == [
        (owner.id, "t0", 10),
        (owner.id, "t1", 11),
        (owner.id, "t2", 12),
    ]
    if topology.kind == "pg":
        book_ids = await m.execute(Book.select(Book.id).order_by(Book.title).tuples())
        assert [(b.id,) for b in books] == book_ids


async def test_prefetch_attaches_books_in_two_queries(tables: Manager, topology: Topology) -> None:
    m = tables
    ada = await m.create(Author, name="ada")
    bob = await m.create(Author, name="bob")
    await m.create(Author, name="cy")
    for author, title in ((ada, "a1"), (bob, "b1"), (ada, "a2")):
        await m.create(Book, author=author, title=title)
    await topology.wait_replicated()

    authors_q = Author.select().order_by(Author.name)
    books_q = Book.select().order_by(Book.title)
    target = m.nodes[-1].name  # a replica where there is one, else the primary
    before = node_stat(m, "queries")
    authors = await m.prefetch(authors_q, books_q, node=target)
    moved = delta(node_stat(m, "queries"), before)
    assert moved == {name: (2 if name == target else 0) for name in moved}

    assert [a.name for a in authors] == ["ada", "bob", "cy"]
    assert [[b.title for b in a.books] for a in authors] == [["a1", "a2"], ["b1"], []]
    assert all(b.author is a for a in authors for b in a.books)

    # With default routing, still one query per model.
    before = node_stat(m, "queries")
    again = await m.prefetch(authors_q, books_q)
    assert sum(delta(node_stat(m, "queries"), before).values()) == 2
    assert [[b.title for b in a.books] for a in again] == [["a1", "a2"], ["b1"], []]


# -- raw SQL and streaming -------------------------------------------------------------------------


async def test_raw_sql_read_and_write(tables: Manager, topology: Topology) -> None:
    m = tables
    p = m.database.param
    assert await m.raw_sql(f"INSERT INTO t_author (name, age) VALUES ({p}, {p})", ["raw", 7]) == 1
    assert await m.raw_sql(f"INSERT INTO t_author (name, age) VALUES ({p}, {p})", ("raw2", 1)) == 1
    assert await m.raw_sql(f"UPDATE t_author SET age = age + 1 WHERE name = {p}", ["raw"]) == 1
    assert await m.raw_sql("DELETE FROM t_author WHERE name = 'raw2'") == 1
    await topology.wait_replicated()
    rows = await m.raw_sql(f"SELECT name, age FROM t_author WHERE age > {p}", [0])
    assert rows == [("raw", 8)]
    assert isinstance(rows[0], tuple)
    assert await m.raw_sql("SELECT name FROM t_author WHERE age < 0") == []


async def test_iterate_yields_every_row_once_in_order(tables: Manager, topology: Topology) -> None:
    m = tables
    await m.insert_many(Author, [{"name": f"n{i:03d}", "age": i} for i in range(300)])
    await topology.wait_replicated()
    query = Author.select().order_by(Author.age)

    seen = [author async for author in m.iterate(query, chunk_size=7)]
    assert all(type(a) is Author for a in seen)
    assert [a.age for a in seen] == list(range(300))
    assert [a.name for a in seen] == [f"n{i:03d}" for i in range(300)]
    tuples = [
        row async for row in m.iterate(Author.select(Author.age).order_by(Author.age).tuples(), chunk_size=7)
    ]
    assert tuples == [(i,) for i in range(300)]
    assert set(node_stat(m, "acquired").values()) == {0}


async def test_iterate_stopped_early_returns_the_connection(tables: Manager, topology: Topology) -> None:
    m = tables
    await m.insert_many(Author, [{"name": f"n{i:03d}", "age": i} for i in range(300)])
    await topology.wait_replicated()
    query = Author.select().order_by(Author.age)

    got: list[int] = []
    held: dict[str, int] = {}
    size: dict[str, int] = {}
    async with m.iterate(query, chunk_size=7) as rows:
        async for author in rows:
            got.append(author.age)
            if len(got) == 10:
                held, size = node_stat(m, "acquired"), node_stat(m, "size")
                break
    assert got == list(range(10))
    assert sum(held.values()) == 1  # the stream held one connection while it was open ...
    (streamed_on,) = (name for name, n in held.items() if n == 1)
    assert set(node_stat(m, "acquired").values()) == {0}  # ... and gave it back at once,
    assert set(node_stat(m, "returns_bad").values()) == {0}  # not inside a transaction,
    # a healthy connection: kept in the pool, idle, not closed.
    assert node_stat(m, "size")[streamed_on] == size[streamed_on]
    assert node_stat(m, "available")[streamed_on] == size[streamed_on]
    assert await m.count(query, node=streamed_on) == 300
    assert node_stat(m, "size")[streamed_on] == size[streamed_on]  # the next query reused it


async def test_iterate_stopped_early_inside_a_transaction_keeps_the_transaction(
    tables: Manager, topology: Topology
) -> None:
    m = tables
    await m.insert_many(Author, [{"name": f"n{i:03d}", "age": i} for i in range(30)])
    async with m.transaction():
        await m.create(Author, name="in-tx", age=-1)
        async with m.iterate(Author.select().order_by(Author.age), chunk_size=7) as rows:
            first = await anext(aiter(rows))
        assert first.name == "in-tx"  # the stream ran on the transaction's connection
        assert await m.count(Author.select()) == 31
    # Leaving the block committed it (a stream stopped early must not spoil the transaction).
    assert set(node_stat(m, "acquired").values()) == {0}
    assert await m.count(Author.select().where(Author.name == "in-tx"), node="primary") == 1
    assert await names(m, topology) == ["in-tx", *(f"n{i:03d}" for i in range(30))]


# -- schema, errors, models ------------------------------------------------------------------------


async def test_create_and_drop_tables_are_idempotent(tables: Manager, topology: Topology) -> None:
    m = tables
    await m.create(Author, name="kept")
    await m.create_tables(MODELS)  # safe=True: the tables exist, nothing happens to them
    await m.create_tables(MODELS)
    assert await m.count(Author.select(), node="primary") == 1
    with pytest.raises(peewee.DatabaseError):
        await m.create_tables([Author], safe=False)

    await m.drop_tables(MODELS)
    await m.drop_tables(MODELS)
    assert not {"t_author", "t_book"} & set(await m.database.aio_get_tables())
    with pytest.raises(peewee.DatabaseError):
        await m.drop_tables(MODELS, safe=False)

    await m.create_tables(MODELS)
    await m.create_tables(MODELS)
    assert {"t_author", "t_book"} <= set(await m.database.aio_get_tables())
    assert await m.count(Author.select(), node="primary") == 0
    await m.create(Author, name="again")
    with pytest.raises(peewee.IntegrityError):  # the unique index was created too
        await m.create(Author, name="again")
    await topology.wait_replicated()  # leave the replicas with the schema the primary has


async def test_integrity_error_surfaces_and_manager_keeps_working(
    tables: Manager, topology: Topology
) -> None:
    m = tables
    await m.create(Author, name="dup")
    with pytest.raises(peewee.IntegrityError):
        await m.create(Author, name="dup")
    assert node_stat(m, "errors")["primary"] == 1

    with pytest.raises(peewee.IntegrityError):
        async with m.transaction():
            await m.create(Author, name="in-tx")  # rolled back with the failed block
            await m.create(Author, name="dup")
    assert set(node_stat(m, "acquired").values()) == {0}

    await m.create(Author, name="other")
    assert await names(m, topology) == ["dup", "other"]


@pytest.mark.parametrize("model", [Author, SqliteBoundAuthor, PostgresBoundAuthor], ids=lambda m: m.__name__)
async def test_models_unbound_or_bound_to_another_database(
    tables: Manager, topology: Topology, model: type[peewee.Model]
) -> None:
    m = tables
    if model is Author:
        # Unbound (or, once a manager has run it, bound to the guard that explains sync calls).
        assert Author._meta.database in (None, SYNC_GUARD)
    # The node's own dialect compiles the SQL (quoting, RETURNING), whatever the model is bound to.
    made = await m.create(model, name="x", age=1)
    assert isinstance(made.id, int)
    assert await m.execute(model.update(age=2).where(model.id == made.id)) == 1
    await topology.wait_replicated()
    got = await m.get(model, name="x")
    assert type(got) is model and (got.id, got.age) == (made.id, 2)
    assert await m.execute(model.select(model.name).tuples()) == [("x",)]
    assert await m.delete_instance(got) == 1


async def test_get_stats_reports_every_node_and_the_router(manager: Manager, topology: Topology) -> None:
    assert await manager.raw_sql("SELECT 1") == [(1,)]
    stats = manager.stats()
    expected_nodes = {"primary", *(f"replica-{i}" for i in range(1, len(topology.replicas) + 1))}
    assert set(stats) == expected_nodes | {"router"}
    for name in expected_nodes:
        assert set(stats[name]) >= NODE_STAT_KEYS
        assert all(isinstance(stats[name][key], int) for key in NODE_STAT_KEYS)
        assert stats[name]["acquired"] == stats[name]["waiting"] == stats[name]["errors"] == 0
    assert sum(stats[name]["queries"] for name in expected_nodes) == 1
    assert sum(stats[name]["size"] for name in expected_nodes) == 1  # one connection was opened
    assert stats["router"]["reads"] == 1


# -- peewee-async's own API on the primary's database ----------------------------------------------


async def test_aio_model_on_manager_database(tables: Manager, topology: Topology) -> None:
    m = tables
    AioAuthor = aio_author_model(m)
    acquires = pool_acquires(m)
    made = await AioAuthor.aio_create(name="aio", age=5)
    assert isinstance(made.id, int)
    got = await AioAuthor.aio_get(AioAuthor.name == "aio")
    assert (got.id, got.age) == (made.id, 5)
    assert await AioAuthor.aio_get_or_none(AioAuthor.name == "nobody") is None
    # peewee-async's path took its connections from the primary node's pool, only there.
    moved = delta(pool_acquires(m), acquires)
    assert moved["primary"] >= 3
    assert all(n == 0 for name, n in moved.items() if name != "primary")
    assert set(node_stat(m, "acquired").values()) == {0}

    await topology.wait_replicated()
    assert (await m.get_by_id(Author, made.id)).name == "aio"


async def test_aio_atomic_is_a_transaction_on_the_primary(tables: Manager, topology: Topology) -> None:
    m = tables
    AioAuthor = aio_author_model(m)
    async with m.database.aio_atomic():
        assert node_stat(m, "acquired")["primary"] == 1
        await AioAuthor.aio_create(name="in-atomic")
        # Manager queries inside the block run on the block's connection: they see the row.
        assert await m.raw_sql(topology.whoami_sql) == [primary_answer(topology)]
        assert await m.execute(Author.select(Author.name).tuples()) == [("in-atomic",)]
        # Another task (its own connection, even on the primary) does not, before commit.
        assert await asyncio.create_task(m.count(Author.select(), node="primary")) == 0
        assert node_stat(m, "acquired")["primary"] == 1
    assert set(node_stat(m, "acquired").values()) == {0}
    assert await m.count(Author.select(), node="primary") == 1

    with pytest.raises(RuntimeError, match="undo"):
        async with m.database.aio_atomic():
            await AioAuthor.aio_create(name="rolled-back")
            raise RuntimeError("undo")
    assert await names(m, topology) == ["in-atomic"]
