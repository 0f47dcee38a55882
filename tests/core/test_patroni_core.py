"""PatroniProvider against a tiny local HTTP server serving ``/cluster`` documents as Patroni
writes them (docs: /work/shared/notes/ha-engines.md): parsing, member fitness, failing members."""

from __future__ import annotations

import copy
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aiopeewee_dist import ConfigurationError, Member, NodeUnavailable, PatroniProvider, TopologySnapshot

# A real answer of Patroni 3 (three PostgreSQL members, pg2 leading), trimmed of api_url noise.
CLUSTER: dict[str, Any] = {
    "scope": "ha-pg",
    "members": [
        {
            "name": "pg2", "role": "leader", "state": "running", "host": "127.0.0.1", "port": 45433,
            "timeline": 1,
        },
        {
            "name": "pg3", "role": "sync_standby", "state": "streaming", "host": "127.0.0.1", "port": 45434,
            "timeline": 1, "receive_lag": 0, "replay_lag": 0, "lag": 0, "lsn": "0/4000050",
        },
        {
            "name": "pg1", "role": "replica", "state": "streaming", "host": "127.0.0.1", "port": 45432,
            "timeline": 1, "lag": 0, "lsn": "0/4000050",
        },
    ],
}  # fmt: skip


def doc(**changes: dict[str, Any]) -> dict[str, Any]:
    """CLUSTER with the members named in ``changes`` updated (None as a value drops the key)."""
    data = copy.deepcopy(CLUSTER)
    for item in data["members"]:
        for key, value in changes.get(item["name"], {}).items():
            if value is None:
                item.pop(key, None)
            else:
                item[key] = value
    return data


class Patroni:
    """One member's REST API: answers ``/cluster`` with ``document`` (or ``status`` if not 200)."""

    def __init__(self) -> None:
        self.document: Any = CLUSTER
        self.status = 200
        self.hits = 0
        self.app = web.Application()
        self.app.router.add_get("/cluster", self.cluster)
        self.server = TestServer(self.app, host="127.0.0.1")

    async def cluster(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        if isinstance(self.document, str):
            return web.Response(text=self.document, content_type="application/json")
        return web.json_response(self.document)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def rest() -> AsyncIterator[list[Patroni]]:
    members = [Patroni(), Patroni()]
    for member in members:
        await member.server.start_server()
    yield members
    for member in members:
        await member.server.close()


def dead_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def provider(urls: list[str], **options: Any) -> PatroniProvider:
    return PatroniProvider(urls, user="app", password="s3cret/x", database="app", **options)


def replica_names(snapshot: TopologySnapshot) -> list[str]:
    return [m.name for m in snapshot.replicas]


async def test_cluster_document_becomes_a_snapshot_past_an_unreachable_member(rest: list[Patroni]) -> None:
    patroni = provider([dead_url(), rest[0].url], options="sslmode=require")
    try:
        snapshot = await patroni.fetch()
    finally:
        await patroni.close()
    url = "postgresql://app:s3cret%2Fx@127.0.0.1:{}/app?sslmode=require"
    assert snapshot.primary == Member("pg2", url.format(45433), "running", None)
    assert snapshot.replicas == (
        Member("pg1", url.format(45432), "streaming", 0),
        Member("pg3", url.format(45434), "streaming", 0),
    )
    assert rest[0].hits == 1


async def test_the_member_that_answered_is_asked_first_next_time(rest: list[Patroni]) -> None:
    failing, healthy = rest
    failing.status = 503
    patroni = provider([failing.url, healthy.url])
    try:
        assert (await patroni.fetch()).primary is not None
        assert (failing.hits, healthy.hits) == (1, 1)
        await patroni.fetch()
        assert (failing.hits, healthy.hits) == (1, 2)  # one member down costs one call, once
    finally:
        await patroni.close()


async def test_no_member_answering_is_node_unavailable_naming_each(rest: list[Patroni]) -> None:
    rest[0].status = 500
    rest[1].document = "{not json"
    dead = dead_url()
    patroni = provider([rest[0].url, rest[1].url, dead])
    try:
        with pytest.raises(NodeUnavailable, match="no Patroni REST API answered") as raised:
            await patroni.fetch()
    finally:
        await patroni.close()
    message = str(raised.value)
    assert all(url in message for url in (rest[0].url, rest[1].url, dead))
    assert "500" in message


async def test_close_and_fetch_again_reopens(rest: list[Patroni]) -> None:
    patroni = provider([rest[0].url])
    await patroni.fetch()
    await patroni.close()
    await patroni.close()  # twice is harmless
    assert (await patroni.fetch()).primary is not None
    await patroni.close()
    assert rest[0].hits == 2


@pytest.mark.parametrize(
    ("changes", "options", "replicas"),
    [
        ({}, {}, ["pg1", "pg3"]),
        # Up but not streaming, as every replica is while the leader is lost: readable by default.
        ({"pg1": {"state": "running"}}, {}, ["pg1", "pg3"]),
        ({"pg1": {"state": "running"}}, {"states": ("streaming",)}, ["pg3"]),
        ({"pg1": {"state": "starting"}, "pg3": {"state": "stopped"}}, {}, []),
        ({"pg3": {"role": "quorum_standby"}}, {}, ["pg1", "pg3"]),
        ({"pg3": {"role": "uninitialized"}}, {}, ["pg1"]),
        # Still on the old timeline right after a failover: misses the new leader's writes.
        ({"pg2": {"timeline": 2}, "pg1": {"timeline": 2}}, {}, ["pg1"]),
        ({"pg2": {"timeline": None}, "pg1": {"timeline": 7}}, {}, ["pg1", "pg3"]),
        ({"pg1": {"lag": 4096}, "pg3": {"lag": 1024}}, {"max_lag_bytes": 1024}, ["pg3"]),
        ({"pg1": {"lag": "unknown"}, "pg3": {"lag": None}}, {"max_lag_bytes": 10**9}, []),
        ({"pg1": {"lag": 10**12}}, {}, ["pg1", "pg3"]),  # no max_lag_bytes: any lag
        ({"pg1": {"port": "45432"}, "pg3": {"host": None}}, {}, []),  # malformed members are skipped
    ],
)
def test_which_replicas_are_readable(
    changes: dict[str, dict[str, Any]], options: dict[str, Any], replicas: list[str]
) -> None:
    snapshot = provider(["http://db1:8008"], **options).snapshot(doc(**changes))
    assert snapshot.primary is not None and snapshot.primary.name == "pg2"
    assert replica_names(snapshot) == replicas


@pytest.mark.parametrize("role", ["leader", "standby_leader", "master", "primary"])
def test_leader_roles(role: str) -> None:
    snapshot = provider(["http://db1:8008"]).snapshot(doc(pg2={"role": role}))
    assert snapshot.primary is not None and snapshot.primary.name == "pg2"


@pytest.mark.parametrize("state", ["stopping", "starting", "stopped"])
def test_leader_not_running_gives_no_snapshot(state: str) -> None:
    assert provider(["http://db1:8008"]).snapshot(doc(pg2={"state": state})) == TopologySnapshot(None, ())


def test_no_leader_and_no_members() -> None:
    patroni = provider(["http://db1:8008"])
    leaderless = patroni.snapshot(doc(pg2={"role": "replica", "state": "running"}))
    assert leaderless.primary is None and replica_names(leaderless) == ["pg1", "pg2", "pg3"]
    assert patroni.snapshot({}) == TopologySnapshot(None, ())


def test_member_urls() -> None:
    plain = PatroniProvider(["https://db1:8008/"], user="a b", scheme="postgresql+psycopg", options="?x=1")
    assert plain.rest_urls == ["https://db1:8008"]
    assert plain.member_url("::1", 5432) == "postgresql+psycopg://a%20b@[::1]:5432/postgres?x=1"
    assert "db1:8008" in repr(plain)


@pytest.mark.parametrize(
    ("urls", "options", "named"),
    [
        ("http://db1:8008", {}, "rest_urls"),
        ([], {}, "rest_urls"),
        (["db1:8008"], {}, "not an http"),
        (["http://:8008"], {}, "not an http"),
        (["http://db1:8008"], {"scheme": "mysql"}, "scheme"),
        (["http://db1:8008"], {"max_lag_bytes": -1}, "max_lag_bytes"),
        (["http://db1:8008"], {"max_lag_bytes": True}, "max_lag_bytes"),
        (["http://db1:8008"], {"timeout": 0.01}, "timeout"),
        (["http://db1:8008"], {"timeout": 61}, "timeout"),
    ],
)
def test_bad_configuration_names_the_option(urls: Any, options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        PatroniProvider(urls, user="app", **options)
