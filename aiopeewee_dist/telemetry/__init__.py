"""OpenTelemetry for aiopeewee_dist (the ``otel`` extra): spans per statement and pool metrics.

::

    from aiopeewee_dist.telemetry import instrument

    instrument(manager)  # a Manager or a ShardedManager; global providers by default

Each statement gets a CLIENT span named after its operation (``SELECT``, ``INSERT``, ...)
with the database semantic-convention attributes (``db.system``, ``db.namespace``,
``db.query.text`` without its parameters unless ``capture_parameters=True``,
``server.address``, ``server.port``), the node's name and role, and the time spent waiting
for a connection. Metrics: connections by state, the pool's maximum, callers waiting, the
acquire-wait histogram, replica lag, ejections, readmissions and retries.

Without ``instrument()`` nothing of this is imported and a statement pays one attribute check.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from opentelemetry import metrics, trace

from .._manager import Manager
from ..sharding import ShardedManager
from ._metrics import ManagerMetrics
from ._prometheus import exposition, prometheus_meter_provider
from ._spans import NODE, ROLE, WAIT, SpanObserver, default_tracer

__all__ = [
    "NODE",
    "ROLE",
    "WAIT",
    "Instrumentation",
    "exposition",
    "instrument",
    "prometheus_meter_provider",
    "uninstrument",
]


@dataclass
class Instrumentation:
    """What :func:`instrument` set up: the statement observer and the metrics."""

    observer: SpanObserver
    metrics: ManagerMetrics
    managers: list[Manager]


_by_meter: dict[int, ManagerMetrics] = {}
_labels = itertools.count(1)


def _managers(manager: Manager | ShardedManager) -> list[Manager]:
    if isinstance(manager, ShardedManager):
        return list(manager.managers.values())
    if isinstance(manager, Manager):
        return [manager]
    raise TypeError(f"instrument() takes a Manager or a ShardedManager, got {type(manager).__name__}")


def instrument(
    manager: Manager | ShardedManager,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    capture_parameters: bool = False,
    name: str | None = None,
) -> Instrumentation:
    """Trace every statement of ``manager`` and report its pools (global providers by default).

    ``name``: the ``aiopeewee_dist.manager`` attribute of its metrics (default ``manager-N``),
    which keeps apart two managers whose nodes have the same names; a ShardedManager's
    shards get ``name/shard``.
    """
    from .. import __version__

    meter = metrics.get_meter("aiopeewee_dist", __version__, meter_provider=meter_provider)
    # Instruments are registered once per meter: a second manager joins the same callbacks.
    registry = _by_meter.get(id(meter))
    if registry is None:
        registry = _by_meter[id(meter)] = ManagerMetrics(meter)
    wait = meter.create_histogram(
        "db.client.connection.wait_time", unit="s", description="time to get a connection from the pool"
    )
    label = name or f"manager-{next(_labels)}"
    tracer = default_tracer(tracer_provider)
    observer = SpanObserver(tracer, wait, capture_parameters=capture_parameters, label=label)
    shards = manager.managers if isinstance(manager, ShardedManager) else None
    managers = _managers(manager)
    for each in managers:
        each.telemetry = observer
        for node in each.nodes:
            node.telemetry = observer
        shard = next((s for s, m in (shards or {}).items() if m is each), None)
        registry.managers.setdefault(each, label if shard is None else f"{label}/{shard}")
    return Instrumentation(observer, registry, managers)


def uninstrument(manager: Manager | ShardedManager) -> None:
    """Stop tracing ``manager``'s statements and reporting its metrics."""
    for each in _managers(manager):
        each.telemetry = None
        for node in each.nodes:
            node.telemetry = None
        for registry in _by_meter.values():
            registry.managers.pop(each, None)
