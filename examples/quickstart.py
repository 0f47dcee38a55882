"""A first look at aiopeewee_dist, on the embedded SQLite backend (no server needed).

Run it with ``make demo`` or ``.venv/bin/python examples/quickstart.py``.

The same code runs on PostgreSQL or MariaDB with read replicas: only the URLs change, e.g.
``Manager("postgresql://app:secret@db1/app", replicas=["postgresql://app:secret@db2/app"])``.
Writes then go to the primary, reads to a replica, transactions to one pinned connection.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from urllib.parse import quote

import peewee

from aiopeewee_dist import Manager, ReadOnlyError


# Ordinary Peewee models: no database in Meta, the manager compiles the SQL for each node.
class Author(peewee.Model):
    id = peewee.AutoField()  # Peewee adds this by itself; spelled out for type checkers
    name = peewee.CharField(max_length=64, unique=True)

    class Meta:
        table_name = "author"


class Book(peewee.Model):
    id = peewee.AutoField()
    author = peewee.ForeignKeyField(Author, backref="books")
    title = peewee.CharField(max_length=128)
    pages = peewee.IntegerField()

    class Meta:
        table_name = "book"


async def main(db_file: Path) -> None:
    # A file database: one writer connection plus a pool of read-only reader connections (WAL mode).
    url = "sqlite:///" + quote(str(db_file))
    manager = Manager(url, max_size=4, acquire_timeout=5.0)
    print(f"manager: {manager!r} on {db_file.name}")

    async with manager:  # opens the pools; closes them on the way out, even on an error
        await manager.create_tables([Author, Book])
        print("created tables: author, book")

        # Writes: create() returns the model instance with its primary key set.
        ada = await manager.create(Author, name="Ada Lovelace")
        alan = await manager.create(Author, name="Alan Turing")
        await manager.create(Book, author=ada, title="Notes on the Analytical Engine", pages=65)
        await manager.create(Book, author=alan, title="On Computable Numbers", pages=36)
        print(f"inserted authors: {ada.name} (id={ada.id}), {alan.name} (id={alan.id})")

        # Reads: get() raises Author.DoesNotExist like Peewee; execute() returns a list.
        found = await manager.get(Author, name="Alan Turing")
        print(f"get: {found.name} has id {found.id}")
        rows = await manager.execute(Book.select(Book.title, Book.pages).order_by(Book.title).dicts())
        for row in rows:
            print(f"select: {row['title']!r}, {row['pages']} pages")

        # A transaction pins one connection; a nested block is a savepoint.
        async with manager.transaction():
            await manager.create(Book, author=ada, title="Sketch of the Analytical Engine", pages=70)
            try:
                async with manager.transaction():  # SAVEPOINT
                    await manager.create(Book, author=ada, title="A draft nobody should see", pages=1)
                    raise RuntimeError("changed my mind")
            except RuntimeError as exc:
                print(f"savepoint rolled back ({exc}); the outer transaction goes on")
        # The outer block committed: the sketch is there, the draft is not.
        titles = [b.title for b in await manager.execute(Book.select().order_by(Book.id))]
        print(f"after commit: {len(titles)} books, draft present: {'A draft nobody should see' in titles}")

        # read_only(): every write in the block is refused before it reaches a server.
        with manager.read_only():
            try:
                await manager.create(Author, name="Nobody")
            except ReadOnlyError as exc:
                print(f"read_only: write refused ({exc})")

        # Stream rows with bounded memory; `async with` releases the connection even if we stop early.
        async with manager.iterate(Book.select().order_by(Book.id), chunk_size=2) as books:
            count = 0
            async for book in books:
                count += 1
                print(f"iterate: #{book.id} {book.title}")
        print(f"streamed {count} books")

        stats = manager.stats()
        print(f"queries run on node 'primary': {stats['primary']['queries']}")
    print("manager closed")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="aiopd-quickstart-") as tmp:
        asyncio.run(main(Path(tmp) / "quickstart.db"))
