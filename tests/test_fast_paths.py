"""The fast paths give exactly what the ordinary Peewee paths give, on every backend.

- ``get`` templates (``_templates``): the same SQL and parameters as compiling
  ``Model.select().where(...).limit(1)`` with the node's database, on every node, also
  after the model's table name changes; shapes that must not be templated
  (an overridden ``select()``, ``IS NULL``, lists, expressions, model instances) are not.
- model rows (``_rows``): instances identical to Peewee's ``ModelObjectCursorWrapper``
  output (``__data__`` with its key order, ``_dirty``, ``__rel__``), built from the same
  fetched rows; models and queries the plan cannot reproduce are left to Peewee.
- insert ``RETURNING`` rows (``_rows.insert_rows``): the tuples Peewee's
  ``ModelTupleCursorWrapper`` gives, converters included.
- the psycopg driver's result description: the names (and type OIDs) psycopg's own
  ``cursor.description`` gives, and None exactly when it is None.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import peewee
import pytest
from conftest import MODELS, Author, Book, Topology

from aiopeewee_dist import Manager
from aiopeewee_dist._query import compile_query, first_page, shape_result
from aiopeewee_dist._rows import insert_rows, model_rows
from aiopeewee_dist._shapes import shape_of, statement_for
from aiopeewee_dist._shortcuts import ModelShortcuts
from aiopeewee_dist._templates import insert_lookup_for, lookup_for


class Owner(peewee.Model):
    """Gadget's foreign key target. Not conftest's Author: Peewee registers a backref on the
    target model, and delete_instance(recursive=True) of an Author would then visit Gadget."""

    name = peewee.CharField(max_length=32)

    class Meta:
        table_name = "t_owner"


class Gadget(peewee.Model):
    """Every common field type, nullable ones too, and a foreign key."""

    name = peewee.CharField(max_length=32)
    size = peewee.IntegerField(null=True)
    ratio = peewee.FloatField(null=True)
    active = peewee.BooleanField(default=True)
    price = peewee.DecimalField(max_digits=8, decimal_places=2, null=True)
    made = peewee.DateTimeField(null=True)
    note = peewee.TextField(null=True)
    owner = peewee.ForeignKeyField(Owner, null=True, on_delete="SET NULL")

    class Meta:
        table_name = "t_gadget"


class Visible(peewee.Model):
    """A model-level default filter, the way Peewee applications write one."""

    name = peewee.CharField(max_length=32)
    hidden = peewee.BooleanField(default=False)

    class Meta:
        table_name = "t_visible"

    @classmethod
    def select(cls, *fields: Any) -> Any:
        return super().select(*fields).where(cls.hidden == False)  # noqa: E712


class Greeted(peewee.Model):
    """A model with its own ``__init__``: rows must go through it."""

    name = peewee.CharField(max_length=32)

    class Meta:
        table_name = "t_greeted"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.greeting = f"hello {self.name}"


class Keyed(peewee.Model):
    """A primary key the application chooses, and a callable default."""

    code = peewee.CharField(max_length=16, primary_key=True)
    made = peewee.DateTimeField(default=lambda: datetime.datetime(2024, 1, 2, 3, 4, 5))

    class Meta:
        table_name = "t_keyed"


class Stamped(peewee.Model):
    """insert() overridden to add data, the way applications stamp rows."""

    name = peewee.CharField(max_length=32)
    by = peewee.CharField(max_length=32, null=True)

    class Meta:
        table_name = "t_stamped"

    @classmethod
    def insert(cls, __data: Any = None, **insert: Any) -> Any:
        return super().insert(__data, **{**insert, "by": "system"})


class Moving(peewee.Model):
    """Its table is renamed during a test."""

    name = peewee.CharField(max_length=32)

    class Meta:
        table_name = "t_moving_a"


EXTRA = [Owner, Gadget, Visible, Greeted, Keyed, Stamped]
ALL = [*MODELS, *EXTRA]


@pytest.fixture
async def m(manager: Manager, topology: Topology) -> AsyncIterator[Manager]:
    await manager.drop_tables(ALL)
    await manager.create_tables(ALL)
    ada = await manager.create(Author, name="ada", age=36)
    await manager.create(Author, name="bob", age=20)
    await manager.create(Book, author=ada, title="notes", pages=7)
    owner = await manager.create(Owner, name="olga")
    await manager.create(
        Gadget,
        name="full",
        size=3,
        ratio=0.5,
        price="12.50",
        made="2024-05-06 07:08:09",
        note="n",
        owner=owner,
    )
    await manager.create(Gadget, name="empty", active=False)
    await manager.create(Visible, name="shown")
    await manager.create(Visible, name="gone", hidden=True)
    await manager.create(Greeted, name="ada")
    await topology.wait_replicated()
    yield manager
    await manager.drop_tables(ALL)


def state(obj: Any) -> list[Any]:
    """Everything an instance holds, dict key order included."""
    return [
        (type(obj), key, list(value.items()) if isinstance(value, dict) else value)
        for key, value in vars(obj).items()
    ]


def get_lookup(source: Any, query: tuple[Any, ...], filters: dict[str, Any]) -> Any:
    return lookup_for(source, query, filters, ModelShortcuts._select_for)


def peewee_sql(manager: Manager, node: Any, source: Any, query: Any, filters: Any) -> tuple[str, Any]:
    select, _ = ModelShortcuts._select_for(source, query, filters)
    _, sql, params = compile_query(first_page(select), node.database)
    return sql, params


# -- get templates -----------------------------------------------------------------------------


def shapes(ada_id: int) -> list[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    return [
        (Author, (Author.id == ada_id,), {}),
        (Author, (), {"name": "ada"}),
        (Author, (Author.name == "ada",), {"age": 36}),
        (Author, (), {"age": 36, "name": "ada"}),
        (Author, (Author._meta.primary_key == ada_id,), {}),
        (Book, (Book.author == ada_id,), {}),
        (Gadget, (), {"name": "full", "active": True}),
        (Gadget, (Gadget.made == "2024-05-06 07:08:09",), {}),
    ]


async def test_templates_compile_to_peewees_sql_on_every_node(m: Manager) -> None:
    ada = await m.get(Author, name="ada")
    for source, query, filters in shapes(ada.id):
        lookup = get_lookup(source, query, filters)
        assert lookup is not None, (source, query, filters)
        for node in m.nodes:
            template = node.template(lookup)
            assert template is not None
            assert (template.sql, template.bind(lookup.values)) == peewee_sql(m, node, source, query, filters)


async def test_get_through_templates_equals_the_ordinary_path(m: Manager) -> None:
    ada = await m.get(Author, name="ada")
    for source, query, filters in shapes(ada.id):
        for _ in range(2):  # the second call is served by the cached template
            fast = await m.get(source, *query, **filters)
            select, _ = ModelShortcuts._select_for(source, query, filters)
            plain = await m.execute(first_page(select))
            assert state(fast) == state(plain[0])
    assert (
        state(await m.get_by_id(Author, ada.id))
        == state(ada)
        == state(await m.get_or_none(Author, id=ada.id))
    )
    assert all(len(node._compiled) for node in m.nodes if node.role == "replica") or len(m.nodes) == 1


async def test_templates_follow_a_table_rename(m: Manager, topology: Topology) -> None:
    meta: Any = Moving._meta
    try:
        await m.drop_tables([Moving])
        await m.create_tables([Moving])
        await m.create(Moving, name="in a")
        meta.set_table_name("t_moving_b")
        await m.drop_tables([Moving])
        await m.create_tables([Moving])
        await m.create(Moving, name="in b")
        await topology.wait_replicated()
        meta.set_table_name("t_moving_a")
        assert (await m.get(Moving, name="in a")).name == "in a"
        assert await m.get_or_none(Moving, name="in b") is None
        meta.set_table_name("t_moving_b")
        assert (await m.get(Moving, name="in b")).name == "in b"
        assert await m.get_or_none(Moving, name="in a") is None
        lookup = get_lookup(Moving, (), {"name": "x"})
        assert lookup is not None
        for node in m.nodes:
            template = node.template(lookup)
            assert template is not None and '"t_moving_b"' in template.sql.replace("`", '"')
    finally:
        for name in ("t_moving_b", "t_moving_a"):
            meta.set_table_name(name)
            await m.drop_tables([Moving])


async def test_an_overridden_select_is_never_templated(m: Manager) -> None:
    assert get_lookup(Visible, (), {"name": "gone"}) is None
    assert get_lookup(Visible, (Visible.name == "gone",), {}) is None
    assert await m.get_or_none(Visible, name="gone") is None
    assert await m.get_or_none(Visible, Visible.name == "gone") is None
    assert (await m.get(Visible, name="shown")).name == "shown"


async def test_values_that_change_the_sql_take_the_ordinary_path(m: Manager) -> None:
    ada = await m.get(Author, name="ada")
    assert get_lookup(Gadget, (Gadget.size == None,), {}) is None  # noqa: E711 (IS NULL)
    assert get_lookup(Gadget, (), {"size": None}) is None
    assert get_lookup(Author, (Author.id == [ada.id],), {}) is None
    assert get_lookup(Author, (Author.age == Author.age,), {}) is None
    assert get_lookup(Book, (), {"author": ada}) is None  # a model instance
    assert get_lookup(Book, (), {"author__name": "ada"}) is None  # a join
    assert get_lookup(Author, (Author.age > 1,), {}) is None
    assert get_lookup(Author.select(), (), {"name": "ada"}) is None
    assert (await m.get(Gadget, Gadget.size == None)).name == "empty"  # noqa: E711
    assert (await m.get(Gadget, size=None)).name == "empty"
    assert (await m.get(Book, author=ada)).title == "notes"
    assert (await m.get(Book, author__name="ada")).title == "notes"
    with pytest.raises(Author.DoesNotExist, match="Params"):
        await m.get(Author, Author.id == ada.id + 1000)


async def test_a_manager_subclass_that_overrides_execute_sees_gets(topology: Topology) -> None:
    seen: list[Any] = []

    class Counting(Manager):
        async def execute(self, query: Any, *, node: Any = None) -> Any:
            seen.append(query)
            return await super().execute(query, node=node)

    # The primary alone: a replica may not have the new table yet (nothing here waits for it).
    counting = Counting(topology.primary, health_check_interval=None, read_your_writes=None)
    try:
        await counting.drop_tables(MODELS)
        await counting.create_tables(MODELS)
        await counting.create(Author, name="ada")
        seen.clear()
        await counting.get_or_none(Author, name="ada")
        assert len(seen) == 1
    finally:
        await counting.drop_tables(MODELS)
        await counting.close()


# -- insert templates --------------------------------------------------------------------------


def insert_data(model: Any, **data: Any) -> dict[str, Any]:
    """The field data ``save(force_insert=True)`` inserts for a new instance."""
    obj = model(**data)
    field_dict = dict(obj.__data__)
    if model._meta.auto_increment:
        field_dict.pop(model._meta.primary_key.name, None)
    return field_dict


async def test_insert_templates_compile_to_peewees_sql_on_every_node(m: Manager) -> None:
    ada = await m.get(Author, name="ada")
    olga = await m.get(Owner, name="olga")
    rows: list[tuple[Any, dict[str, Any]]] = [
        (Author, insert_data(Author, name="cy", age=5)),
        (Book, insert_data(Book, author=ada, title="t")),
        (
            Gadget,
            insert_data(Gadget, name="g", price="1.25", made=datetime.datetime(2024, 1, 1), owner=olga.id),
        ),
        (Keyed, insert_data(Keyed, code="k1")),
    ]
    for model, data in rows:
        lookup = insert_lookup_for(model, data)
        assert lookup is not None, data
        for node in m.nodes:
            template = node.template(lookup)
            assert template is not None
            _, sql, params = compile_query(model.insert(**data), node.database)
            assert (template.sql, template.bind(lookup.values)) == (sql, params)


async def test_create_through_templates_equals_the_ordinary_path(m: Manager, topology: Topology) -> None:
    olga = await m.get(Owner, name="olga")
    cases: list[tuple[Any, dict[str, Any], dict[str, Any]]] = [
        (Author, {"name": "fast", "age": 5}, {"name": "plain", "age": 5}),
        (
            Gadget,
            {"name": "g", "price": "1.25", "owner": olga},
            {"name": "g", "price": "1.25", "owner": olga},
        ),
        (Keyed, {"code": "fast"}, {"code": "plain"}),
    ]
    for model, fast_data, plain_data in cases:
        pk = model._meta.primary_key.name
        fast = await m.create(model, **fast_data)  # a template after the first call
        unique = {"code": "again"} if model is Keyed else {"name": "again"}
        again = await m.create(model, **{**fast_data, **unique})
        plain_key = await m.execute(model.insert(**insert_data(model, **plain_data)))
        if model._meta.auto_increment:
            assert isinstance(getattr(fast, pk), int) and isinstance(plain_key, int)
        else:  # the key the application gave (SQLite's insert answers with its rowid)
            plain_key = plain_data[pk]
        assert not fast._dirty
        assert getattr(again, pk) != getattr(fast, pk)
        await topology.wait_replicated()
        stored_fast = await m.get_by_id(model, getattr(fast, pk))
        stored_plain = await m.get_by_id(model, plain_key)
        differ = {pk, "name", "code"}
        assert {k: v for k, v in stored_fast.__data__.items() if k not in differ} == {
            k: v for k, v in stored_plain.__data__.items() if k not in differ
        }
    assert (await m.get(Keyed, code="fast")).made == datetime.datetime(2024, 1, 2, 3, 4, 5)


async def test_inserts_that_peewee_must_compile_take_the_ordinary_path(
    m: Manager, topology: Topology
) -> None:
    assert insert_lookup_for(Author, {"name": "x"}) is None  # age's default is Peewee's to add
    assert insert_lookup_for(Keyed, {"code": "x"}) is None  # a callable default
    assert insert_lookup_for(Author, {"name": "x", "age": Author.age + 1}) is None
    assert insert_lookup_for(Author, {"name": peewee.fn.LOWER("X"), "age": 1}) is None
    assert insert_lookup_for(Stamped, {"name": "x", "by": None}) is None
    assert insert_lookup_for(Author, {"nickname": "x", "age": 1}) is None
    stamped = await m.create(Stamped, name="s")
    await topology.wait_replicated()
    assert (await m.get_by_id(Stamped, stamped.id)).by == "system"


# -- execute() statement shapes -----------------------------------------------------------------


def shaped_queries() -> list[Any]:
    return [
        Author.select().order_by(Author.id).limit(100),
        Author.select().where((Author.age > 3) & (Author.name != "x")).order_by(Author.age.desc(), Author.id),
        Author.select(Author.name).where(Author.age * 2 >= 4).limit(5).offset(1),
        Author.select().where((Author.name == "ada") | (Author.age < Author.id)).offset(0),
        Gadget.select().where(Gadget.made == datetime.datetime(2024, 5, 6, 7, 8, 9)),
        Gadget.select().where(Gadget.active == True),  # noqa: E712
        Author.update(age=Author.age + 1).where(Author.name == "ada"),
        Author.update(age=7, name="ada").where(Author.id == 1),
        Gadget.update(price="3.50", made=datetime.datetime(2024, 1, 1)).where(Gadget.name == "full"),
        Author.select().dicts().where(Author.age >= 0),
    ]


def unshaped_queries() -> list[Any]:
    return [
        Author.select().where(Author.age.in_([1, 2])),
        Author.select().where(Author.age.is_null()),
        Author.select().where(Author.age == None),  # noqa: E711
        Author.select().distinct(),
        Author.select(peewee.fn.COUNT(Author.id)),
        Author.select(Author.name.alias("n")),
        Author.select().where(Author.name.contains("a")),
        Author.select().limit(0),
        Author.select().for_update(),
        Author.select().group_by(Author.age),
        Book.select().join(Author),
        Book.select().where(Book.author == Author.select(Author.id).limit(1)),
        Book.select().where(Author.name == "ada"),  # a field of another model
        Author.update(age=Author.age + 1).where(Author.id == 1).returning(Author.id),
        Author.update(age=None).where(Author.id == 1),
        Author.delete().where(Author.id == 1),
        Author.insert(name="x", age=1),
    ]


async def test_shapes_compile_to_peewees_sql_on_every_node(m: Manager) -> None:
    for query in shaped_queries():
        shape = shape_of(query)
        assert shape is not None, query
        for node in m.nodes:
            template = statement_for(node._compiled, node.database, query, shape)
            assert template is not None
            _, sql, params = compile_query(query, node.database)
            assert (template.sql, template.bind(shape.values)) == (sql, params)
    assert [q for q in unshaped_queries() if shape_of(q) is not None] == []


async def test_shaped_execute_gives_peewees_results(m: Manager, topology: Topology) -> None:
    node = m.primary_node
    for _ in range(2):  # the second round runs from the cached statements
        for query in shaped_queries():
            write = isinstance(query, peewee.ModelUpdate)
            got = await m.execute(query, node="primary")
            compiled, sql, params = compile_query(query, node.database)
            expected = shape_result(compiled, node.database, await node.run_sql(sql, params, write=write))
            if write:
                # MySQL counts changed rows: a SET to the values already there counts 0.
                assert got == expected == 1 or (topology.kind == "mysql" and {got, expected} <= {0, 1})
            else:
                assert [row if isinstance(row, dict) else state(row) for row in got] == [
                    row if isinstance(row, dict) else state(row) for row in expected
                ]
    assert (await m.get(Author, name="ada", node="primary")).age == 7  # the last update sets it
    assert [v.name for v in await m.execute(Visible.select())] == ["shown"]
    assert [v.name for v in await m.execute(Visible.select().where(Visible.name == "gone"))] == []


async def test_shapes_follow_a_table_rename(m: Manager) -> None:
    meta: Any = Moving._meta
    try:
        for name in ("t_moving_a", "t_moving_b"):
            meta.set_table_name(name)
            await m.drop_tables([Moving])
            await m.create_tables([Moving])
            await m.create(Moving, name=f"in {name}")
        for round_, name in enumerate(("t_moving_a", "t_moving_b", "t_moving_a")):
            meta.set_table_name(name)
            query = Moving.select().where(Moving.name != "").order_by(Moving.id)
            assert [r.name.split()[:2] for r in await m.execute(query, node="primary")] == [["in", name]]
            updated = await m.execute(Moving.update(name=f"in {name} {round_}").where(Moving.id >= 1))
            assert updated == 1
    finally:
        for name in ("t_moving_b", "t_moving_a"):
            meta.set_table_name(name)
            await m.drop_tables([Moving])


# -- model rows --------------------------------------------------------------------------------


async def fetched(m: Manager, query: Any) -> Any:
    """The Result the primary returns for ``query``, and the query as compiled."""
    node = m.primary_node
    compiled, sql, params = compile_query(query, node.database)
    return compiled, await node.run_sql(sql, params, write=False)


async def test_model_rows_equal_peewees_for_every_field_type(m: Manager) -> None:
    queries = [
        Gadget.select().order_by(Gadget.id),
        Gadget.select(Gadget.name, Gadget.price, Gadget.owner).order_by(Gadget.id),
        Author.select().order_by(Author.id),
        Book.select(),
        Author.select(Author.name, Author.age).where(Author.age > 0),
    ]
    for query in queries:
        compiled, result = await fetched(m, query)
        fast = model_rows(compiled, result)
        assert fast is not None, query
        result._pos = 0
        plain = list(compiled._get_cursor_wrapper(result))
        assert [state(o) for o in fast] == [state(o) for o in plain]
        via_execute = await m.execute(query)
        assert [state(o) for o in via_execute] == [state(o) for o in plain]


async def test_queries_and_models_the_plan_cannot_reproduce_are_left_to_peewee(m: Manager) -> None:
    left_to_peewee = [
        Greeted.select(),  # own __init__
        Author.select(Author.name, peewee.fn.UPPER(Author.name).alias("shout")),  # not a field
        Book.select(Book, Author).join(Author),  # a join
        Author.select().dicts(),
        Author.select().tuples(),
        Author.select().namedtuples(),
        Author.select().objects(),  # is the model: fine either way, but a different row type
    ]
    for query in left_to_peewee:
        compiled, result = await fetched(m, query)
        assert model_rows(compiled, result) is None, query
    greeted = await m.execute(Greeted.select())
    assert greeted[0].greeting == "hello ada"
    shouting = await m.execute(Author.select(Author.name, peewee.fn.UPPER(Author.name).alias("shout")))
    assert {a.shout for a in shouting} == {"ADA", "BOB"}
    books = await m.execute(Book.select(Book, Author).join(Author))
    assert books[0].author.name == "ada"


async def test_streamed_rows_equal_executed_rows(m: Manager) -> None:
    query = Gadget.select().order_by(Gadget.id)
    streamed = [row async for row in m.iterate(query, chunk_size=1)]
    assert [state(o) for o in streamed] == [state(o) for o in await m.execute(query)]


# -- insert RETURNING rows ---------------------------------------------------------------------


class Hexed(peewee.IntegerField):
    """A key field whose python_value converts: the converter must be applied as Peewee does."""

    def python_value(self, value: Any) -> Any:
        return None if value is None else f"#{value:x}"


class Tagged(peewee.Model):
    id = Hexed(primary_key=True)
    name = peewee.CharField(max_length=32)

    class Meta:
        table_name = "t_tagged"


async def test_insert_rows_equal_peewees(m: Manager, topology: Topology) -> None:
    database = m.primary_node.database
    if not database.returning_clause:
        pytest.skip("no RETURNING: inserts answer with lastrowid")
    await m.drop_tables([Tagged])
    await m.create_tables([Tagged])
    try:
        queries = [
            Author.insert(name="ins", age=1),
            Gadget.insert(name="ins"),
            Keyed.insert(code="ins"),
            Tagged.insert(id=26, name="ins"),
            Author.insert_many([{"name": "m1"}, {"name": "m2"}]),
            Author.insert(name="ret", age=2).returning(Author.id, Author.name, Author.age).tuples(),
        ]
        for query in queries:
            compiled, result = await fetched(m, query)
            fast = insert_rows(compiled, result)
            assert fast is not None, query
            result._pos = 0
            assert fast == list(compiled._get_cursor_wrapper(result)), query
        assert await m.execute(Tagged.insert(id=27, name="via-execute")) == "#1b"
        created = await m.create(Tagged, id=28, name="created")
        assert created.id == 28  # save() keeps the key it was given
        # Other row types are Peewee's.
        for query in [
            Author.insert(name="d").returning(Author.name).dicts(),
            Author.insert(name="o").returning(Author.name),  # model instances
        ]:
            compiled, result = await fetched(m, query)
            assert insert_rows(compiled, result) is None
        assert await m.execute(Author.insert(name="d2").returning(Author.name).dicts()) == [{"name": "d2"}]
    finally:
        await m.drop_tables([Tagged])


# -- the psycopg driver's description --------------------------------------------------------


async def test_psycopg_description_matches_psycopgs(m: Manager, topology: Topology) -> None:
    if topology.backend != "psycopg":
        pytest.skip("the psycopg driver's own description")
    statements = [
        ("SELECT 1 AS a, 'x' AS \"Mixed Case\", 2 AS a, NULL", ()),
        ("SELECT", ()),
        ("SELECT 1 WHERE false", ()),
        ('SELECT 1 AS "naïve ✓"', ()),
        (f"SELECT * FROM {Gadget._meta.table_name} WHERE id = %s", (1,)),
        (f"UPDATE {Author._meta.table_name} SET age = age WHERE id < %s", (3,)),
        (f"UPDATE {Author._meta.table_name} SET age = age WHERE id < %s RETURNING id, name", (3,)),
        ("SET LOCAL statement_timeout = 0", ()),
        ("-- only a comment", ()),
    ]
    node = m.primary_node
    async with m.connection() as conn:
        for sql, params in statements:
            ours = await node.driver.execute(conn, sql, params)
            async with conn.cursor() as cur:
                await cur.execute(sql, params or None)
                theirs = cur.description
                rows = await cur.fetchall() if theirs is not None else []
                rowcount = cur.rowcount
            if theirs is None:
                assert ours.description is None, sql
            else:
                assert ours.description is not None, sql
                assert [(d[0], d[1]) for d in ours.description] == [(c.name, c.type_code) for c in theirs], (
                    sql
                )
                assert all(len(d) == 7 for d in ours.description)
            assert (ours.rows, ours.rowcount) == (rows, rowcount), sql
