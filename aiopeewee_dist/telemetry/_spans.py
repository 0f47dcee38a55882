"""One OpenTelemetry span per statement, with the database semantic-convention attributes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.metrics import Histogram
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["NODE", "ROLE", "WAIT", "SpanObserver"]

#: Attributes of ours next to the semantic conventions' ones.
NODE = "aiopeewee_dist.node"
ROLE = "aiopeewee_dist.node.role"
WAIT = "aiopeewee_dist.connection.wait_time"
_SYSTEMS = {"postgresql": "postgresql", "mysql": "mysql", "sqlite": "sqlite"}


def _span_name(sql: str) -> str:
    # The statement's operation (SELECT, INSERT, BEGIN, ...): low cardinality, as the
    # conventions ask of span names; the text itself is an attribute.
    head = sql.lstrip().split(None, 1)
    return head[0].upper() if head else "SQL"


def node_attributes(node: Node) -> dict[str, Any]:
    url = node.url
    attributes: dict[str, Any] = {
        "db.system": _SYSTEMS[node.dialect],
        "db.system.name": _SYSTEMS[node.dialect],
        "db.namespace": url.database,
        NODE: node.name,
    }
    if url.host is not None:
        attributes["server.address"] = url.host
    if url.port is not None:
        attributes["server.port"] = url.port
    return attributes


class _Observation:
    __slots__ = ("wait",)

    def __init__(self) -> None:
        self.wait: float | None = None

    def waited(self, seconds: float) -> None:
        self.wait = seconds


class SpanObserver:
    """The ``Node.telemetry`` observer: a CLIENT span per statement, and the acquire-wait histogram.

    Spans are started without becoming the current span (nothing runs inside a statement),
    so a statement of a stream that ends in another context cannot unbalance the context.
    """

    def __init__(self, tracer: Tracer, wait_histogram: Histogram, *, capture_parameters: bool) -> None:
        self._tracer = tracer
        self._wait = wait_histogram
        self._capture_parameters = capture_parameters
        self._static: dict[Node, dict[str, Any]] = {}

    def _attributes(self, node: Node) -> dict[str, Any]:
        static = self._static.get(node)
        if static is None:
            static = self._static[node] = node_attributes(node)
        return static

    @contextmanager
    def statement(self, node: Node, sql: str, params: Sequence[Any]) -> Iterator[_Observation]:
        attributes = {**self._attributes(node), ROLE: node.role, "db.query.text": sql}
        if self._capture_parameters:
            for i, value in enumerate(params):
                attributes[f"db.query.parameter.{i}"] = str(value)
        span = self._tracer.start_span(_span_name(sql), kind=SpanKind.CLIENT, attributes=attributes)
        observation = _Observation()
        try:
            yield observation
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            wait = observation.wait
            if wait is not None:
                span.set_attribute(WAIT, wait)
                self._wait.record(wait, {"db.client.connection.pool.name": node.name})
            span.end()


def default_tracer(provider: trace.TracerProvider | None) -> Tracer:
    from .. import __version__

    return trace.get_tracer("aiopeewee_dist", __version__, tracer_provider=provider)
