"""A node that stops answering without closing its sockets (a partition, a frozen host).

The node is reached through :class:`chaos.proxy.ChaosProxy`; holding its traffic leaves every
socket open and silent, so only the manager's own timeouts can end a call. Each scenario checks
that they fire on their bounds, that nothing hangs (every test runs under ``asyncio.timeout``),
that reads fail over where the router can, that the manager recovers by itself once the proxy
forwards again, and then the invariants of :func:`chaos.invariants.check_invariants`.

Server sessions behind a held proxy: a client that gives up during the hold closes its socket,
but the proxy holds that end-of-stream like every other byte (a FIN retransmitted until the
partition heals). When the proxy forwards again the server receives what was held (perhaps
the statement that "timed out": such writes are in doubt in the ledger) and then the close, so
its session ends and the invariants' view of the server settles without any help.
``test_timeouts_fire_on_their_bounds`` also resets held connections (``drop``): PostgreSQL and
MariaDB end a session whose socket was reset at once, which the same check confirms.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee
import pytest
from cluster import until
from conftest import Topology

from aiopeewee_dist import Manager, NodeUnavailable, PoolTimeout, QueryTimeout
from aiopeewee_dist._bounded import CANCEL_GRACE
from chaos.invariants import chaos_topology, check_invariants
from chaos.proxy import ChaosProxy
from chaos.scenario import SCALE, fresh_table
from chaos.workload import Ledger, Load

FULL = SCALE.full
OUTAGE = 8.0 if FULL else 2.0  # how long the node stays silent (after the replica's ejection)

QUERY_TIMEOUT = 1.0
CONNECT_TIMEOUT = 1.0
ACQUIRE_TIMEOUT = 1.5
SLACK = 2.0  # two busy cores: timers fire late, never early
# The longest one failing call may take: wait for a pool slot, then connect, then the statement
# and the driver's grace to cancel it (psycopg sends a cancel request, which the hold swallows).
CALL_BOUND = ACQUIRE_TIMEOUT + CONNECT_TIMEOUT + QUERY_TIMEOUT + CANCEL_GRACE + SLACK
TEST_BOUND = 90.0  # no scenario may hang: the whole test, invariants included, ends within this

TIMEOUT_ERRORS = {"QueryTimeout", "PoolTimeout", "NodeUnavailable"}


@dataclass
class TimedLoad(Load):
    """:class:`Load` that also keeps each failed call's start time and duration."""

    failed_calls: list[tuple[str, str, float, float]] = field(default_factory=list)  # kind, error, start, s

    def _loop(self, kind: str, op: Callable[[], Awaitable[Any]]) -> Any:
        async def timed() -> None:
            start = time.monotonic()
            try:
                await op()
            except Exception as exc:
                self.failed_calls.append((kind, type(exc).__name__, start, time.monotonic() - start))
                raise

        return super()._loop(kind, timed)

    def timings(self) -> dict[str, str]:
        """Per error: ``count x min-max s`` of the failed calls' durations."""
        by_error: dict[str, list[float]] = defaultdict(list)
        for _, error, _, took in self.failed_calls:
            by_error[error].append(took)
        return {
            error: f"{len(took)}x {min(took):.2f}-{max(took):.2f}s (median {statistics.median(took):.2f})"
            for error, took in sorted(by_error.items())
        }

    def acked_writes(self) -> int:
        return sum(o.ok and o.kind == "write" for o in self.outcomes)

    def ok_reads(self) -> int:
        return sum(o.ok and o.kind == "read" for o in self.outcomes)


@pytest.fixture
async def chaos_db(cluster_backend: str, tmp_path: Path) -> Topology:
    """The chaos topology of the backend with a fresh ``chaos_row`` table, replicated."""
    topology = chaos_topology(cluster_backend, tmp_path)
    await fresh_table(topology)
    return topology


def _timeouts(**extra: Any) -> dict[str, Any]:
    return {
        "query_timeout": QUERY_TIMEOUT,
        "connect_timeout": CONNECT_TIMEOUT,
        "acquire_timeout": ACQUIRE_TIMEOUT,
        "read_your_writes": None,
        **extra,
    }


async def test_held_primary_times_out_and_recovers(chaos_db: Topology) -> None:
    """Writes to a silent primary fail within their timeouts; reads (on replicas) never notice."""
    topology = chaos_db
    async with (
        asyncio.timeout(TEST_BOUND),
        ChaosProxy.for_url(topology.primary) as proxy,
        contextlib.AsyncExitStack() as stack,
    ):
        through = Topology(topology.backend, proxy.url(topology.primary), topology.replicas)
        manager = Manager(
            through.primary,
            through.replicas,
            max_size=4,
            health_check_interval=0.25,
            health_check_timeout=0.5,
            **_timeouts(),
        )
        stack.push_async_callback(manager.close)  # also when the test fails
        ledger = Ledger()
        load = TimedLoad(manager, ledger, writers=2, readers=4)
        load.start()
        try:
            await until(lambda: load.acked_writes() >= 20, 15, "writes before the outage")
            with load.outage():
                held_at = time.monotonic()
                proxy.hold()
                writes_before = load.acked_writes()
                await until(
                    lambda: (
                        time.monotonic() - held_at >= OUTAGE
                        and any(error == "QueryTimeout" for _, error, _, _ in load.failed_calls)
                    ),
                    OUTAGE + CALL_BOUND,
                    "writes to time out on the held primary",
                )
                proxy.forward()
                forwarded_at = time.monotonic()
            # No call can be acknowledged by a primary that is not answering (a call started
            # before the hold may still have been acknowledged at its very start).
            acked_in_hold = load.acked_writes() - writes_before
            # Recovery with no manual step: new writes succeed through the same manager.
            recovered = load.acked_writes()
            await until(lambda: load.acked_writes() >= recovered + 20, CALL_BOUND + 10, "writes to resume")
            recovery = min(o.at for o in load.outcomes if o.kind == "write" and o.ok and o.at > forwarded_at)
        finally:
            await load.stop()

        late = load.failures_outside_outage(grace=CALL_BOUND)
        errors = {error for _, error, _, _ in load.failed_calls}
        longest = max(took for _, _, _, took in load.failed_calls)
        assert not late, f"failures long after the outage: {late[:5]}"
        assert errors <= TIMEOUT_ERRORS, load.timings()
        assert longest <= CALL_BOUND, load.timings()
        assert load.figures()["failed_reads"] == 0, load.timings()  # reads go to the replicas
        for kind, error, _, took in load.failed_calls:
            if error == "QueryTimeout":  # the timer fired, not something else
                assert took >= QUERY_TIMEOUT * 0.95, (kind, took)
        assert acked_in_hold <= 2, acked_in_hold
        await check_invariants(
            "hanging primary (held)",
            manager,
            through,
            ledger=ledger,
            load=load,
            outage_s=round(forwarded_at - held_at, 2),
            failed_calls=load.timings(),
            longest_failed_call_s=round(longest, 2),
            call_bound_s=CALL_BOUND,
            recovered_after_s=round(recovery - forwarded_at, 2),
        )
        assert proxy.relayed > 0


async def test_held_replica_is_ejected_and_readmitted(chaos_db: Topology) -> None:
    """Reads routed to a silent replica fail until the monitor ejects it, then go elsewhere."""
    topology = chaos_db
    held_url = topology.replicas[0]
    async with (
        asyncio.timeout(TEST_BOUND),
        ChaosProxy.for_url(held_url) as proxy,
        contextlib.AsyncExitStack() as stack,
    ):
        through = Topology(topology.backend, topology.primary, [proxy.url(held_url), *topology.replicas[1:]])
        manager = Manager(
            through.primary,
            {"held": through.replicas[0], **{f"r{i}": u for i, u in enumerate(through.replicas[1:], 2)}},
            max_size=4,
            health_check_interval=0.2,
            health_check_timeout=0.5,
            eject_after=2,
            readmit_after=2,
            **_timeouts(),
        )
        stack.push_async_callback(manager.close)  # also when the test fails
        held = manager.node("held")
        ledger = Ledger()
        load = TimedLoad(manager, ledger, writers=1, readers=6, transactions=False)
        load.start()
        try:
            await until(lambda: held.get_stats()["queries"] >= 20, 15, "reads on the replica before")
            with load.outage():
                held_at = time.monotonic()
                proxy.hold()
                await until(lambda: not held.healthy, CALL_BOUND, "the monitor to eject the held replica")
                ejected_at = time.monotonic()
                reads_at_ejection = load.ok_reads()
                await until(lambda: time.monotonic() - ejected_at >= OUTAGE, OUTAGE + 5, "the outage to last")
                reads_while_ejected = load.ok_reads() - reads_at_ejection
                proxy.forward()
                forwarded_at = time.monotonic()
            queries = held.get_stats()["queries"]
            await until(lambda: held.healthy, 10, "the monitor to readmit the replica")
            readmitted_at = time.monotonic()
            await until(lambda: held.get_stats()["queries"] >= queries + 20, 10, "reads on it again")
        finally:
            await load.stop()

        reads_failed_after_ejection = [
            (error, round(start - ejected_at, 2))
            for kind, error, start, _ in load.failed_calls
            if kind == "read" and ejected_at <= start <= forwarded_at
        ]
        late = load.failures_outside_outage(grace=CALL_BOUND)
        errors = {error for _, error, _, _ in load.failed_calls}
        longest = max((took for _, _, _, took in load.failed_calls), default=0.0)
        assert not reads_failed_after_ejection, reads_failed_after_ejection
        assert reads_while_ejected > 0  # served by the others (MariaDB: the primary, fallback)
        assert not late, f"failures long after the outage: {late[:5]}"
        assert errors <= TIMEOUT_ERRORS, load.timings()
        assert longest <= CALL_BOUND, load.timings()
        assert load.figures()["failed_writes"] == 0, load.timings()  # the primary never stopped
        await check_invariants(
            "hanging replica (held)",
            manager,
            through,
            ledger=ledger,
            load=load,
            outage_s=round(forwarded_at - held_at, 2),
            ejected_after_s=round(ejected_at - held_at, 2),
            readmitted_after_s=round(readmitted_at - forwarded_at, 2),
            reads_while_ejected=reads_while_ejected,
            failed_calls=load.timings(),
            longest_failed_call_s=round(longest, 2),
        )


async def _timed(call: Awaitable[Any]) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        await call
    except Exception as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


async def test_timeouts_fire_on_their_bounds(chaos_db: Topology) -> None:
    """Each timeout on its own, against one silent node with a one-connection pool:
    QueryTimeout, PoolTimeout, a connect timing out, a blackholed new connection, and a
    reset (``drop``) failing the held statement at once rather than at its timeout."""
    topology = chaos_db
    query_timeout, acquire_timeout, connect_timeout = 2.0, 0.5, 1.0
    async with (
        asyncio.timeout(TEST_BOUND),
        ChaosProxy.for_url(topology.primary) as proxy,
        contextlib.AsyncExitStack() as stack,
    ):
        through = Topology(topology.backend, proxy.url(topology.primary))
        manager = through.manager(
            max_size=1,
            query_timeout=query_timeout,
            acquire_timeout=acquire_timeout,
            connect_timeout=connect_timeout,
        )
        stack.push_async_callback(manager.close)  # also when the test fails
        pool = manager.primary_node.pool
        figures: dict[str, Any] = {}
        assert await manager.raw_sql("SELECT 1") == [(1,)]

        # Held: the statement on the one connection times out; meanwhile a second caller
        # finds no free connection; after that, a new connection cannot be opened.
        proxy.hold()
        stuck = asyncio.create_task(_timed(manager.raw_sql("SELECT 1")))
        await until(lambda: pool.in_use == 1, 5, "the statement to be sent")
        waiting, waited = await _timed(manager.raw_sql("SELECT 2"))
        error, took = await stuck
        assert isinstance(error, QueryTimeout), error
        assert query_timeout * 0.95 <= took <= query_timeout + CANCEL_GRACE + SLACK, took
        assert isinstance(waiting, PoolTimeout), waiting
        assert acquire_timeout * 0.95 <= waited <= acquire_timeout + SLACK, waited
        connecting, connect_took = await _timed(manager.raw_sql("SELECT 3"))
        assert isinstance(connecting, NodeUnavailable) and "timed out" in str(connecting), connecting
        assert connect_took <= connect_timeout + SLACK, connect_took
        figures.update(
            query_timeout_s=f"{took:.2f} (configured {query_timeout:g})",
            pool_timeout_s=f"{waited:.2f} (configured {acquire_timeout:g})",
            connect_timeout_s=f"{connect_took:.2f} (configured {connect_timeout:g})",
        )

        # Forward again: the same manager works, with no manual step.
        proxy.forward()
        assert await manager.raw_sql("SELECT 4") == [(4,)]

        # Blackholed new connections: the pooled one still works, a new one never answers.
        proxy.blackhole_new()
        assert await manager.raw_sql("SELECT 5") == [(5,)]
        manager.primary_node.expire_connections()
        blackholed, blackhole_took = await _timed(manager.raw_sql("SELECT 6"))
        assert isinstance(blackholed, NodeUnavailable), blackholed
        assert blackhole_took <= connect_timeout + SLACK, blackhole_took
        figures["blackholed_connect_s"] = f"{blackhole_took:.2f} (configured {connect_timeout:g})"
        proxy.forward()
        assert await manager.raw_sql("SELECT 7") == [(7,)]

        # A reset ends the held statement at once: the connection is lost, no timeout needed.
        proxy.hold()
        stuck = asyncio.create_task(_timed(manager.raw_sql("SELECT 8")))
        await until(lambda: pool.in_use == 1, 5, "the statement to be sent")
        await proxy.drop()
        reset, reset_took = await stuck
        assert isinstance(reset, peewee.OperationalError) and not isinstance(reset, QueryTimeout), reset
        assert reset_took < query_timeout, reset_took
        figures["reset_error"] = f"{type(reset).__name__} after {reset_took:.2f}s"
        proxy.forward()
        assert await manager.raw_sql("SELECT 9") == [(9,)]
        assert pool.get_stats()["acquired"] == 0

        await check_invariants("timeouts on a silent node", manager, through, **figures)
