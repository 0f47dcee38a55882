"""What telemetry costs per statement: ``python benchmarks/telemetry_overhead.py [--url URL]``.

One manager runs ``get(Row, id=...)`` (the commonest statement) in a loop, rounds interleaved
between modes on the same manager and connection:

- ``off``: not instrumented (the hook is one attribute check per statement);
- ``noop``: ``instrument()`` with only the OpenTelemetry API (no SDK configured: no-op spans);
- ``sdk``: ``instrument()`` with the SDK: a ``BatchSpanProcessor`` (to an exporter that drops
  the spans, so export costs nothing here) and a metric reader.

- ``baseline`` (with ``--baseline /path/to/checkout``): that checkout's package (one without
  the hook, e.g. the main branch before it), loaded beside this one, on the same database.

Prints JSON: microseconds per statement (fastest and median round, wall and CPU time) and each
mode's overhead over ``off``. Default URL: a SQLite file in a temporary folder (no server needed).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import peewee

from aiopeewee_dist import Manager


class Row(peewee.Model):
    name = peewee.CharField()

    class Meta:
        table_name = "bench_telemetry_row"


def _modes(manager: Manager) -> dict[str, Callable[[], None]]:
    """``{mode: switch the manager to it}``; only ``off`` without aiopeewee_dist.telemetry."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        from aiopeewee_dist.telemetry import instrument, uninstrument
    except ImportError:
        return {"off": lambda: None}

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def off() -> None:
        uninstrument(manager)

    def noop() -> None:
        uninstrument(manager)
        instrument(manager, name="noop")

    def sdk() -> None:
        uninstrument(manager)
        instrument(manager, tracer_provider=tracer_provider, meter_provider=meter_provider, name="sdk")

    return {"off": off, "noop": noop, "sdk": sdk}


async def _round(manager: Any, n: int) -> tuple[float, float]:
    """(wall, CPU) microseconds per statement. CPU time (this process, all its threads) is
    what the hook adds on the client; it is far less disturbed by other processes' load."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await manager.get(Row, id=1 + i % 100)
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def _baseline_manager(checkout: str, url: str) -> Any:
    """A Manager of the package in ``checkout``, imported under another name beside this one."""
    package = Path(checkout) / "aiopeewee_dist"
    spec = importlib.util.spec_from_file_location(
        "aiopeewee_dist_baseline", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.Manager(url, health_check_interval=None, read_your_writes=None)


async def measure(url: str, n: int, rounds: int, baseline: str | None) -> dict[str, Any]:
    manager = Manager(url, health_check_interval=None, read_your_writes=None)
    other = _baseline_manager(baseline, url) if baseline else None
    try:
        await manager.drop_tables([Row])
        await manager.create_tables([Row])
        await manager.insert_many(Row, [{"name": f"r{i}"} for i in range(100)])
        runs = {mode: (manager, switch) for mode, switch in _modes(manager).items()}
        if other is not None:
            runs["baseline"] = (other, lambda: None)
        samples: dict[str, list[tuple[float, float]]] = {mode: [] for mode in runs}
        for each, _ in runs.values():
            await _round(each, n)  # warm-up: connections, compiled statements
        for _ in range(rounds):
            for mode, (each, switch) in runs.items():
                switch()
                samples[mode].append(await _round(each, n))
        await manager.drop_tables([Row])
    finally:
        await manager.close()
        if other is not None:
            await other.close()
    report: dict[str, Any] = {"backend": url.split(":", 1)[0], "statements_per_round": n, "rounds": rounds}
    # The fastest round of each mode is the one least disturbed by other processes (a loaded
    # machine only ever adds time); the median is given too.
    for index, clock in enumerate(("wall", "cpu")):
        for stat, pick in (("min", min), ("median", statistics.median)):
            us = {mode: pick(v[index] for v in values) for mode, values in samples.items()}
            report[f"{clock}_{stat}_us"] = {mode: round(value, 2) for mode, value in us.items()}
            report[f"{clock}_{stat}_overhead_percent"] = {
                mode: round((value / us["off"] - 1) * 100, 2) for mode, value in us.items() if mode != "off"
            }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("-n", type=int, default=500, help="statements per round")
    parser.add_argument("--rounds", type=int, default=40, help="rounds per mode, interleaved")
    parser.add_argument("--baseline", help="a checkout whose package (without the hook) is measured too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        print(json.dumps(asyncio.run(measure(url, args.n, args.rounds, args.baseline)), indent=2))


if __name__ == "__main__":
    main()
