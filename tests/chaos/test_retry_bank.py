"""SERIALIZABLE bank transfers on PostgreSQL with ``transaction(retries=N)``: many concurrent
transfers over few accounts make serialization failures (40001) all the time; every transfer
must end up applied exactly once, so the total balance never changes."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import peewee
import pytest
from conftest import topology_for

from chaos.invariants import record
from chaos.scenario import SCALE

pytestmark = pytest.mark.cluster


class BankAccount(peewee.Model):
    id = peewee.IntegerField(primary_key=True)
    balance = peewee.IntegerField()

    class Meta:
        table_name = "t_bank_account"


@pytest.mark.parametrize("backend", ["psycopg", "aiopg"])
async def test_serializable_transfers_keep_the_total(backend: str, tmp_path: Path) -> None:
    topology = topology_for(backend, tmp_path)
    manager = topology.manager(max_size=8)
    accounts, start = 6, 1000
    workers, per_worker = 8, (100 if SCALE.full else 15)
    done = 0
    async with manager:
        await manager.drop_tables([BankAccount])
        await manager.create_tables([BankAccount])
        await manager.insert_many(BankAccount, [{"id": i, "balance": start} for i in range(accounts)])

        @manager.transaction(
            isolation="SERIALIZABLE", retries=100, retry_backoff=0.002, retry_max_backoff=0.1
        )
        async def transfer(source: int, target: int, amount: int) -> None:
            row = await manager.get(BankAccount, id=source)  # read, then write: a serialization hazard
            await manager.execute(
                BankAccount.update(balance=row.balance - amount).where(BankAccount.id == source)
            )
            await manager.execute(
                BankAccount.update(balance=BankAccount.balance + amount).where(BankAccount.id == target)
            )

        async def worker() -> None:
            nonlocal done
            for _ in range(per_worker):
                source, target = random.sample(range(accounts), 2)
                await transfer(source, target, random.randint(1, 20))
                done += 1

        await asyncio.gather(*(worker() for _ in range(workers)))
        with manager.primary():
            total = await manager.scalar(BankAccount.select(peewee.fn.SUM(BankAccount.balance)))
        retries = manager.stats()["router"].get("transaction_retries", 0)
    record("serializable transfers", backend, transfers=done, retries=retries, total=int(total))
    assert done == workers * per_worker
    assert int(total) == accounts * start
    assert retries > 0, "no serialization failure happened: the test proves nothing"
