"""Share of reads the replicas serve under the 90/10 mix, old read-your-writes default vs new.

Simulated web clients (each carries its read-your-writes token from one request to the next,
like the integrations' cookie) do 90% reads and 10% writes of random rows through one manager
on the primary and its two streaming replicas, each request in its own consistency scope.
``sticky`` (the old default, 2 s) keeps a client's reads on the primary for 2 s after its
write, whatever the lag; ``fresh`` (the new default) until the health monitor has proven a
replica holds the write (about one check interval at loopback lag), and for as long as it takes
when replicas lag. Reads that saw the client's own last write are counted too.

    AIOPD_PORT_OFFSET=... python -m benchmarks.ryw_share [--seconds 10] [--clients 200]

With the replicas delayed (``scripts/cluster.sh delay pg-replica-1 3``, same for replica 2),
the old default also shows the reads that missed the client's own write.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time
import warnings
from typing import Any

import peewee

from aiopeewee_dist import Manager

from . import settings

ROWS = 1000


class RywItem(peewee.Model):
    value = peewee.IntegerField()

    class Meta:
        table_name = "bench_ryw_item"


async def run(mode: str, seconds: float, clients: int, concurrency: int) -> dict[str, Any]:
    replicas = [settings.url(port) for port in settings.REPLICA_PORTS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "sticky" is deprecated
        options: dict[str, Any] = {"read_your_writes": mode}
        if mode == "sticky":
            options["sticky_seconds"] = 2.0
        manager = Manager(settings.url(), replicas, max_size=settings.POOL_MAX_SIZE, **options)
    if clients > ROWS:
        raise SystemExit(f"--clients must be at most {ROWS} (one row of its own each)")
    tokens: list[str | None] = [None] * clients
    # One request at a time per client, as from one browser, so "its last write" is well defined.
    busy = [asyncio.Lock() for _ in range(clients)]
    last_write: list[tuple[int, int] | None] = [None] * clients  # (row, value) the client wrote last
    seen = [0, 0]  # reads of a row the client wrote last: saw its value / did not
    try:
        await manager.connect()
        await manager.drop_tables([RywItem])
        await manager.create_tables([RywItem])
        await manager.insert_many(RywItem, [{"id": i, "value": 0} for i in range(1, ROWS + 1)])
        setup_done = time.time()
        for _ in range(600):  # until the monitor has seen every replica holding the setup (60 s)
            if all(node.health.holds_writes_before(setup_done) for node in manager.replicas):
                break
            await asyncio.sleep(0.1)
        before = dict(manager.stats()["router"])
        deadline = time.monotonic() + seconds
        stamps = itertools.count(1)  # write values grow across all workers

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                client = rng.randrange(clients)
                async with busy[client]:
                    await request(rng, client, next(stamps))

        async def request(rng: random.Random, client: int, n: int) -> None:
            with manager.consistency(tokens[client]) as session:
                if rng.random() < 0.1:
                    row = client + 1  # only this client writes its row: its values only grow
                    await manager.execute(RywItem.update(value=n).where(RywItem.id == row))
                    last_write[client] = (row, n)
                else:
                    wrote = last_write[client]
                    row = wrote[0] if wrote and rng.random() < 0.5 else rng.randint(1, ROWS)
                    item = await manager.get(RywItem, id=row)
                    if wrote and wrote[0] == row:
                        seen[0 if item.value >= wrote[1] else 1] += 1
                tokens[client] = session.token() if session.written_at else tokens[client]

        await asyncio.gather(*(worker(i + 1) for i in range(concurrency)))
        after = manager.stats()["router"]
    finally:
        await manager.drop_tables([RywItem])
        await manager.close()
    reads = after.get("reads", 0) - before.get("reads", 0)
    on_replicas = sum(v - before.get(k, 0) for k, v in after.items() if k.startswith("reads:replica"))
    return {
        "mode": mode,
        "reads": reads,
        "replica_share": round(on_replicas / reads, 3) if reads else None,
        "own_write_reads": seen[0] + seen[1],
        "own_write_missed": seen[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    results = [
        asyncio.run(run(mode, args.seconds, args.clients, args.concurrency)) for mode in ("sticky", "fresh")
    ]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
