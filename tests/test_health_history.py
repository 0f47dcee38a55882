"""The health monitor's record of primary positions: bounded in time, and an idle primary
(same position check after check) does not fill it."""

from __future__ import annotations

import math
from typing import Any

from aiopeewee_dist._health import HealthMonitor
from aiopeewee_dist._replication import Position


def monitor(interval: float) -> HealthMonitor:
    def no_node() -> object:
        raise AssertionError("not called")

    return HealthMonitor(
        primary=no_node,  # type: ignore[arg-type]
        replicas=lambda: [],
        interval=interval,
        timeout=1.0,
        eject_after=2,
        readmit_after=2,
    )


PRIMARY: Any = object()  # the node whose stream the positions are of


def lsn(n: int) -> Position:
    return Position("postgresql", ((0, n),))


def test_an_unchanged_position_keeps_one_entry_with_the_latest_time() -> None:
    m = monitor(0.1)
    for t in range(100):
        m._record_primary_position(PRIMARY, float(t), 1000.0 + t, lsn(7))
    assert list(m._history) == [(99.0, 1099.0, lsn(7))]
    # A replica at 7 holds every commit acknowledged before the latest check at 7.
    assert m._fresh_as_of(lsn(7)) == 99.0


def test_history_covers_a_bounded_span_of_time() -> None:
    for interval in (0.05, 1.0, 30.0):
        m = monitor(interval)
        for t in range(10_000):
            m._record_primary_position(PRIMARY, t * interval, t * interval, lsn(t))
        # About two minutes of checks (at least 16 entries for very slow checks).
        assert len(m._history) == max(16, math.ceil(120 / interval))
    # Older than the horizon: no freshness bound at all (counts as stale), not a wrong one.
    assert m._fresh_as_of(lsn(0)) is None
