"""The load the chaos scenarios drive, and the ledger that proves nothing acknowledged was lost.

Writers insert rows whose primary key they choose, so the outcome of every write is known by key:
acknowledged (the call returned), in doubt (it raised: the commit may or may not have happened),
or never attempted. A transaction writes two rows sharing ``txn``: both are there or neither.
Readers check freshness against the writers' acknowledgement times: a read started at ``t`` must
see every row acknowledged before ``t - max_lag``.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import peewee

from aiopeewee_dist import Manager


class ChaosRow(peewee.Model):
    id = peewee.BigIntegerField(primary_key=True)
    amount = peewee.IntegerField()
    txn = peewee.BigIntegerField(null=True, index=True)

    class Meta:
        table_name = "chaos_row"


@dataclass
class Outcome:
    at: float  # time.monotonic() when the operation ended
    kind: str  # "read" or "write"
    ok: bool
    took: float  # seconds
    error: type[BaseException] | None = None


@dataclass
class LedgerReport:
    acknowledged: int
    in_doubt: int
    present: int
    lost: list[int]  # acknowledged but absent
    phantom: list[int]  # present but never attempted
    torn: list[int]  # transactions with one row of two
    wrong_amount: list[int]
    checksum_ok: bool


class Ledger:
    """What the load was told, per key."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.acked: dict[int, int] = {}  # id -> amount
        self.in_doubt: set[int] = set()
        # Acknowledgement times in order, for freshness checks: (monotonic time, id).
        self._ack_times: list[float] = []
        self._ack_ids: list[int] = []

    def next_id(self) -> int:
        return next(self._ids)

    def ack(self, ids: dict[int, int]) -> None:
        now = time.monotonic()
        self.acked.update(ids)
        for row_id in ids:
            self._ack_times.append(now)
            self._ack_ids.append(row_id)

    def newest_acked_before(self, moment: float) -> int | None:
        """The id acknowledged last before ``moment`` (monotonic), if any."""
        index = bisect.bisect_left(self._ack_times, moment)
        return self._ack_ids[index - 1] if index else None

    async def insert(self, manager: Manager, *, then: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Insert a row; with ``then``, also run ``then()`` in the same transaction (the row is
        acknowledged only once that transaction committed)."""
        row_id, amount = self.next_id(), random.randint(1, 1000)
        try:
            if then is None:
                await manager.create(ChaosRow, id=row_id, amount=amount)
            else:
                async with manager.transaction():
                    await manager.create(ChaosRow, id=row_id, amount=amount)
                    await then()
        except BaseException:
            self.in_doubt.add(row_id)
            raise
        self.ack({row_id: amount})

    async def transfer(self, manager: Manager) -> None:
        """Three statements in one transaction: two inserts and an update of the first."""
        first, second = self.next_id(), self.next_id()
        amount = random.randint(1, 1000)
        try:
            async with manager.transaction():
                await manager.create(ChaosRow, id=first, amount=amount + 1, txn=first)
                await manager.create(ChaosRow, id=second, amount=-amount, txn=first)
                await manager.execute(ChaosRow.update(amount=amount).where(ChaosRow.id == first))
        except BaseException:
            self.in_doubt.update((first, second))
            raise
        self.ack({first: amount, second: -amount})

    async def verify(self, manager: Manager) -> LedgerReport:
        """Compare the primary's rows with what was acknowledged."""
        with manager.primary():
            rows = await manager.execute(ChaosRow.select(ChaosRow.id, ChaosRow.amount, ChaosRow.txn).tuples())
        # Negative ids are probes written outside the ledger (see check_invariants).
        present = {row_id: amount for row_id, amount, _ in rows if row_id > 0}
        groups: dict[int, int] = Counter(txn for _, _, txn in rows if txn is not None)
        attempted = self.acked.keys() | self.in_doubt
        acked_present = {k: present[k] for k in self.acked if k in present}
        return LedgerReport(
            acknowledged=len(self.acked),
            in_doubt=len(self.in_doubt),
            present=len(present),
            lost=sorted(k for k in self.acked if k not in present),
            phantom=sorted(k for k in present if k not in attempted),
            torn=sorted(txn for txn, n in groups.items() if n != 2),
            wrong_amount=sorted(k for k, v in acked_present.items() if v != self.acked[k]),
            checksum_ok=_checksum(acked_present) == _checksum(self.acked),
        )


def _checksum(rows: dict[int, int]) -> int:
    return zlib.crc32(",".join(f"{k}:{v}" for k, v in sorted(rows.items())).encode())


@dataclass
class Load:
    """Concurrent writers and readers through one manager, until :meth:`stop`.

    ``max_lag``: when set, every read that finds a row missing which was acknowledged more than
    ``max_lag`` seconds before the read started is counted in :attr:`stale_reads`.
    """

    manager: Manager
    ledger: Ledger
    writers: int = 2
    readers: int = 6
    transactions: bool = True
    max_lag: float | None = None
    pause: float = 0.002  # between one task's operations, so the load does not starve the loop
    outcomes: list[Outcome] = field(default_factory=list)
    stale_reads: list[tuple[int, float]] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.writers):
            self._tasks.append(asyncio.create_task(self._loop("write", self._write_once(n))))
        for _ in range(self.readers):
            self._tasks.append(asyncio.create_task(self._loop("read", self._read_once)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def _write_once(self, n: int) -> Callable[[], Awaitable[None]]:
        if self.transactions and n % 2 == 1:
            return lambda: self.ledger.transfer(self.manager)
        return lambda: self.ledger.insert(self.manager)

    async def _read_once(self) -> None:
        started = time.monotonic()
        target = self.ledger.newest_acked_before(started - self.max_lag) if self.max_lag else None
        if target is None:
            await self.manager.count(ChaosRow.select().where(ChaosRow.id > random.randint(0, 10**6)))
            return
        if await self.manager.get_or_none(ChaosRow, id=target) is None:
            self.stale_reads.append((target, started))

    async def _loop(self, kind: str, op: Callable[[], Awaitable[Any]]) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await op()
            except Exception as exc:  # counted, classified against the outage windows later
                now = time.monotonic()
                self.outcomes.append(Outcome(now, kind, False, now - started, type(exc)))
                await asyncio.sleep(0.05)  # a failing node answers fast: do not spin on it
            else:
                now = time.monotonic()
                self.outcomes.append(Outcome(now, kind, True, now - started))
            await asyncio.sleep(self.pause)

    # -- outage windows ---------------------------------------------------------------

    def outage(self) -> _Window:
        """``with load.outage():`` marks the span in which failures are expected."""
        return _Window(self)

    def figures(self) -> dict[str, Any]:
        """Counts of operations and failures, failures split by whether they fell in an outage
        window."""

        failed = [o for o in self.outcomes if not o.ok]
        errors = Counter(o.error.__name__ for o in failed if o.error is not None)
        return {
            "ops": len(self.outcomes),
            "reads": sum(o.kind == "read" for o in self.outcomes),
            "writes": sum(o.kind == "write" for o in self.outcomes),
            "failed_reads": sum(o.kind == "read" for o in failed),
            "failed_writes": sum(o.kind == "write" for o in failed),
            "failed_outside_outage": len(self.failures_outside_outage()),
            "slowest_failure_s": round(max((o.took for o in failed), default=0.0), 2),
            "stale_reads": len(self.stale_reads),
            "errors": dict(errors),
        }

    def in_outage(self, at: float, *, grace: float = 0.0) -> bool:
        """Whether ``at`` falls in an outage window extended by ``grace`` seconds."""
        return any(start <= at <= end + grace for start, end in self.windows)

    def failures_outside_outage(self, *, grace: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and not self.in_outage(o.at, grace=grace)]


class _Window:
    def __init__(self, load: Load) -> None:
        self._load = load
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self._load.windows.append((self._start, time.monotonic()))
