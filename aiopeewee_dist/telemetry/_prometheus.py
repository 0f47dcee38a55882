"""Prometheus exposition of the OpenTelemetry metrics (the ``prometheus`` extra).

``prometheus_meter_provider()`` makes an SDK meter provider whose reader is the OpenTelemetry
Prometheus exporter, which registers with ``prometheus_client``'s registry; ``exposition()``
renders that registry in the text format. The web integrations' ``metrics_route()`` serve it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["exposition", "prometheus_meter_provider"]


def prometheus_meter_provider() -> Any:
    """An OpenTelemetry ``MeterProvider`` exporting to ``prometheus_client`` (pass it to
    ``instrument(manager, meter_provider=...)``, or make it the global one)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider

    return MeterProvider(metric_readers=[PrometheusMetricReader()])


def exposition(registry: Any = None) -> tuple[bytes, str]:
    """``(body, content type)`` of the Prometheus text format for ``registry`` (default: global)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return generate_latest(registry or REGISTRY), CONTENT_TYPE_LATEST
