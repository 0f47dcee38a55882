"""Telling permanent connection failures from passing ones, and checking nodes at startup.

A wrong password, an unknown database, a host name that does not resolve or a refused
TLS handshake will fail the same way on every retry: they are configuration mistakes,
reported at once (:class:`NodeRejected`) with what to do, rather than as a passing outage.
The drivers report them in text only (libpq, aiopg) or with codes (MySQL), so the cause is
recognised from the driver's message.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ._errors import NodeRejected, NodeUnavailable
from ._replication import status_sql

if TYPE_CHECKING:
    from ._health import HealthMonitor
    from ._node import Node

__all__ = ["connect_error", "open_nodes", "rejection", "verify_nodes"]

logger = logging.getLogger("aiopeewee_dist.pool")

#: cause -> (pattern over the driver's message, what the user should do)
_CAUSES: dict[str, tuple[re.Pattern[str], str]] = {
    "wrong credentials": (
        re.compile(
            r"password authentication failed|authentication failed|\(1045,|access denied for user"
            r"|no password supplied|role \".*\" does not exist|no pg_hba\.conf entry",
            re.I,
        ),
        "check the user name and password in the URL (percent-encode special characters)",
    ),
    "unknown database": (
        re.compile(r"database \".*\" does not exist|\(1049,|unknown database", re.I),
        "check the database name at the end of the URL, or create that database",
    ),
    "unknown host": (
        re.compile(
            r"failed to resolve host|could not translate host name|name or service not known"
            r"|nodename nor servname|temporary failure in name resolution|getaddrinfo failed"
            r"|\(2005,|unknown (mysql )?server host",
            re.I,
        ),
        "check the host name in the URL (it does not resolve)",
    ),
    "TLS refused": (
        re.compile(
            r"does not support ssl|ssl (is )?required|ssl.*handshake|certificate verify failed"
            r"|wrong version number|tlsv1 alert|ssl connection is required|\(2026,",
            re.I,
        ),
        "the server refused the TLS settings: check sslmode/ssl options in the URL against the server",
    ),
}


def rejection(exc: BaseException) -> tuple[str, str] | None:
    """``(cause, advice)`` if ``exc`` (or what it chains) is a permanent refusal, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NodeRejected):
            return current.cause, current.advice
        text = f"{current} {current.args!r}"
        for cause, (pattern, advice) in _CAUSES.items():
            if pattern.search(text):
                return cause, advice
        current = current.__cause__ or current.__context__
    return None


def connect_error(where: str, reason: str, exc: BaseException) -> NodeUnavailable:
    """The error for a failed connect: :class:`NodeRejected` if permanent, else NodeUnavailable."""
    found = rejection(exc)
    if found is None:
        return NodeUnavailable(f"{where}: cannot connect: {reason}")
    cause, advice = found
    return NodeRejected(f"{where}: {cause}: {reason} ({advice})", cause=cause, advice=advice)


async def open_nodes(
    primary: Node, replicas: Sequence[Node], monitor: HealthMonitor, *, verify: bool
) -> None:
    """What ``Manager.connect()`` does: open the pools (``min_size`` connections; a replica
    that fails only warns and leaves the rotation), then (``verify``) check the nodes with
    :func:`verify_nodes`, allowing a connect and a health check's time."""

    def eject(node: Node, exc: Exception) -> None:
        monitor.record_failure(node, exc, eject_now=True)

    await primary.open()
    for node in replicas:
        try:
            await node.open()
        except NodeUnavailable as exc:
            logger.warning("replica %s is not reachable at startup: %s", node.name, exc)
            eject(node, exc)
    if verify:
        await verify_nodes(primary, replicas, primary.options.connect_timeout + monitor.timeout, eject)


async def verify_nodes(
    primary: Node,
    replicas: Sequence[Node],
    timeout: float,
    on_replica_failure: Callable[[Node, Exception], None],
) -> None:
    """Startup check: one authenticated connection to the primary (its failure raises, naming
    the node and the cause), then to each replica (a failure is a warning and
    ``on_replica_failure``: it may come up later, and reads go elsewhere meanwhile)."""
    await _verify(primary, timeout)
    results = await asyncio.gather(*(_verify(node, timeout) for node in replicas), return_exceptions=True)
    for node, result in zip(replicas, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            logger.warning("replica %s is not reachable at startup: %s", node.name, result)
            on_replica_failure(node, result)


async def _verify(node: Node, timeout: float) -> None:
    sql = status_sql(node.dialect) or "SELECT 1"
    try:
        await node.probe(sql, timeout)
    except NodeUnavailable:
        raise
    except asyncio.TimeoutError:
        raise NodeUnavailable(
            f"node {node.name!r} ({node.url.obscured()}): no connection within {timeout:g} s at startup "
            "(is the server running and reachable from here?)"
        ) from None
