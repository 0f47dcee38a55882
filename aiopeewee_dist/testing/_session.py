"""One client connection to a fake server: its own SQLite connection and transaction record.

What the session ran inside a transaction is kept until COMMIT, so that the server ships only
committed transactions to its replicas, in commit order (SQLite lets one writer at a time hold
the write lock, so commit order is execution order and the replay gives the same rows).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import FakeServer

__all__ = ["FakeConnectionLost", "FakeReadOnly", "FakeSession", "first_word", "is_write"]

_ids = itertools.count(1)
_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"})

Logged = tuple[str, tuple[Any, ...]]


class FakeConnectionLost(sqlite3.OperationalError):
    """The fake server closed the connection (it went down, or a test dropped the connection)."""


class FakeReadOnly(sqlite3.OperationalError):
    """A write refused by a read-only server or session, with PostgreSQL's SQLSTATE for it."""

    sqlstate = "25006"


def first_word(sql: str) -> str:
    """The statement's first keyword, upper-cased (``""`` for an empty statement)."""
    words = sql.lstrip(" \t\r\n(").split(None, 1)
    return words[0].upper().rstrip(";") if words else ""


def is_write(sql: str) -> bool:
    """Whether a statement changes data or schema (decided by its first keyword)."""
    return first_word(sql) in _WRITES


def _savepoint_name(sql: str) -> str:
    return sql.split()[-1].strip("\"'`;")


class FakeSession:
    """A client connection: autocommit unless a BEGIN is open, like the real drivers' sessions."""

    def __init__(
        self,
        server: FakeServer,
        path: str,
        *,
        read_only: bool,
        functions: dict[str, Callable[[], Any]],
        on_commit: Callable[[list[Logged]], None],
    ) -> None:
        self.id = next(_ids)
        self.server = server
        self.read_only = read_only
        #: The client knows the connection is closed (it closed it, or a statement found it lost).
        self.closed = False
        #: The server closed it; the client finds out on its next statement, as over a socket.
        self.dropped = False
        self._in_transaction_when_dropped = False
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("PRAGMA foreign_keys = ON")
        for name, function in functions.items():
            self.db.create_function(name, 0, function)
        self._on_commit = on_commit
        self._pending: list[Logged] = []
        self._savepoints: list[tuple[str, int]] = []

    def __repr__(self) -> str:
        return f"<FakeSession {self.id}{' closed' if self.closed else ''}>"

    @property
    def in_transaction(self) -> bool:
        """The transaction state as the client last saw it."""
        if self.closed:
            return False
        return self._in_transaction_when_dropped if self.dropped else self.db.in_transaction

    def drop(self) -> None:
        """The server side ends the session; an open transaction is rolled back."""
        if not self.dropped:
            self._in_transaction_when_dropped = not self.closed and self.db.in_transaction
            self.dropped = True
            self._pending.clear()
            self._savepoints.clear()
            self.db.close()

    def close(self) -> None:
        """The client closes the connection."""
        self.drop()
        self.closed = True

    def run(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        """Run one statement; record what a replica must replay once it is committed."""
        cursor = self.db.execute(sql, params)
        self._record(sql, tuple(params))
        return cursor

    def _record(self, sql: str, params: tuple[Any, ...]) -> None:
        word = first_word(sql)
        if word == "SAVEPOINT":
            self._savepoints.append((_savepoint_name(sql), len(self._pending)))
        elif word == "RELEASE":
            self._unwind(_savepoint_name(sql), keep=False)
        elif word == "ROLLBACK" and " TO " in f" {sql.upper()} ":
            self._unwind(_savepoint_name(sql), keep=True)
        elif word == "ROLLBACK":
            self._pending.clear()
            self._savepoints.clear()
        elif word in _WRITES:
            self._pending.append((sql, params))
        if not self.db.in_transaction:
            # Autocommit, COMMIT, or the RELEASE of a savepoint that opened the transaction.
            pending, self._pending = self._pending, []
            self._savepoints.clear()
            if pending:
                self._on_commit(pending)

    def _unwind(self, name: str, *, keep: bool) -> None:
        for index in range(len(self._savepoints) - 1, -1, -1):
            if self._savepoints[index][0] == name:
                if keep:  # ROLLBACK TO: the savepoint stays, the statements after it go
                    del self._pending[self._savepoints[index][1] :]
                    del self._savepoints[index + 1 :]
                else:
                    del self._savepoints[index:]
                return
