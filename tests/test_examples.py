"""The examples run as a user would run them: a fresh interpreter, exit status 0, the expected output."""

from __future__ import annotations

from pathlib import Path

from conftest import expect, run_example

EXPECTED_LINES = [
    "created tables: author, book",
    "inserted authors: Ada Lovelace (id=1), Alan Turing (id=2)",
    "get: Alan Turing has id 2",
    "savepoint rolled back (changed my mind); the outer transaction goes on",
    "after commit: 3 books, draft present: False",
    "read_only: write refused (write attempted inside manager.read_only())",
    "iterate: #3 Sketch of the Analytical Engine",
    "streamed 3 books",
    "manager closed",
]


def test_quickstart_runs_and_cleans_up(tmp_path: Path) -> None:
    lines = run_example("quickstart.py", tmp_path)
    expect(lines, *EXPECTED_LINES)
    assert list(tmp_path.iterdir()) == []  # no database left behind
