"""What a server's error code says, read through the wrappers around it.

A driver error reaches the library wrapped by Peewee (``peewee.InternalError`` holding the
driver's error in ``.orig``, or in ``args[0]`` on older Peewee, chained as the context too).
The codes read here are public attributes of the drivers' errors: the SQLSTATE (psycopg and
asyncpg ``sqlstate``, psycopg2 ``pgcode``) and the MySQL/MariaDB error number (``args[0]`` of a
PyMySQL error).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

__all__ = ["is_conflict", "not_ready", "refuses_writes"]

#: SQLSTATEs meaning "rolled back because of concurrent transactions: run it again".
CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})
#: MySQL/MariaDB error numbers meaning the same (1213: deadlock, Galera certification failure).
CONFLICT_MYSQL_ERRORS = frozenset({1213})

#: PostgreSQL: "cannot execute ... in a read-only transaction" (a standby, or a demoted leader).
READ_ONLY_SQLSTATES = frozenset({"25006"})
#: MySQL/MariaDB: "running with the --read-only option" (or --super-read-only). 1290 is given for
#: any option that prevents a statement (``--secure-file-priv`` too): its message says which.
#: (1792, a READ ONLY transaction, is the caller's own choice, never a demoted server.)
READ_ONLY_MYSQL_ERRORS = frozenset({1290})

#: MariaDB Galera: "WSREP has not yet prepared node for application use" (SQLSTATE 08S01). A node
#: joining the cluster, or cut off in a non-primary component, refuses every statement unrun.
NOT_READY_MYSQL_ERRORS = frozenset({1047})


def _codes(exc: BaseException) -> tuple[str | None, int | None]:
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    number = None
    if (
        type(exc).__module__.split(".")[0] in ("pymysql", "aiomysql")
        and exc.args
        and isinstance(exc.args[0], int)
    ):
        number = exc.args[0]
    return (sqlstate if isinstance(sqlstate, str) else None), number


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors it wraps, each once (a cycle or a deep chain ends the walk)."""
    seen: set[int] = set()
    stack = [exc]
    while stack and len(seen) <= 8:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(
            e
            for e in (
                getattr(current, "orig", None),
                *current.args[:1],
                current.__cause__,
                current.__context__,
            )
            if isinstance(e, BaseException)
        )


def _any_error(exc: BaseException, matches: Callable[[BaseException, str | None, int | None], bool]) -> bool:
    """Whether ``matches(error, sqlstate, mysql_number)`` holds for ``exc`` or an error it wraps."""
    return any(matches(error, *_codes(error)) for error in _chain(exc))


def is_conflict(exc: BaseException) -> bool:
    """Whether the server rolled the transaction back because of a conflict: serialization
    failure, deadlock, Galera certification failure."""
    return _any_error(
        exc, lambda _, state, number: state in CONFLICT_SQLSTATES or number in CONFLICT_MYSQL_ERRORS
    )


def refuses_writes(exc: BaseException) -> bool:
    """Whether the server refused a statement because it is read-only: a standby or a read-only
    server, or (PostgreSQL says both the same way) a read-only transaction."""
    return _any_error(
        exc,
        lambda error, state, number: (
            state in READ_ONLY_SQLSTATES or (number in READ_ONLY_MYSQL_ERRORS and "read-only" in str(error))
        ),
    )


def not_ready(exc: BaseException) -> bool:
    """Whether the server refused the statement, unrun, because it cannot serve any now (a Galera
    node that is not Synced in the primary component)."""
    return _any_error(exc, lambda _, state, number: number in NOT_READY_MYSQL_ERRORS)
