"""Migration files the migration tests write (tests/test_migrate.py, tests/core)."""

from __future__ import annotations

import textwrap
from pathlib import Path

#: The first migration: a ``mig_note`` table.
CREATE = """
import peewee

class Note(peewee.Model):
    text = peewee.CharField(max_length=40)
    class Meta:
        table_name = "mig_note"

def up(migrator):
    with migrator.database.bind_ctx([Note]):
        migrator.database.create_tables([Note])
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    """A migrations folder holding ``files`` (name -> code, dedented)."""
    folder.mkdir(exist_ok=True)
    for name, code in files.items():
        (folder / name).write_text(textwrap.dedent(code))
    return folder
