"""``manager.transaction(retries=N)`` on fake servers: what is re-run, what is not, how long it waits."""

from __future__ import annotations

import time

import peewee
import psycopg
import pymysql
import pytest

from aiopeewee_dist import CommitOutcomeUnknown, ConfigurationError, Manager, TransactionError
from aiopeewee_dist._retry import RetryPolicy
from aiopeewee_dist._server_errors import is_conflict, not_ready, refuses_writes
from aiopeewee_dist.testing import FakeCluster, Statement
from core.fakes import Item


def pg_error(sqlstate: str) -> Exception:
    """psycopg's own error class for ``sqlstate``, as the server's answer makes the driver raise it
    (the fake server raises it from the statement; Peewee wraps it on its way up, as it wraps
    the real driver's)."""
    error: Exception = psycopg.errors.lookup(sqlstate)(f"server says {sqlstate}")
    return error


def mysql_error(number: int) -> Exception:
    return pymysql.err.OperationalError(number, f"server says {number}")


def retries(manager: Manager) -> int:
    return int(manager.stats()["router"].get("transaction_retries", 0))


async def names(manager: Manager) -> list[str]:
    return sorted(i.name for i in await manager.execute(Item.select(), node="primary"))


@pytest.mark.parametrize(
    "error",
    [
        pg_error("40001"),  # serialization failure
        pg_error("40P01"),  # deadlock (PostgreSQL)
        mysql_error(1213),  # MySQL deadlock, Galera certification failure
    ],
    ids=["40001", "40P01", "mysql-1213"],
)
async def test_conflict_reruns_the_whole_block(manager: Manager, fake: FakeCluster, error: Exception) -> None:
    fake.primary.fail_next(error, match="INSERT")
    attempts: list[int] = []

    @manager.transaction(retries=3, retry_backoff=0.001, retry_max_backoff=0.002)
    async def add(name: str) -> str:
        attempts.append(1)
        await manager.create(Item, name=name)
        return name

    assert await add("a") == "a"
    assert len(attempts) == 2
    assert await names(manager) == ["a"]  # the failed attempt left nothing behind
    assert retries(manager) == 1


async def test_conflict_raised_by_commit_is_rerun(manager: Manager, fake: FakeCluster) -> None:
    fake.primary.fail_next(pg_error("40001"), match="COMMIT")
    attempts: list[int] = []

    async def add() -> None:
        attempts.append(1)
        await manager.create(Item, name=f"x{len(attempts)}")

    await manager.transaction(retries=2, retry_backoff=0.001).run(add)
    assert len(attempts) == 2
    assert await names(manager) == ["x2"]


async def test_conflict_from_a_statement_handler_is_rerun(manager: Manager, fake: FakeCluster) -> None:
    failures = [pg_error("40P01")]

    def handler(statement: Statement) -> None:
        if "UPDATE" in statement.sql and failures:
            raise failures.pop()

    await manager.create(Item, name="a")
    fake.primary.handler = handler
    attempts: list[int] = []

    @manager.transaction(retries=1, retry_backoff=0.001)
    async def bump() -> None:
        attempts.append(1)
        await manager.execute(Item.update(qty=Item.qty + 1))

    await bump()
    assert len(attempts) == 2
    assert (await manager.get(Item, name="a", node="primary")).qty == 1


async def test_retries_are_bounded_and_the_last_error_is_raised(manager: Manager, fake: FakeCluster) -> None:
    fake.primary.fail_next(pg_error("40001"), match="INSERT", times=10)
    attempts: list[int] = []

    @manager.transaction(retries=2, retry_backoff=0.001, retry_max_backoff=0.001)
    async def add() -> None:
        attempts.append(1)
        await manager.create(Item, name="a")

    with pytest.raises(peewee.OperationalError) as raised:
        await add()
    assert is_conflict(raised.value)
    assert len(attempts) == 3  # the first run and two re-runs
    assert retries(manager) == 2


@pytest.mark.parametrize(
    "error",
    [pg_error("23505"), mysql_error(1205)],
    ids=["pg-unique", "mysql-1205"],
)
async def test_other_errors_are_not_rerun(manager: Manager, fake: FakeCluster, error: Exception) -> None:
    fake.primary.fail_next(error, match="INSERT")
    attempts: list[int] = []

    @manager.transaction(retries=5, retry_backoff=0.001)
    async def add() -> None:
        attempts.append(1)
        await manager.create(Item, name="a")

    with pytest.raises(peewee.DatabaseError):
        await add()
    assert len(attempts) == 1
    assert retries(manager) == 0


async def test_application_error_is_not_rerun(manager: Manager) -> None:
    attempts: list[int] = []

    @manager.transaction(retries=5, retry_backoff=0.001)
    async def add() -> None:
        attempts.append(1)
        await manager.create(Item, name="a")
        raise KeyError("no")

    with pytest.raises(KeyError):
        await add()
    assert len(attempts) == 1
    assert await names(manager) == []


async def test_connection_lost_before_commit_is_rerun(manager: Manager, fake: FakeCluster) -> None:
    fake.primary.drop_next(match="INSERT")
    attempts: list[int] = []

    @manager.transaction(retries=1, retry_backoff=0.001)
    async def add() -> None:
        attempts.append(1)
        await manager.create(Item, name="a")

    await add()
    assert len(attempts) == 2
    assert await names(manager) == ["a"]
    assert retries(manager) == 1


async def test_lost_commit_is_outcome_unknown_and_never_rerun(manager: Manager, fake: FakeCluster) -> None:
    fake.primary.drop_next(match="COMMIT", after=True)
    attempts: list[int] = []

    @manager.transaction(retries=5, retry_backoff=0.001)
    async def add() -> None:
        attempts.append(1)
        await manager.create(Item, name="a")

    with pytest.raises(CommitOutcomeUnknown, match="COMMIT was in flight") as raised:
        await add()
    assert raised.value.__cause__ is not None
    assert len(attempts) == 1
    assert retries(manager) == 0
    assert await names(manager) == ["a"]  # this time it did commit: the caller could not know


async def test_async_with_is_refused(manager: Manager) -> None:
    with pytest.raises(TransactionError, match="decorate a function"):
        async with manager.transaction(retries=1):
            pass


def test_backoff_is_full_jitter_under_the_cap() -> None:
    policy = RetryPolicy(retries=3, backoff=0.01, max_backoff=0.05)
    for attempt in range(40):
        ceiling = min(0.05, 0.01 * 2**attempt)
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(0.0 <= d <= ceiling for d in delays)
    assert max(policy.delay(0) for _ in range(200)) > 0.0


async def test_total_wait_is_bounded_by_the_policy(manager: Manager, fake: FakeCluster) -> None:
    fake.primary.fail_next(pg_error("40001"), match="INSERT", times=4)

    async def add() -> None:
        await manager.create(Item, name="a")

    started = time.monotonic()
    await manager.transaction(retries=4, retry_backoff=0.001, retry_max_backoff=0.002).run(add)
    # Four waits of at most 2 ms each: far under a second even on a loaded machine.
    assert time.monotonic() - started < 1.0
    assert retries(manager) == 4


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": True}, "retries"),
        ({"retries": 1001}, "retries"),
        ({"retries": 1, "retry_backoff": 0}, "retry_backoff"),
        ({"retries": 1, "retry_max_backoff": 61}, "retry_max_backoff"),
        ({"retries": 1, "retry_backoff": 0.5, "retry_max_backoff": 0.1}, "retry_max_backoff"),
    ],
)
async def test_bad_policy_names_the_option(manager: Manager, options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        manager.transaction(**options)  # type: ignore[call-overload]


def test_is_conflict_reads_codes_through_wrapping() -> None:
    assert is_conflict(pg_error("40001"))
    assert not is_conflict(pg_error("40002"))
    mysql = mysql_error(1213)
    assert is_conflict(mysql)
    assert not is_conflict(Exception(1213, "not from a MySQL driver"))
    try:
        try:
            raise mysql
        except Exception as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        assert is_conflict(outer)
    loop = RuntimeError("self")
    loop.__context__ = loop
    assert not is_conflict(loop)


def test_refuses_writes_knows_each_servers_read_only_refusal() -> None:
    # PostgreSQL 25006 (a standby, a demoted leader); MariaDB 1290 for --read-only, not for
    # another option, nor 1792 (the caller's READ ONLY transaction); through Peewee's wrapping.
    assert refuses_writes(pg_error("25006"))
    assert refuses_writes(peewee.InternalError(pg_error("25006")))
    read_only = (
        "The MariaDB server is running with the --read-only option so it cannot execute this statement"
    )
    assert refuses_writes(peewee.OperationalError(pymysql.err.InternalError(1290, read_only)))
    assert not refuses_writes(pymysql.err.InternalError(1290, "running with the --secure-file-priv option"))
    assert not refuses_writes(mysql_error(1792))
    assert not refuses_writes(pg_error("40001"))
    assert not refuses_writes(mysql_error(1213))
    assert not refuses_writes(Exception(1290, "not from a MySQL driver"))


def test_a_conflict_is_found_in_peewees_orig_without_chaining() -> None:
    # Peewee 4 keeps the driver's error in ``.orig``; a layer that re-raises ``from None`` drops
    # the chain, and the conflict must still be recognised.
    import pymysql

    from aiopeewee_dist._server_errors import is_conflict

    driver_error = pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
    wrapped = peewee.OperationalError(driver_error)
    wrapped.__suppress_context__ = True
    assert getattr(wrapped, "orig", None) is driver_error
    assert is_conflict(wrapped)
    assert not is_conflict(peewee.OperationalError("something else"))


def test_not_ready_knows_a_galera_node_that_refuses_every_statement() -> None:
    refusal = pymysql.err.OperationalError(1047, "WSREP has not yet prepared node for application use")
    assert not_ready(refusal)
    assert not_ready(peewee.OperationalError(refusal))
    assert not not_ready(mysql_error(1213))
    assert not not_ready(pg_error("57P03"))
    assert not not_ready(Exception(1047, "not from a MySQL driver"))
