"""One OpenTelemetry span per statement, with the database semantic-convention attributes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.metrics import Histogram
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["NODE", "ROLE", "WAIT", "SpanObserver"]

#: Attributes of ours next to the semantic conventions' ones.
NODE = "aiopeewee_dist.node"
ROLE = "aiopeewee_dist.node.role"
WAIT = "aiopeewee_dist.connection.wait_time"
_NAME_CACHE = 4096
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


class _Statement:
    """One statement's span; a class rather than ``@contextmanager``: it is on every statement's path."""

    __slots__ = ("_histogram", "_pool", "_span", "wait")

    def __init__(self, span: Span, histogram: Histogram, pool: dict[str, str]) -> None:
        self._span = span
        self._histogram = histogram
        self._pool = pool
        self.wait: float | None = None

    def waited(self, seconds: float) -> None:
        self.wait = seconds

    def __enter__(self) -> _Statement:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        span = self._span
        wait = self.wait
        if wait is not None:
            self._histogram.record(wait, self._pool)
        if span.is_recording():
            if wait is not None:
                span.set_attribute(WAIT, wait)
            if exc is not None:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
        span.end()


class SpanObserver:
    """The ``Node.telemetry`` observer: a CLIENT span per statement, and the acquire-wait histogram.

    Spans are started without becoming the current span (nothing runs inside a statement),
    so a statement of a stream that ends in another context cannot unbalance the context.
    """

    def __init__(
        self, tracer: Tracer, wait_histogram: Histogram, *, capture_parameters: bool, label: str
    ) -> None:
        self._tracer = tracer
        self._label = label
        self._wait = wait_histogram
        self._capture_parameters = capture_parameters
        # Per (node, role): the attributes that do not change between statements.
        self._static: dict[tuple[Node, str], tuple[dict[str, Any], dict[str, str]]] = {}
        # Span names by SQL text: templates and shapes reuse the same statements.
        self._names: dict[str, str] = {}

    def _attributes(self, node: Node) -> tuple[dict[str, Any], dict[str, str]]:
        key = (node, node.role)
        static = self._static.get(key)
        if static is None:
            attributes = {**node_attributes(node), ROLE: node.role}
            pool = {"db.client.connection.pool.name": node.name, "aiopeewee_dist.manager": self._label}
            static = self._static[key] = (attributes, pool)
        return static

    def _name(self, sql: str) -> str:
        name = self._names.get(sql)
        if name is None:
            if len(self._names) >= _NAME_CACHE:
                self._names.clear()
            name = self._names[sql] = _span_name(sql)
        return name

    def statement(self, node: Node, sql: str, params: Sequence[Any]) -> _Statement:
        static, pool = self._attributes(node)
        attributes = dict(static)
        attributes["db.query.text"] = sql
        if self._capture_parameters:
            for i, value in enumerate(params):
                attributes[f"db.query.parameter.{i}"] = str(value)
        span = self._tracer.start_span(self._name(sql), kind=SpanKind.CLIENT, attributes=attributes)
        return _Statement(span, self._wait, pool)


def default_tracer(provider: trace.TracerProvider | None) -> Tracer:
    from .. import __version__

    return trace.get_tracer("aiopeewee_dist", __version__, tracer_provider=provider)
