"""A manager's nodes made from URLs, and the rules a set of nodes must follow."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from ._errors import ConfigurationError
from ._node import Node, Role
from ._observe import StatementObserver
from ._options import PoolOptions, parse_weight, validate_node_name
from ._url import parse_url

__all__ = ["check_dialects", "make_node", "replica_items", "urls_from_env"]


def make_node(
    url: str,
    *,
    default_name: str,
    role: Role,
    base: PoolOptions,
    name: str | None = None,
    weight: float | None = None,
    log_params: bool = False,
    telemetry: StatementObserver | None = None,
) -> Node:
    """A node for ``url``: its URL's node options (``name``, ``weight``, pool limits) override
    ``base``; ``name`` and ``weight``, when given, override the URL's; ``log_params``: show
    parameter values in the ``aiopeewee_dist.sql`` DEBUG lines; ``telemetry``: the manager's
    statement observer, if any."""
    parsed = parse_url(url)
    node_name = validate_node_name(name or parsed.node_options.get("name") or default_name)
    overrides = {k: v for k, v in parsed.node_options.items() if k not in ("name", "weight")}
    try:
        options = PoolOptions.from_strings(overrides, base=base)
        url_weight = parse_weight(parsed.node_options.get("weight", "1"))
    except ConfigurationError as exc:
        raise ConfigurationError(f"node {node_name!r}: {exc}") from None
    node_weight = url_weight if weight is None else parse_weight(weight)
    node = Node(parsed, name=node_name, role=role, options=options, weight=node_weight)
    node.log_params = log_params
    node.telemetry = telemetry
    return node


def replica_items(replicas: Sequence[str] | Mapping[str, str]) -> Iterable[tuple[str | None, str]]:
    """``(name or None, url)`` for a list of URLs or a ``{name: url}`` mapping."""
    if isinstance(replicas, str):
        raise ConfigurationError("replicas must be a list of URLs (or a {name: url} mapping), not one string")
    if isinstance(replicas, Mapping):
        return replicas.items()
    return ((None, url) for url in replicas)


def check_dialects(nodes: Sequence[Node]) -> None:
    dialects = {node.dialect for node in nodes}
    if len(dialects) > 1:
        raise ConfigurationError(f"primary and replicas must share one dialect, got {sorted(dialects)}")


def urls_from_env(
    environ: Mapping[str, str] | None, primary_var: str, replicas_var: str
) -> tuple[str, list[str]]:
    """The primary URL and the comma-separated replica URLs named by two environment variables."""
    environ = os.environ if environ is None else environ
    primary = environ.get(primary_var, "").strip()
    if not primary:
        raise ConfigurationError(f"environment variable {primary_var} is not set")
    return primary, [url.strip() for url in environ.get(replicas_var, "").split(",") if url.strip()]
