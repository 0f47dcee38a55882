"""Transactions: a money transfer, savepoints, a decorator, rollback on error, read-only blocks.

Runs on SQLite by default (``.venv/bin/python examples/transactions.py``); set ``DATABASE_URL``
(and optionally ``DATABASE_REPLICA_URLS``) to run the same code on PostgreSQL or MariaDB.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import peewee

from aiopeewee_dist import Manager, ReadOnlyError


class Account(peewee.Model):
    id = peewee.AutoField()
    owner = peewee.CharField(max_length=64, unique=True)
    balance = peewee.DecimalField(max_digits=12, decimal_places=2, default=0)

    class Meta:
        table_name = "example_tx_account"


class InsufficientFunds(Exception):
    pass


async def main(manager: Manager) -> None:
    async with manager:
        await manager.drop_tables([Account])
        await manager.create_tables([Account])
        await manager.create(Account, owner="ada", balance=Decimal("100.00"))
        await manager.create(Account, owner="alan", balance=Decimal("20.00"))

        # A decorated coroutine runs in its own transaction on every call: one connection of
        # the primary, BEGIN ... COMMIT, or ROLLBACK if it raises.
        @manager.transaction()
        async def transfer(source: str, target: str, amount: Decimal) -> None:
            # SELECT ... FOR UPDATE locks the row on PostgreSQL/MySQL until the commit, so two
            # concurrent transfers cannot both spend the same money (SQLite locks the whole
            # database for a write transaction: BEGIN IMMEDIATE).
            query = Account.select().where(Account.owner == source)
            if manager.primary_node.dialect != "sqlite":
                query = query.for_update()
            [payer] = await manager.execute(query)
            if payer.balance < amount:
                raise InsufficientFunds(f"{source} has {payer.balance:.2f}, needs {amount:.2f}")
            debit = Account.update(balance=Account.balance - amount).where(Account.id == payer.id)
            credit = Account.update(balance=Account.balance + amount).where(Account.owner == target)
            await manager.execute(debit)
            await manager.execute(credit)

        await transfer("ada", "alan", Decimal("30.00"))
        print(f"after transfer: {await balances(manager)}")

        try:
            await transfer("alan", "ada", Decimal("500.00"))
        except InsufficientFunds as exc:
            print(f"refused and rolled back: {exc}; balances unchanged: {await balances(manager)}")

        # Nested blocks are savepoints: an error inside one undoes only that block.
        async with manager.transaction():
            await manager.create(Account, owner="grace", balance=Decimal("5.00"))
            try:
                async with manager.transaction():  # SAVEPOINT
                    await manager.create(Account, owner="ada")  # duplicate owner
            except peewee.IntegrityError:
                print("duplicate owner: the savepoint rolled back, the outer transaction goes on")
        print(f"after commit: {await balances(manager)}")

        # A read-only transaction may run on a replica, and refuses writes before sending them.
        async with manager.transaction(read_only=True):
            total = await manager.scalar(Account.select(peewee.fn.SUM(Account.balance)))
            print(f"total money (read-only transaction): {Decimal(total):.2f}")
            try:
                await manager.create(Account, owner="mallory")
            except ReadOnlyError as exc:
                print(f"write refused: {exc}")

        await manager.drop_tables([Account])
    print("done")


async def balances(manager: Manager) -> dict[str, str]:
    rows = await manager.execute(Account.select().order_by(Account.owner))
    return {row.owner: f"{row.balance:.2f}" for row in rows}


if __name__ == "__main__":
    replicas = [u.strip() for u in os.environ.get("DATABASE_REPLICA_URLS", "").split(",") if u.strip()]
    if os.environ.get("DATABASE_URL"):
        asyncio.run(main(Manager(os.environ["DATABASE_URL"], replicas)))
    else:
        with tempfile.TemporaryDirectory(prefix="aiopd-transactions-") as tmp:
            asyncio.run(main(Manager("sqlite:///" + quote(str(Path(tmp) / "bank.db")))))
