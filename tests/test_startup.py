"""Permanent connection errors are reported as such (issue 12, item 2).

Opening a manager verifies the primary with one authenticated connection and fails naming the
node and the cause; unreachable replicas only warn; the health check marks a node that refuses
our credentials down at once; the status CLI flags a "primary" that is a standby.
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cluster
import pytest
from conftest import topology_for

from aiopeewee_dist import Manager, NodeRejected, NodeUnavailable
from aiopeewee_dist._cli import main as cli_main

pytestmark = pytest.mark.cluster
SECRET = "p@ss:w/rd 1"


def with_parts(
    url: str, *, password: str | None = None, host: str | None = None, db: str | None = None
) -> str:
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, old_password = userinfo.partition(":")
    hostname, _, port = hostport.partition(":")
    netloc = f"{user}:{password if password is not None else old_password}@{host or hostname}:{port}"
    path = f"/{db}" if db is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


CASES = {
    "wrong credentials": {"password": "not-the-password"},
    "unknown database": {"db": "no_such_database"},
    "unknown host": {"host": "no-such-host.invalid"},
}


@pytest.mark.parametrize("cause", list(CASES))
async def test_opening_the_manager_verifies_the_primary(
    cluster_backend: str, tmp_path: Path, cause: str
) -> None:
    topology = topology_for(cluster_backend, tmp_path)
    manager = Manager(with_parts(topology.primary, **CASES[cause]), connect_timeout=5.0)
    try:
        with pytest.raises(NodeRejected) as raised:
            async with manager:
                pass
    finally:
        await manager.close()
    error = raised.value
    assert error.cause == cause
    message = str(error)
    assert "'primary'" in message and cause in message and error.advice in message
    assert SECRET not in message and "not-the-password" not in message
    assert isinstance(error, NodeUnavailable)  # existing handlers still catch it
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.cause, str(copy)) == (NodeRejected, cause, message)


async def test_tls_refused_is_named(tmp_path: Path) -> None:
    topology = topology_for("psycopg", tmp_path)  # the local servers run without TLS
    manager = Manager(topology.primary + "?sslmode=require", connect_timeout=5.0)
    try:
        with pytest.raises(NodeRejected, match="TLS refused") as raised:
            await manager.connect()
    finally:
        await manager.close()
    assert raised.value.cause == "TLS refused"


async def test_no_verification_when_asked(tmp_path: Path) -> None:
    topology = topology_for("psycopg", tmp_path)
    manager = Manager(with_parts(topology.primary, password="nope"))
    try:
        await manager.connect(verify=False)  # pools open lazily: nothing connects
        with pytest.raises(NodeRejected, match="wrong credentials"):
            await manager.raw_sql("SELECT 1")  # the first query says why, too
    finally:
        await manager.close()


async def test_unreachable_replicas_at_startup_warn(
    cluster_backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topology = topology_for(cluster_backend, tmp_path)
    closed_port = with_parts(topology.replicas[0], host="127.0.0.1").replace(
        f":{urlsplit(topology.replicas[0]).port}/", ":1/"
    )
    wrong_password = with_parts(topology.replicas[0], password="nope")
    manager = Manager(topology.primary, [closed_port, wrong_password], connect_timeout=3.0)
    try:
        with caplog.at_level(logging.WARNING, logger="aiopeewee_dist"):
            await manager.connect()
        warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        assert "replica-1" in warned and "replica-2" in warned and "wrong credentials" in warned
        assert (await manager.raw_sql("SELECT 1")) == [(1,)]  # reads fall back to the primary
        report = {entry["name"]: entry for entry in await manager.check_connections()}
        # One check is enough for the node that rejects us: it is down, not "up with an error".
        assert report["replica-2"]["up"] is False
        assert (
            "password" in report["replica-2"]["last_error"].lower()
            or "denied" in report["replica-2"]["last_error"].lower()
        )
        assert report["primary"]["up"] is True and report["primary"]["read_only"] is False
    finally:
        await manager.close()


def test_status_cli_flags_a_primary_that_is_a_standby(tmp_path: Path) -> None:
    topology_for("psycopg", tmp_path)
    out = io.StringIO()
    status = cli_main(
        ["status", "--primary", cluster.PG_REPLICAS[0], "--replica", cluster.PG_REPLICAS[1]], out=out
    )
    assert status == 1
    primary_line = next(line for line in out.getvalue().splitlines() if line.startswith("primary"))
    assert "NOT WRITABLE" in primary_line and "read-only" in primary_line
    # The real primary passes.
    assert cli_main(["status", "--primary", cluster.PG_PRIMARY], out=io.StringIO()) == 0


def test_status_cli_error_column_is_one_short_line(tmp_path: Path) -> None:
    topology_for("psycopg", tmp_path)
    out = io.StringIO()
    down = cluster.PG_PRIMARY.replace(f":{urlsplit(cluster.PG_PRIMARY).port}/", ":1/")
    status = cli_main(["status", "--primary", cluster.PG_PRIMARY, "--replica", down], out=out)
    assert status == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # header, primary, replica: the libpq hint's newline is gone
    replica_line = lines[2]
    assert replica_line.startswith("replica-1") and "NO" in replica_line
    assert replica_line.endswith("...") and len(replica_line) < 200
