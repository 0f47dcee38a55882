"""Replication positions: what a server has written (primary) or replayed (replica).

PostgreSQL positions are WAL LSNs; MariaDB positions are GTID sets (one sequence
number per replication domain, ordered under ``gtid_strict_mode``). A replica whose
replayed position *covers* a position taken on the primary after a commit has that
commit: this is the basis of lag measurement and of causal reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._errors import ConfigurationError

__all__ = [
    "UNKNOWN_POSITION",
    "NodeStatus",
    "Position",
    "most_advanced",
    "parse_position",
    "parse_status",
    "position_sql",
    "status_sql",
    "surviving_position",
]


@dataclass(frozen=True, order=False)
class Position:
    """A point in a primary's replication stream."""

    dialect: str
    #: PostgreSQL: ((0, lsn),); MariaDB: ((domain, seq), ...) sorted by domain.
    parts: tuple[tuple[int, int], ...]

    def covers(self, other: Position) -> bool:
        """Whether a server at this position has everything up to ``other``."""
        if self.dialect != other.dialect:
            return False
        mine = dict(self.parts)
        return all(mine.get(domain, -1) >= seq for domain, seq in other.parts)

    def __str__(self) -> str:
        if self.dialect == "postgresql":
            lsn = self.parts[0][1] if self.parts else 0
            return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
        return ",".join(f"{domain}-{seq}" for domain, seq in self.parts)

    def to_token(self) -> str:
        prefix = "pg" if self.dialect == "postgresql" else "my"
        return f"{prefix}:{self}"

    @classmethod
    def from_token(cls, token: str) -> Position:
        """Parse :meth:`to_token` output; ``ConfigurationError`` on anything else."""
        prefix, _, value = token.partition(":")
        try:
            if prefix == "pg":
                return cls.from_lsn(value)
            if prefix == "my":
                return cls.from_gtid(value, server_ids=False)
        except (ValueError, IndexError):
            pass
        raise ConfigurationError(f"not a consistency token: {token[:80]!r}")

    @classmethod
    def from_lsn(cls, text: str) -> Position:
        high, low = text.split("/")
        return cls("postgresql", ((0, (int(high, 16) << 32) | int(low, 16)),))

    @classmethod
    def from_gtid(cls, text: str, *, server_ids: bool = True) -> Position:
        """``"0-1-13,1-2-5"`` (domain-server-seq) as MariaDB prints it, or ``"0-13"`` from a token."""
        best: dict[int, int] = {}
        for item in filter(None, (part.strip() for part in (text or "").split(","))):
            fields = item.split("-")
            if len(fields) != (3 if server_ids else 2):
                raise ValueError(item)
            domain, seq = int(fields[0]), int(fields[-1])
            best[domain] = max(seq, best.get(domain, -1))
        return cls("mysql", tuple(sorted(best.items())))


def most_advanced(positions: list[Position]) -> Position | None:
    """The position that covers every other one (None if there is none, or no position)."""
    for candidate in positions:
        if all(candidate.covers(other) for other in positions):
            return candidate
    return None


#: Stands for "a write whose position could not be read": no replica covers it, so
#: causal reads go to the primary until the next write with a known position.
UNKNOWN_POSITION = Position("unknown", ())


@dataclass(frozen=True)
class NodeStatus:
    """What one status query says about a server."""

    is_replica: bool
    #: Replayed (a replica) or written (a primary): what reads there see.
    position: Position | None
    #: A replica's stream received and flushed, replayed or not (None where the server does
    #: not say): with synchronous replication, acknowledged commits may be only this far.
    received: Position | None = None
    #: False for a standby that replayed past what its stream delivered: WAL of its own, as an
    #: old primary restarted before it was rewound has. That WAL may be another timeline's,
    #: whose positions compare with nothing in the primary's.
    streaming: bool = True

    @property
    def comparable(self) -> Position | None:
        """The position, if it compares with the primary's (None for a standby not streaming)."""
        return self.position if self.streaming else None

    @property
    def holds(self) -> Position | None:
        """The furthest position the server holds, replayed or only received."""
        if self.received is None or self.position is None:
            return self.position
        return self.received if self.received.covers(self.position) else self.position


def surviving_position(statuses: list[NodeStatus | None]) -> Position | None:
    """What survives of a stream whose primary is down: the furthest any replica holds.

    None while any replica did not answer or tell its position: the silent one may hold more,
    and a replica dated against the others would look fresh without commits it lacks.
    """
    held: list[Position] = []
    for status in statuses:
        position = None if status is None else status.holds
        if position is None:
            return None
        held.append(position)
    return most_advanced(held)


def status_sql(dialect: str) -> str | None:
    """One statement that tells the role and position of any server of the dialect."""
    if dialect == "postgresql":
        return (
            "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
            "THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END, "
            "pg_last_wal_receive_lsn()"
        )
    if dialect == "mysql":
        return "SELECT @@read_only, @@gtid_binlog_pos, @@gtid_slave_pos"
    return None


def position_sql(dialect: str) -> str | None:
    """The primary's position right after this session's last commit (same connection)."""
    if dialect == "postgresql":
        return "SELECT pg_current_wal_lsn()"
    if dialect == "mysql":
        return "SELECT @@last_gtid"
    return None


def parse_status(dialect: str, row: Any) -> NodeStatus:
    if dialect == "postgresql":
        in_recovery, lsn, received = row
        replayed, got = parse_position(dialect, lsn), parse_position(dialect, received)
        streaming = not in_recovery or (replayed is not None and got is not None and got.covers(replayed))
        return NodeStatus(bool(in_recovery), replayed, got, streaming)
    read_only, binlog_pos, slave_pos = row
    is_replica = bool(int(read_only))
    text = slave_pos if is_replica else binlog_pos
    return NodeStatus(is_replica, Position.from_gtid(_text(text)))


def parse_position(dialect: str, value: Any) -> Position | None:
    if not value:
        return None
    if dialect == "postgresql":
        return Position.from_lsn(str(value))
    return Position.from_gtid(_text(value))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value or "")
