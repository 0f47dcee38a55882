"""OpenTelemetry (aiopeewee_dist.telemetry) with the SDK's in-memory span exporter and metric
reader, during real queries on all four backends, a replica crash (retry, ejection,
readmission) and a failover on the PostgreSQL cluster, plus the Prometheus exposition."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import peewee
import pytest
from cluster import run_cluster, until
from conftest import Author, Topology
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from aiopeewee_dist import Manager
from aiopeewee_dist.telemetry import NODE, ROLE, WAIT, instrument, uninstrument

POOL = "db.client.connection.pool.name"
MANAGER = "aiopeewee_dist.manager"


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrument(self, manager: Manager, **options: Any) -> None:
        instrument(
            manager, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        """``{metric name: data points}`` collected now."""
        data = self.reader.get_metrics_data()
        assert data is not None
        points: dict[str, list[Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.tracer_provider.shutdown()
    o.meter_provider.shutdown()


def value(points: list[Any], **attributes: Any) -> Any:
    matching = [p for p in points if all(p.attributes.get(k) == v for k, v in attributes.items())]
    assert matching, f"no data point with {attributes} in {[dict(p.attributes) for p in points]}"
    return matching[0].value


async def test_a_span_per_statement_and_pool_metrics(tables: Manager, topology: Topology, otel: Otel) -> None:
    manager = tables
    otel.instrument(manager)
    await manager.create(Author, name="ada", age=36)
    assert (await manager.get(Author, name="ada")).age == 36
    with pytest.raises(peewee.IntegrityError):
        await manager.create(Author, name="ada")
    spans = otel.finished()
    assert [s.name for s in spans] == ["INSERT", "SELECT", "INSERT"]
    insert = spans[0].attributes or {}
    assert insert["db.system"] == {"pg": "postgresql", "mysql": "mysql", "sqlite": "sqlite"}[topology.kind]
    assert insert[NODE] == "primary" and insert[ROLE] == "primary"
    assert "ada" not in str(insert["db.query.text"]) and "t_author" in str(insert["db.query.text"])
    assert insert[WAIT] >= 0 and insert["db.namespace"]
    if topology.kind != "sqlite":
        assert insert["server.address"] == "127.0.0.1" and isinstance(insert["server.port"], int)
        assert (spans[1].attributes or {})[ROLE] == "replica"  # the read went to a replica
    assert spans[2].status.status_code is StatusCode.ERROR
    assert (spans[2].attributes or {})["error.type"] == "IntegrityError"
    metrics = otel.metrics()
    assert value(metrics["db.client.connection.count"], **{"db.client.connection.state": "idle"}) >= 1
    most = 11 if topology.kind == "sqlite" else 10  # SQLite: the writer and 10 readers
    assert value(metrics["db.client.connection.max"], **{POOL: "primary"}) == most
    assert value(metrics["db.client.connection.pending_requests"]) == 0
    assert sum(p.count for p in metrics["db.client.connection.wait_time"]) == 3
    uninstrument(manager)
    await manager.get(Author, name="ada")
    assert len(otel.finished()) == 3  # off again


async def test_parameters_only_when_asked(tables: Manager, otel: Otel) -> None:
    otel.instrument(tables, capture_parameters=True)
    await tables.create(Author, name="bob")
    attributes = otel.finished()[0].attributes or {}
    assert "bob" in {attributes.get("db.query.parameter.0"), attributes.get("db.query.parameter.1")}


FAST: dict[str, Any] = {
    "health_check_interval": 0.1,
    "eject_after": 1,
    "readmit_after": 1,
    "connect_timeout": 1.0,
}


async def test_replica_crash_retry_ejection_readmission(
    tables: Manager, otel: Otel, topology: Topology
) -> None:
    if topology.backend != "psycopg":
        pytest.skip("the PostgreSQL cluster shows it; the counters are backend-independent")
    manager = topology.manager(**FAST)  # its monitor ejects and readmits
    reader = topology.manager()  # no monitor: its reads find the crashed replica and retry
    otel.instrument(manager, name="monitored")
    otel.instrument(reader, name="reader")
    try:
        await manager.connect()
        await until(lambda: all(r.healthy and r.health.checked_at for r in manager.replicas), 10, "checks")
        await run_cluster("down", "pg-replica-1")
        try:
            for _ in range(4):  # round robin: two of these land on replica-1, fail, and are retried
                await reader.count(Author.select())
            await until(lambda: not manager.node("replica-1").healthy, 10, "replica-1 ejected")
        finally:
            await run_cluster("up", "pg-replica-1")
        await until(lambda: manager.node("replica-1").healthy, 20, "replica-1 readmitted")
        metrics = otel.metrics()
        node = {POOL: "replica-1", MANAGER: "monitored"}
        assert value(metrics["aiopeewee_dist.node.ejections"], **node) >= 1
        assert value(metrics["aiopeewee_dist.node.readmissions"], **node) >= 1
        assert value(metrics["aiopeewee_dist.node.ejections"], **{**node, MANAGER: "reader"}) == 0
        assert value(metrics["aiopeewee_dist.retries"], **{MANAGER: "reader"}) >= 2
        assert value(metrics["aiopeewee_dist.replica.lag"], **{POOL: "replica-2", MANAGER: "monitored"}) < 5
        failed = [s for s in otel.finished() if s.status.status_code is StatusCode.ERROR]
        assert any((s.attributes or {})[NODE] == "replica-1" for s in failed)
    finally:
        await manager.close()
        await reader.close()


async def test_spans_follow_a_failover(tables: Manager, otel: Otel, topology: Topology) -> None:
    if topology.backend != "psycopg":
        pytest.skip("one failover drill is enough")
    manager = topology.manager(**FAST)
    otel.instrument(manager)
    try:
        await manager.connect()
        await manager.create(Author, name="before")
        await topology.wait_replicated()
        await run_cluster("down", "pg-primary")
        with pytest.raises(peewee.OperationalError):
            await manager.create(Author, name="during")
        await run_cluster("promote", "pg-replica-1")
        await until(lambda: manager.primary_node.name == "replica-1", 15, "automatic promotion of replica-1")
        await manager.create(Author, name="after")
    finally:
        await manager.close()
        await run_cluster("reset", "pg")
    inserts = [s.attributes or {} for s in otel.finished() if s.name == "INSERT"]
    assert [(a[NODE], a[ROLE]) for a in inserts] == [
        ("primary", "primary"),
        ("primary", "primary"),
        ("replica-1", "primary"),
    ]


async def test_prometheus_metrics_route(tmp_path: Any) -> None:
    from fastapi import FastAPI

    from aiopeewee_dist.integrations.fastapi import metrics_route, setup
    from aiopeewee_dist.telemetry import prometheus_meter_provider

    manager = Manager(f"sqlite:///{tmp_path / 'p.db'}")
    provider = prometheus_meter_provider()
    instrument(manager, meter_provider=provider)
    app = FastAPI()
    setup(app, manager)
    metrics_route(app)
    try:
        await manager.raw_sql("SELECT 1")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        assert 'db_client_connection_max{aiopeewee_dist_manager="manager-' in response.text
    finally:
        uninstrument(manager)
        provider.shutdown()
        await manager.close()


async def test_prometheus_metrics_route_on_aiohttp(tmp_path: Any) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from aiopeewee_dist.integrations.aiohttp import metrics_route, setup
    from aiopeewee_dist.telemetry import prometheus_meter_provider

    manager = Manager(f"sqlite:///{tmp_path / 'a.db'}")
    provider = prometheus_meter_provider()
    instrument(manager, meter_provider=provider, name="aio")
    app = web.Application()
    setup(app, manager)
    metrics_route(app, "/internal/metrics")
    try:
        async with TestClient(TestServer(app)) as client:
            await manager.raw_sql("SELECT 1")
            response = await client.get("/internal/metrics")
            text = await response.text()
        assert response.status == 200 and response.content_type == "text/plain"
        assert 'db_client_connection_max{aiopeewee_dist_manager="aio"' in text
    finally:
        uninstrument(manager)
        provider.shutdown()
        await manager.close()
