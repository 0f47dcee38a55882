"""The ``status`` command on fake servers, and replication positions as pure values."""

from __future__ import annotations

import io
import json

import pytest

from aiopeewee_dist import ConfigurationError
from aiopeewee_dist._cli import main
from aiopeewee_dist._replication import (
    UNKNOWN_POSITION,
    NodeStatus,
    Position,
    parse_position,
    parse_status,
    position_sql,
    status_sql,
    surviving_position,
)
from aiopeewee_dist.testing import FakeCluster


def test_status_table_json_and_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeCluster(replicas=2) as cluster:
        cluster.replicas[1].down()
        out = io.StringIO()
        argv = ["status", "--primary", cluster.primary_url, *(f"--replica={u}" for u in cluster.replica_urls)]
        assert main(argv, out=out) == 0
        lines = out.getvalue().splitlines()
        assert lines[0].split()[:3] == ["node", "role", "up"]
        assert lines[1].split()[:3] == ["primary", "primary", "yes"]
        assert lines[3].split()[:3] == ["replica-2", "replica", "NO"] and "cannot connect" in lines[3]

        monkeypatch.setenv("DATABASE_URL", cluster.primary_url)
        monkeypatch.setenv("DATABASE_REPLICA_URLS", f"{cluster.replica_urls[0]}, ")
        out = io.StringIO()
        assert main(["status", "--json", "--timeout", "0.5"], out=out) == 0
        report = json.loads(out.getvalue())
        assert [(e["name"], e["up"]) for e in report] == [("primary", True), ("replica-1", True)]

        cluster.primary.down()
        assert main(["status"], out=io.StringIO()) == 1
    monkeypatch.delenv("DATABASE_URL")
    assert main(["status"], out=io.StringIO()) == 2  # no primary URL
    assert main(["status", "--primary", "nope://x"], out=io.StringIO()) == 2


def test_positions_order_tokens_and_parsing() -> None:
    lsn = Position.from_lsn("1/A0")
    assert str(lsn) == "1/A0" and lsn.covers(Position.from_lsn("0/FF")) and not lsn.covers(UNKNOWN_POSITION)
    gtid = Position.from_gtid("0-1-13,1-2-5,0-1-9")
    assert str(gtid) == "0-13,1-5"
    assert gtid.covers(Position.from_gtid("0-1-12")) and not gtid.covers(Position.from_gtid("2-1-1"))
    assert not gtid.covers(lsn)  # another dialect
    for position in (lsn, gtid):
        assert Position.from_token(position.to_token()) == position
    for bad in ("pg:xyz", "my:1-2-3", "zz:1", "pg"):
        with pytest.raises(ConfigurationError, match="consistency token"):
            Position.from_token(bad)
    assert Position.from_gtid("") == Position("mysql", ())


def test_status_and_position_queries_per_dialect() -> None:
    assert "pg_is_in_recovery" in str(status_sql("postgresql"))
    assert "@@read_only" in str(status_sql("mysql"))
    assert status_sql("sqlite") is None and position_sql("sqlite") is None
    assert position_sql("mysql") == "SELECT @@last_gtid"
    replica = parse_status("mysql", (1, b"0-1-20", "0-1-18"))
    assert replica.is_replica and replica.position == Position.from_gtid("0-1-18")
    primary = parse_status("mysql", ("0", "0-1-20", ""))
    assert not primary.is_replica and primary.position == Position.from_gtid("0-1-20")
    assert parse_status("postgresql", (False, None, None)).position is None
    standby = parse_status("postgresql", (True, "0/10", "0/30"))
    assert standby.position == Position.from_lsn("0/10") and standby.holds == Position.from_lsn("0/30")
    assert standby.streaming and parse_status("postgresql", (False, "0/10", None)).streaming
    # Replayed past what its stream delivered (an old primary before its rewind), or no stream.
    assert not parse_status("postgresql", (True, "0/50000A0", "0/5000000")).streaming
    assert not parse_status("postgresql", (True, "0/10", None)).streaming
    assert parse_position("postgresql", "0/10") == Position.from_lsn("0/10")
    assert parse_position("mysql", b"0-1-3") == Position.from_gtid("0-1-3")
    assert parse_position("mysql", None) is None


def test_what_survives_a_dead_primary_is_the_most_any_replica_holds() -> None:
    def standby(replayed: str, received: str | None = None) -> NodeStatus:
        return parse_status("postgresql", (True, replayed, received))

    # Flushed but not replayed counts: a synchronous standby acknowledges commits only flushed.
    assert surviving_position([standby("0/20", "0/20"), standby("0/10", "0/30")]) == Position.from_lsn("0/30")
    # A walreceiver restarting reports the start of its segment, behind what it replayed.
    assert surviving_position([standby("0/20", "0/0"), standby("0/10")]) == Position.from_lsn("0/20")
    # A replica that did not answer may hold more than any that did: nothing is known.
    assert surviving_position([standby("0/20", "0/20"), None]) is None
    assert surviving_position([]) is None
