"""Sharding with aiopeewee_dist, on three SQLite files standing in for three database servers.

Run it with ``.venv/bin/python examples/sharding.py``; it needs no server. With real servers
only the URLs change, e.g. ``{"s1": {"primary": "postgresql://app@db1/app", "replicas": [...]}}``.

It shows: placing models (by key, reference, home), keyed CRUD landing on one shard, a
fan-out with a global ORDER BY/LIMIT and merged aggregates, a streaming fan-out, a shard
transaction refusing to touch another shard, and a batch job over every shard.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from urllib.parse import quote

import peewee

from aiopeewee_dist import CrossShardError, IdGenerator, ShardedIdField, ShardedManager, ShardKeyError

# Ids are made by the application, so every shard can insert without a shared sequence.
# The worker id (0-1023) must differ between processes that make ids at the same time.
ids = IdGenerator(worker_id=1)


class User(peewee.Model):
    id = peewee.BigIntegerField(primary_key=True)
    name = peewee.CharField(max_length=64)
    score = peewee.IntegerField()

    class Meta:
        table_name = "user"
        shard_key = "id"  # placement read from Meta: hash of the id


class Order(peewee.Model):
    id = ShardedIdField(ids)
    user_id = peewee.BigIntegerField(index=True)  # same key values as User.id: same shard as its user
    amount = peewee.IntegerField()

    class Meta:
        table_name = "orders"


class Country(peewee.Model):
    code = peewee.CharField(max_length=2, primary_key=True)
    name = peewee.CharField(max_length=64)

    class Meta:
        table_name = "country"


async def main(folder: Path) -> None:
    shards = {name: "sqlite:///" + quote(str(folder / f"{name}.db")) for name in ("s1", "s2", "s3")}
    sharded = ShardedManager(shards, max_size=4, acquire_timeout=5.0)
    sharded.register(Order, key="user_id")
    sharded.register(Country, reference=True)  # a copy on every shard
    print(f"sharded: {sharded!r}")

    async with sharded:
        await sharded.create_tables([User, Order, Country])
        print("created tables on every shard")

        # Keyed writes go to exactly one shard, computed from the key.
        people = [("ada", 90), ("alan", 75), ("grace", 95), ("edsger", 60), ("barbara", 80), ("donald", 85)]
        users = [await sharded.create(User, id=i, name=n, score=s) for i, (n, s) in enumerate(people, 1)]
        for user in users:
            await sharded.create(Order, user_id=user.id, amount=10 * user.id)
        placement = {u.name: sharded.shard_for(User, u.id) for u in users}
        print("placement: " + ", ".join(f"{name}->{shard}" for name, shard in placement.items()))

        await sharded.create(Country, code="fr", name="France")  # written to all three shards
        copies = [await sharded.shard(s).count(Country.select()) for s in sharded.shards]
        print(f"reference table copies: {copies}")

        # A keyed read: the key in the filters routes it.
        grace = await sharded.get(User, id=3)
        print(f"get: {grace.name} (score {grace.score}) from {sharded.shard_for(User, 3)}")

        # No key: refused, unless the caller asks for a fan-out.
        try:
            await sharded.get(User, name="alan")
        except ShardKeyError as exc:
            print(f"keyless get refused: {exc}")
        alan = await sharded.get(User, name="alan", shards="all")
        print(f"fan-out get: {alan.name} has id {alan.id}")

        # Fan-out with a global ORDER BY and LIMIT/OFFSET, merged from the three shards.
        query = User.select().order_by(User.score.desc(), User.id).limit(3).offset(1)
        page = await sharded.execute(query, shards="all")
        print("top scores 2-4: " + ", ".join(f"{u.name} {u.score}" for u in page))

        total = await sharded.count(User.select(), shards="all")
        summed = await sharded.scalar(Order.select(peewee.fn.SUM(Order.amount)), shards="all")
        print(f"count: {total} users; sum of orders: {summed}")

        # Streaming fan-out: an async k-way merge, one chunk per shard in memory.
        async with sharded.iterate(User.select().order_by(User.name), shards="all", chunk_size=2) as rows:
            names = [user.name async for user in rows]
        print(f"streamed in name order: {', '.join(names)}")

        # A transaction lives on one shard; touching another raises before anything is sent.
        ada, alan_id = 1, 2
        try:
            async with sharded.transaction(shard_key=ada):
                await sharded.create(Order, user_id=ada, amount=1)
                if sharded.shard_for(User, alan_id) != sharded.shard_for(User, ada):
                    await sharded.create(Order, user_id=alan_id, amount=1)
        except CrossShardError as exc:
            print(f"cross-shard write refused: {exc}")
        print(
            f"orders of ada after rollback: {await sharded.count(Order.select().where(Order.user_id == ada))}"
        )

        # Batch processing over every shard, in global key order, with progress.
        done: dict[str, int] = {}
        walked = [
            user.id
            async for user in sharded.walk(
                User, batch_size=2, on_progress=lambda shard, n, total: done.__setitem__(shard, n)
            )
        ]
        print(f"walk in id order: {walked}; rows per shard: {dict(sorted(done.items()))}")

        seen: list[int] = []

        async def award(batch: list[User]) -> None:
            seen.extend(user.id for user in batch)

        processed = await sharded.process(User, award, concurrency=2, batch_size=2)
        print(f"process: {processed} users in batches, {len(set(seen))} distinct")

        stats = sharded.stats()
        print("queries per shard: " + ", ".join(f"{s}={stats[s][f'{s}.primary']['queries']}" for s in stats))
    print("sharded manager closed")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="aiopd-sharding-") as tmp:
        asyncio.run(main(Path(tmp)))
