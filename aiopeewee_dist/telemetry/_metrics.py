"""Observable metrics of the instrumented managers, read from their statistics at collection."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .._transactions import TRANSACTION_RETRIES

if TYPE_CHECKING:
    from .._manager import Manager
    from .._node import Node

__all__ = ["ManagerMetrics"]

_POOL = "db.client.connection.pool.name"
_MANAGER = "aiopeewee_dist.manager"


class ManagerMetrics:
    """Registers the observable instruments once per meter and reports every live manager."""

    def __init__(self, meter: Meter) -> None:
        #: The managers reported, each with the ``aiopeewee_dist.manager`` attribute of its points.
        self.managers: dict[Manager, str] = {}
        gauges: dict[str, tuple[str, str, Callable[[], Iterator[Observation]]]] = {
            "db.client.connection.count": ("{connection}", "connections by state", self._count),
            "db.client.connection.max": ("{connection}", "most connections allowed", self._max),
            "db.client.connection.pending_requests": ("{request}", "callers waiting", self._pending),
            "aiopeewee_dist.replica.lag": ("s", "how old a replica's data may be", self._lag),
        }
        for name, (unit, description, read) in gauges.items():
            meter.create_observable_gauge(
                name, callbacks=[_callback(read)], unit=unit, description=description
            )
        counters = {
            "aiopeewee_dist.node.ejections": ("nodes taken out of the rotation", self._ejections),
            "aiopeewee_dist.node.readmissions": ("nodes brought back", self._readmissions),
            "aiopeewee_dist.retries": (
                "reads retried elsewhere, transactions re-run",
                self._retries,
            ),
        }
        for name, (description, read) in counters.items():
            meter.create_observable_counter(
                name, callbacks=[_callback(read)], unit="1", description=description
            )

    def _nodes(self) -> Iterator[tuple[dict[str, str], Node]]:
        for manager, label in list(self.managers.items()):
            for node in manager.nodes:
                yield {_MANAGER: label, _POOL: node.name}, node

    def _count(self) -> Iterator[Observation]:
        for labels, node in self._nodes():
            stats = node.get_stats()
            yield Observation(stats["available"], {**labels, "db.client.connection.state": "idle"})
            yield Observation(stats["acquired"], {**labels, "db.client.connection.state": "used"})

    def _max(self) -> Iterator[Observation]:
        for labels, node in self._nodes():
            yield Observation(node.get_stats()["max_size"], labels)

    def _pending(self) -> Iterator[Observation]:
        for labels, node in self._nodes():
            yield Observation(node.get_stats()["waiting"], labels)

    def _lag(self) -> Iterator[Observation]:
        now = time.monotonic()
        for labels, node in self._nodes():
            staleness = node.health.staleness(now) if node.role == "replica" else None
            if staleness is not None:
                yield Observation(staleness, labels)

    def _ejections(self) -> Iterator[Observation]:
        for labels, node in self._nodes():
            yield Observation(node.health.ejections, labels)

    def _readmissions(self) -> Iterator[Observation]:
        for labels, node in self._nodes():
            yield Observation(node.health.readmissions, labels)

    def _retries(self) -> Iterator[Observation]:
        for manager, label in list(self.managers.items()):
            counters = manager._router.counters
            read = {_MANAGER: label, "aiopeewee_dist.retry.kind": "read"}
            yield Observation(counters[manager._router.RETRIES], read)
            kind = {_MANAGER: label, "aiopeewee_dist.retry.kind": "transaction"}
            yield Observation(counters[TRANSACTION_RETRIES], kind)


Callback = Callable[[CallbackOptions], Iterable[Observation]]


def _callback(read: Callable[[], Iterator[Observation]]) -> Callback:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return list(read())

    return callback
