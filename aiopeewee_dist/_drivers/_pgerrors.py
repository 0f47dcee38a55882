"""asyncpg's server errors as DB-API error classes, by SQLSTATE class, as psycopg maps them.

Peewee's exception wrapper turns an error into ``peewee.IntegrityError`` and friends by the name
of its class or of its first base. asyncpg's classes are several levels deep (e.g.
``InFailedSQLTransactionError`` -> ``InvalidTransactionStateError`` -> ``PostgresError``), so
without this some server errors would reach the application as raw asyncpg exceptions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["translate"]


class Error(Exception):
    """A server error from asyncpg; ``sqlstate`` (and its psycopg name ``pgcode``) kept."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = self.pgcode = sqlstate


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


_BY_CLASS: dict[str, type[DatabaseError]] = {
    **dict.fromkeys(["08", "28", "40", "53", "54", "55", "57", "58", "HV"], OperationalError),
    **dict.fromkeys(["20", "21", "34", "3D", "3F", "42", "44"], ProgrammingError),
    **dict.fromkeys(
        ["24", "25", "26", "27", "2B", "2D", "2F", "38", "39", "3B", "72", "F0", "P0", "XX"], InternalError
    ),
    "0A": NotSupportedError,
    "22": DataError,
    "23": IntegrityError,
}


def translate(exc: Any) -> DatabaseError:
    """The DB-API error for an ``asyncpg.PostgresError`` (raise it ``from`` the original)."""
    sqlstate = getattr(exc, "sqlstate", None)
    cls = _BY_CLASS.get((sqlstate or "")[:2], DatabaseError)
    return cls(str(exc), sqlstate)
