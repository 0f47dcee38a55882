"""libpq multi-host URLs: ``postgresql://u:p@h1:5432,h2:5432/db?target_session_attrs=...`` finds
the primary (``read-write``) or a standby (``standby``/``prefer-standby``) among the hosts, before
and after a Patroni switchover, with no provider."""

from __future__ import annotations

import asyncio
import pickle
import time
from urllib.parse import quote

import cluster
import peewee
import pytest
from chaos.ha import PATRONI_OUTAGE_BOUND, in_thread, patroni_topology

from aiopeewee_dist import ConfigurationError, Manager
from aiopeewee_dist._url import connect_kwargs, parse_url


def test_multi_host_url_parts() -> None:
    url = parse_url("postgresql://u:s%40cret@h1:5433,h2,[::1]:7/db?target_session_attrs=read-write")
    assert (url.host, url.port, url.more_hosts) == ("h1", 5433, (("h2", 5432), ("::1", 7)))
    assert str(url) == "postgresql://u:***@h1:5433,h2:5432,[::1]:7/db?target_session_attrs=read-write"
    kwargs = connect_kwargs(url)
    assert (kwargs["host"], kwargs["port"], kwargs["password"]) == ("h1,h2,::1", "5433,5432,7", "s@cret")
    assert pickle.loads(pickle.dumps(url)) == url
    assert hash(url) != hash(parse_url("postgresql://u:s%40cret@h1:5433/db?target_session_attrs=read-write"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("mysql://u@a,b/db", "only postgresql"),
        ("postgresql://u@a,,b/db", "host missing"),
        ("postgresql://u@a,b:x/db", "port"),
    ],
)
def test_multi_host_url_errors(raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_url(raw)


def multi_host(attrs: str, database: str = "aiopd") -> str:
    patroni = patroni_topology()
    hosts = ",".join(f"127.0.0.1:{m.pg_port}" for m in patroni.members)
    password = quote(cluster.APP_PASSWORD, safe="")
    return f"postgresql://{cluster.APP_USER}:{password}@{hosts}/{database}?target_session_attrs={attrs}"


@pytest.mark.cluster
@pytest.mark.timeout(180)
async def test_multi_host_finds_the_leader_and_follows_a_switchover() -> None:
    patroni = patroni_topology()
    manager = Manager(
        multi_host("read-write"),
        [multi_host("standby")],
        health_check_interval=None,
        read_your_writes=None,
        connect_timeout=2.0,
    )
    whoami = "SELECT inet_server_port(), pg_is_in_recovery()"
    async with manager:
        leader = patroni.member(patroni.leader() or "")
        assert await manager.raw_sql(whoami, node="primary") == [(leader.pg_port, False)]
        [(port, standby)] = await manager.raw_sql(whoami)
        assert standby and port != leader.pg_port
        new = patroni.member(await in_thread(patroni.switchover))
        started = time.monotonic()
        while True:
            try:
                rows = await manager.raw_sql(whoami, node="primary")
            except peewee.OperationalError:
                rows = []
            if rows == [(new.pg_port, False)]:
                break
            assert time.monotonic() - started < PATRONI_OUTAGE_BOUND, f"still {rows} after the switchover"
            await asyncio.sleep(0.1)  # the next attempt of this bounded poll
        await manager.raw_sql("CREATE TEMPORARY TABLE t_multihost (x int)", node="primary")  # writable
    await in_thread(lambda: patroni.start_member(patroni.members[0].name))  # healthy again
