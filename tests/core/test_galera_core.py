"""GaleraProvider without a server: its configuration rules, and nodes that cannot be reached
(connection refused on 127.0.0.1) leaving no fit node. Its fitness rules on wsrep status (ON,
Synced, Primary) need MariaDB to answer the status query: tests/test_providers.py on Galera."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from aiopeewee_dist import ConfigurationError, GaleraProvider, NodeUnavailable


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_no_reachable_node_is_node_unavailable_with_each_status() -> None:
    urls = [f"mysql://app:pw@127.0.0.1:{dead_port()}/app" for _ in range(2)]
    provider = GaleraProvider(urls, timeout=1.0)
    try:
        assert repr(provider) == "<GaleraProvider galera-1, galera-2>"
        with pytest.raises(NodeUnavailable, match="no Galera node is ready, Synced and Primary"):
            await provider.fetch()
        assert sorted(provider.status) == ["galera-1", "galera-2"]
        assert all(isinstance(status, str) and status for status in provider.status.values())
        assert provider.writer is None
    finally:
        await provider.close()


@pytest.mark.parametrize(
    ("urls", "options", "named"),
    [
        ("mysql://h/db", {}, "urls"),
        ([], {}, "urls"),
        ({"g1": "postgresql://h/db"}, {}, "'g1' is not a MySQL"),
        (["mysql://h/db"], {"timeout": 0.0}, "timeout"),
        (["mysql://h/db"], {"timeout": 61.0}, "timeout"),
    ],
)
def test_bad_configuration_names_the_problem(urls: Any, options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        GaleraProvider(urls, **options)
