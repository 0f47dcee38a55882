"""Read-your-writes: after a write in a context, later reads in that context see it.

A *session* records the last write of a context: the wall-clock time it was
acknowledged and, in ``causal`` mode, the primary's position right after it.

- ``fresh`` (the default): a replica serves the context's reads only once the health
  monitor has proven that it holds every commit acknowledged before that write (it
  replayed a primary position read by a check that started after the write, see
  :meth:`NodeHealth.holds_writes_before`); until then the primary does. Correct under
  any lag and costs nothing per write: the proof comes from the monitor's rounds. With
  the monitor off nothing is ever proven, so a context that wrote reads from the
  primary. ``sticky_seconds``, if set, caps how long that lasts (trading the guarantee
  for replica share: after it, any eligible replica serves).
- ``causal``: reads the primary's position after each write (one extra query) and
  reads from any replica that has replayed it, else from the primary.
- ``sticky`` (deprecated: wrong once replicas lag more than ``sticky_seconds``): reads
  from the primary for ``sticky_seconds`` after a write.

A token carries the write time across processes, so tokens between hosts rely on their
clocks agreeing (NTP) to well under a health-check interval. A task gets a session at its first write;
tasks it spawns afterwards share it. ``Manager.consistency()`` opens one explicitly
(the web integrations open one per request), and a session travels between
requests as a token (:meth:`Session.token`, :meth:`Session.from_token`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Literal, cast

from ._errors import ConfigurationError
from ._options import seconds
from ._replication import Position

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["Consistency", "ConsistencyMode", "Session"]

ConsistencyMode = Literal["fresh", "sticky", "causal"]
_MODES = (None, "fresh", "sticky", "causal")
#: The old default window of ``sticky`` mode, kept for callers who still choose it.
_STICKY_DEFAULT = 2.0
_TOKEN_VERSION = "v1"


class Session:
    """The last write seen in one context (mutable: shared by the tasks of the context)."""

    __slots__ = ("position", "written_at")

    def __init__(self, written_at: float | None = None, position: Position | None = None) -> None:
        #: Wall-clock time (seconds since the epoch) of the last write; a token carries it.
        self.written_at = written_at
        self.position = position

    def record(self, position: Position | None = None) -> None:
        self.written_at = time.time()
        if position is not None:
            self.position = position

    def token(self) -> str:
        """A string to carry this session to another request or process (cookie, header)."""
        parts = [_TOKEN_VERSION]
        if self.written_at is not None:
            parts.append(f"t={self.written_at:.3f}")
        if self.position is not None:
            parts.append(f"p={self.position.to_token()}")
        return "|".join(parts)

    @classmethod
    def from_token(cls, token: str) -> Session:
        """The session a :meth:`token` described; ``ConfigurationError`` if it is not one."""
        fields = token.split("|") if isinstance(token, str) else []
        if not fields or fields[0] != _TOKEN_VERSION:
            raise ConfigurationError(f"not a consistency token: {str(token)[:80]!r}")
        session = cls()
        for field in fields[1:]:
            key, _, value = field.partition("=")
            try:
                if key == "t":
                    session.written_at = float(value)
                    continue
            except ValueError:
                pass
            else:
                if key == "p":
                    session.position = Position.from_token(value)
                    continue
            raise ConfigurationError(f"not a consistency token: {token[:80]!r}")
        return session


# {Consistency: Session} for the current context; copied on change.
_NO_SESSIONS: dict[Consistency, Session] = {}
_sessions: ContextVar[dict[Consistency, Session]] = ContextVar(
    "aiopeewee_dist.sessions", default=_NO_SESSIONS
)


class Consistency:
    """One manager's read-your-writes policy and its per-context sessions."""

    def __init__(
        self, mode: ConsistencyMode | None, *, sticky_seconds: float | None, causal_wait: float
    ) -> None:
        if mode not in _MODES:
            raise ConfigurationError(
                f"read_your_writes must be 'fresh', 'causal', 'sticky' or None, got {mode!r}"
            )
        self.mode = mode
        if mode == "sticky":
            warnings.warn(
                "read_your_writes='sticky' is deprecated: it reads stale data once replicas lag "
                "more than sticky_seconds; the default 'fresh' is correct under any lag",
                DeprecationWarning,
                stacklevel=3,
            )
            if sticky_seconds is None:
                sticky_seconds = _STICKY_DEFAULT
        #: fresh mode: an upper bound on how long a write pins the context's reads to the
        #: primary (None: until a replica is proven to hold it); sticky mode: the window.
        self.sticky_seconds: float | None = (
            None
            if sticky_seconds is None
            else cast(float, seconds("sticky_seconds", sticky_seconds, positive=False))
        )
        # Finite: an infinite causal_wait would let a read wait forever for a lagging replica.
        self.causal_wait = cast(float, seconds("causal_wait", causal_wait, positive=False))

    def current(self) -> Session | None:
        return _sessions.get().get(self)

    def _ensure(self) -> Session:
        session = self.current()
        if session is None:
            session = Session()
            _sessions.set({**_sessions.get(), self: session})
        return session

    @contextmanager
    def scope(self, token: str | None = None) -> Iterator[Session]:
        """A fresh session for the block (from ``token`` if given)."""
        session = Session.from_token(token) if token else Session()
        reset = _sessions.set({**_sessions.get(), self: session})
        try:
            yield session
        finally:
            _sessions.reset(reset)

    @property
    def tracks_positions(self) -> bool:
        return self.mode == "causal"

    def record_write(self, position: Position | None = None) -> None:
        if self.mode is not None:
            self._ensure().record(position)

    def primary_required(self) -> bool:
        """Sticky mode: a write in this context happened less than ``sticky_seconds`` ago."""
        if self.mode != "sticky" or self.sticky_seconds is None:
            return False
        session = self.current()
        written = session.written_at if session else None
        return written is not None and time.time() - written < self.sticky_seconds

    def proven_replicas(self, candidates: Sequence[Node]) -> list[Node] | None:
        """The candidates that may serve this context's reads; None when any of them may.

        An empty list means none is proven to hold this context's last write yet: the
        primary must serve the read.
        """
        session = self.current()
        if session is None:
            return None
        if self.mode == "fresh":
            written = session.written_at
            if written is None:
                return None
            if self.sticky_seconds is not None and time.time() - written >= self.sticky_seconds:
                return None  # the caller's cap: past it, any eligible replica serves
            return [node for node in candidates if node.health.holds_writes_before(written)]
        if self.mode == "causal" and session.position is not None:
            return [node for node in candidates if node.health.covers(session.position)]
        return None

    def required_position(self) -> Position | None:
        """Causal mode: the position a replica must have replayed to serve this context."""
        if self.mode != "causal":
            return None
        session = self.current()
        return session.position if session else None
