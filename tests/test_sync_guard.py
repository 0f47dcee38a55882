"""Synchronous Peewee on managed models says what to await instead (issue 12, item 3), and
``manager.related()`` loads a relation in one call."""

from __future__ import annotations

import peewee
import pytest
from conftest import Author, Book

from aiopeewee_dist import Manager, SyncQueryError

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


async def test_lazy_relations_and_sync_calls_explain_themselves(tables: Manager) -> None:
    manager = tables
    ada = await manager.create(Author, name="ada")
    book = await manager.create(Book, author=ada.id, title="notes")
    fetched = await manager.get(Book, id=book.id)

    with pytest.raises(SyncQueryError, match=r"manager\.related\(instance, 'author'\)") as lazy:
        fetched.author  # noqa: B018  (the attribute access is the query)
    assert isinstance(lazy.value, peewee.InterfaceError)  # existing handlers still catch it
    assert "bound to a database" not in str(lazy.value)
    with pytest.raises(SyncQueryError, match=r"list\(user\.posts\)"):
        list(ada.books)
    with pytest.raises(SyncQueryError, match=r"manager\.create\(Author, \.\.\.\)"):
        Author.create(name="grace")
    fetched.title = "changed"
    with pytest.raises(SyncQueryError, match=r"manager\.save\(instance\)"):
        fetched.save()
    with pytest.raises(SyncQueryError, match=r"manager\.delete_instance"):
        ada.delete_instance()


async def test_related_loads_a_relation_in_one_call(tables: Manager) -> None:
    manager = tables
    ada = await manager.create(Author, name="ada")
    first = await manager.create(Book, author=ada.id, title="one")
    await manager.create(Book, author=ada.id, title="two")

    book = await manager.get(Book, id=first.id)
    author = await manager.related(book, "author")
    assert isinstance(author, Author) and author.name == "ada"
    assert book.author is author  # cached: the attribute works afterwards, no query
    assert await manager.related(book, "author") is author

    books = await manager.related(ada, "books")
    assert sorted(b.title for b in books) == ["one", "two"]
    with pytest.raises(AttributeError, match="its relations: author"):
        await manager.related(book, "publisher")


async def test_models_bound_to_their_own_database_are_left_alone(tables: Manager, tmp_path: object) -> None:
    database = peewee.SqliteDatabase(":memory:")

    class Own(peewee.Model):
        name = peewee.CharField()

        class Meta:
            table_name = "t_own"

    Own.bind(database)
    database.create_tables([Own])
    await tables.create_tables([Own])
    assert Own._meta.database is database
    Own.create(name="sync still works")  # its own database, not the manager's
    assert Own.select().count() == 1
