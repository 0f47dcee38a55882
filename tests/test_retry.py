"""``manager.transaction(retries=N)``: conflicts re-run, lost connections before COMMIT re-run,
a lost COMMIT never re-run, on real servers."""

from __future__ import annotations

import asyncio
from typing import Any

import peewee
import pytest
from conftest import Topology

from aiopeewee_dist import (
    CommitOutcomeUnknown,
    ConfigurationError,
    Manager,
    NodeUnavailable,
    TransactionError,
)
from aiopeewee_dist._server_errors import is_conflict

pytestmark = pytest.mark.cluster


class Account(peewee.Model):
    id = peewee.IntegerField(primary_key=True)
    balance = peewee.IntegerField()

    class Meta:
        table_name = "t_retry_account"


async def fresh_accounts(manager: Manager, topology: Topology, count: int, balance: int) -> None:
    await manager.drop_tables([Account])
    await manager.create_tables([Account])
    await manager.insert_many(Account, [{"id": i, "balance": balance} for i in range(count)])
    await topology.wait_replicated()


async def total(manager: Manager) -> int:
    with manager.primary():
        return int(await manager.scalar(Account.select(peewee.fn.SUM(Account.balance))))


class Rendezvous:
    """Both tasks' first attempts meet here after their read: the classic lost update, which
    SERIALIZABLE refuses (PostgreSQL: 40001; MariaDB: shared read locks, then deadlock 1213)."""

    def __init__(self) -> None:
        self.arrived = 0
        self.both = asyncio.Event()

    async def meet(self) -> None:
        self.arrived += 1
        if self.arrived >= 2:
            self.both.set()
        await asyncio.wait_for(self.both.wait(), 10)


async def test_conflict_is_rerun_and_both_transfers_count(cluster_topology: Topology) -> None:
    manager = cluster_topology.manager()
    async with manager:
        await fresh_accounts(manager, cluster_topology, 1, 100)
        meeting = Rendezvous()
        attempts: dict[int, int] = {10: 0, 20: 0}

        @manager.transaction(isolation="SERIALIZABLE", retries=5, retry_backoff=0.01)
        async def add(delta: int) -> None:
            attempts[delta] += 1
            row = await manager.get(Account, id=0)
            if attempts[delta] == 1:
                await meeting.meet()
            await manager.execute(Account.update(balance=row.balance + delta).where(Account.id == 0))

        await asyncio.gather(add(10), add(20))
        assert await total(manager) == 130
        calls = sum(attempts.values())
        assert calls >= 3, f"no conflict happened ({attempts})"
        assert manager.stats()["router"]["transaction_retries"] == calls - 2


async def test_without_retries_the_conflict_is_raised(cluster_topology: Topology) -> None:
    if cluster_topology.kind != "pg":
        pytest.skip("PostgreSQL's SERIALIZABLE gives a deterministic 40001 here")
    manager = cluster_topology.manager()
    async with manager:
        await fresh_accounts(manager, cluster_topology, 1, 100)
        meeting = Rendezvous()

        @manager.transaction(isolation="SERIALIZABLE")
        async def add(delta: int) -> None:
            row = await manager.get(Account, id=0)
            await meeting.meet()
            await manager.execute(Account.update(balance=row.balance + delta).where(Account.id == 0))

        results = await asyncio.gather(add(1), add(2), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], peewee.OperationalError), results
        assert is_conflict(errors[0])


async def test_retries_exhausted_raise_the_last_conflict(cluster_topology: Topology) -> None:
    if cluster_topology.kind != "pg":
        pytest.skip("PostgreSQL's SERIALIZABLE gives a deterministic 40001 here")
    manager = cluster_topology.manager()
    async with manager:
        await fresh_accounts(manager, cluster_topology, 1, 100)
        calls = 0

        @manager.transaction(isolation="SERIALIZABLE", retries=1, retry_backoff=0.01)
        async def always_conflicting() -> None:
            # Each attempt meets a fresh writer that commits first: every attempt conflicts.
            nonlocal calls
            calls += 1
            row = await manager.get(Account, id=0)
            other = cluster_topology.manager()
            try:
                await other.execute(Account.update(balance=Account.balance + 1).where(Account.id == 0))
            finally:
                await other.close()
            await manager.execute(Account.update(balance=row.balance + 10).where(Account.id == 0))

        with pytest.raises(peewee.OperationalError) as caught:
            await always_conflicting()
        assert calls == 2
        assert is_conflict(caught.value)
        assert "could not serialize" in str(caught.value)
        assert await total(manager) in (101, 102)


async def test_node_lost_before_commit_is_rerun(cluster_topology: Topology) -> None:
    """The block's connection is terminated by the server mid-block: nothing was committed,
    so the block runs again on a fresh connection."""
    manager = cluster_topology.manager()
    # pg_terminate_backend(pid, timeout) waits until the session is gone.
    kill = "SELECT pg_terminate_backend(%s, 5000)" if cluster_topology.kind == "pg" else "KILL %s"
    whoami = "SELECT pg_backend_pid()" if cluster_topology.kind == "pg" else "SELECT CONNECTION_ID()"
    async with manager:
        await fresh_accounts(manager, cluster_topology, 1, 100)
        calls = 0

        @manager.transaction(retries=2, retry_backoff=0.01)
        async def deposit() -> None:
            nonlocal calls
            calls += 1
            await manager.execute(Account.update(balance=Account.balance + 5).where(Account.id == 0))
            if calls == 1:
                pid = (await manager.raw_sql(whoami))[0][0]
                other = cluster_topology.manager()
                try:
                    await other.raw_sql(kill.replace("%s", str(int(pid))), node="primary")
                finally:
                    await other.close()
                await manager.raw_sql("SELECT 1")  # finds the connection gone

        await deposit()
        assert calls == 2
        assert await total(manager) == 105


async def test_lost_commit_is_not_rerun(tmp_path: Any) -> None:
    """COMMIT in flight when the connection dies: CommitOutcomeUnknown, one attempt only.

    A deferred constraint trigger makes COMMIT itself take a second on the server, and the
    session is terminated from another connection meanwhile.
    """
    from conftest import topology_for

    topology = topology_for("psycopg", tmp_path)
    manager = topology.manager()
    async with manager:
        await fresh_accounts(manager, topology, 1, 100)
        await manager.raw_sql(
            "CREATE OR REPLACE FUNCTION t_retry_slow() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$"
        )
        await manager.raw_sql(
            "CREATE CONSTRAINT TRIGGER t_retry_slow_commit AFTER UPDATE ON t_retry_account"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION t_retry_slow()"
        )
        calls = 0
        killer = topology.manager()

        async def terminate(pid: int) -> None:
            await asyncio.sleep(0.5)  # COMMIT is running its 1.5 s trigger by then
            await killer.raw_sql(f"SELECT pg_terminate_backend({pid})", node="primary")

        @manager.transaction(retries=3, retry_backoff=0.01)
        async def deposit() -> asyncio.Task[None]:
            nonlocal calls
            calls += 1
            await manager.execute(Account.update(balance=Account.balance + 5).where(Account.id == 0))
            pid = (await manager.raw_sql("SELECT pg_backend_pid()"))[0][0]
            return asyncio.create_task(terminate(int(pid)))

        try:
            with pytest.raises(CommitOutcomeUnknown) as caught:
                await deposit()
        finally:
            await killer.close()
        assert calls == 1
        assert isinstance(caught.value.__cause__, NodeUnavailable)
        assert isinstance(caught.value, peewee.OperationalError)


async def test_retrying_transaction_refuses_a_with_block(tmp_path: Any) -> None:
    manager = Manager(f"sqlite:///{tmp_path / 'r.db'}")
    async with manager:
        with pytest.raises(TransactionError, match="cannot be run twice"):
            async with manager.transaction(retries=2):
                pass


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": True}, "retries"),
        ({"retries": 2, "retry_backoff": 0}, "retry_backoff"),
        ({"retries": 2, "retry_max_backoff": 120}, "retry_max_backoff"),
        ({"retries": 2, "retry_backoff": 1.0, "retry_max_backoff": 0.5}, "retry_max_backoff"),
    ],
)
def test_retry_options_are_validated(tmp_path: Any, options: dict[str, Any], named: str) -> None:
    manager = Manager(f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(ConfigurationError, match=named):
        manager.transaction(**options)


async def test_other_errors_are_not_rerun(tmp_path: Any) -> None:
    manager = Manager(f"sqlite:///{tmp_path / 'r.db'}")
    calls = 0

    @manager.transaction(retries=5)
    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("not a conflict")

    async with manager:
        with pytest.raises(ValueError, match="not a conflict"):
            await fail()
    assert calls == 1
