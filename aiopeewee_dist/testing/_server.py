"""Simulated database servers: SQLite underneath, scripted faults, roles and replication.

A :class:`FakeServer` registers itself under its name; ``fake://NAME`` URLs connect to it
through the fake driver (``aiopeewee_dist._drivers._fake``), the way httpx's ``MockTransport``
stands in for the network. See :mod:`aiopeewee_dist.testing` for the user's view.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import shutil
import sqlite3
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from ._session import FakeConnectionLost, FakeReadOnly, FakeSession, Logged, first_word, is_write

__all__ = ["FakeServer", "Statement", "server_named"]

_ids = itertools.count(1)
_servers: dict[str, FakeServer] = {}
_BUSY_RETRY = 0.002
_RECORDED = 10_000


@dataclass(frozen=True)
class Statement:
    """One statement as a fake server received it (``FakeServer.statements``, handlers)."""

    server: str
    session: int
    sql: str
    params: tuple[Any, ...]


@dataclass(frozen=True)
class _Commit:
    statements: tuple[Logged, ...]
    at: float  # time.monotonic() of the commit on the server that ran it


@dataclass
class _Fault:
    error: BaseException | None  # None: drop the connection
    match: str | None
    times: int
    after: bool  # drop after the statement ran (the reply is lost, the effect stays)


Handler = Callable[[Statement], "Awaitable[None] | None"]


def server_named(name: str) -> FakeServer:
    """The registered server ``fake://name`` connects to; ``ConnectionRefusedError`` if none."""
    server = _servers.get(name)
    if server is None:
        raise ConnectionRefusedError(f"no fake server named {name!r} (create FakeServer({name!r}) first)")
    return server


class FakeServer:
    """One simulated server with its own SQLite database, reachable as ``fake://NAME``.

    Rows are real: every server is a SQLite file in a temporary directory, and Peewee compiles
    for the SQLite dialect. A replica (``replica_of=``, or :meth:`replica`) replays its source's
    committed transactions, in commit order, when it is next asked anything: at once by default,
    ``replay_delay`` seconds late with :meth:`delay`, not at all while :meth:`pause` d. Its
    position (the number of transactions it holds) is what the health monitor reads, through the
    same status query it sends PostgreSQL: ``pg_is_in_recovery()``, ``pg_last_wal_replay_lsn()``,
    ``pg_last_wal_receive_lsn()`` (a replica receives at once; only replay waits) and
    ``pg_current_wal_flush_lsn()`` are functions of every session.

    Scripted behaviour, each effective at once for every session:

    - ``latency``: seconds every statement (and connect) waits before running;
    - :meth:`down` / :meth:`up`: refuse connections and drop the open ones / serve again;
    - :meth:`hang` / :meth:`unhang`: connects and statements get no answer (a blackholed host)
      until unhung, dropped or cancelled (so ``connect_timeout``/``query_timeout`` fire);
    - :meth:`drop_connections`: close every open session, as a server restart does;
    - :meth:`fail_next` / :meth:`drop_next`: the next matching statement raises / loses its
      connection (before running, or with ``after=True`` once it ran: the reply is lost);
    - ``handler``: called with each :class:`Statement` before it runs; it may raise, or be a
      coroutine that sleeps or waits;
    - :meth:`promote`, :meth:`follow`, :meth:`set_read_only`: roles, as a failover changes them.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        replica_of: FakeServer | None = None,
        latency: float = 0.0,
        handler: Handler | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        name = name or f"fake-{next(_ids)}"
        if name in _servers:
            raise ConfigurationError(f"a fake server named {name!r} exists already (close() it first)")
        self.name = name
        self.latency = latency
        self.handler = handler
        #: Seconds a write waits for SQLite's write lock held by another session, then fails.
        self.busy_timeout = busy_timeout
        self.read_only = replica_of is not None
        self.source = replica_of
        self.replay_delay = 0.0
        self.replay_paused = False
        self.is_up = True
        self.hung = False
        #: Statements received, oldest first (the last 10,000).
        self.statements: deque[Statement] = deque(maxlen=_RECORDED)
        self.connections_opened = 0
        self.sessions: set[FakeSession] = set()
        self._history: list[_Commit] = []
        self._faults: list[_Fault] = []
        self._stalled: list[asyncio.Future[None]] = []
        self._dir = tempfile.mkdtemp(prefix=f"aiopd-fake-{name}-")
        self.path = str(Path(self._dir) / "data.sqlite")
        # timeout=0: a lock held by a session fails the replay at once rather than blocking the loop.
        self._replay_db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        self._replay_db.execute("PRAGMA journal_mode = WAL")
        self._replay_db.execute("PRAGMA synchronous = OFF")
        _servers[name] = self
        if replica_of is not None:
            self.catch_up()

    def __repr__(self) -> str:
        role = f"replica of {self.source.name!r}" if self.source else "primary"
        return f"<FakeServer {self.name!r} {role}{'' if self.is_up else ' down'}>"

    @property
    def url(self) -> str:
        """``fake://NAME``: give it to ``Manager`` like any database URL."""
        return f"fake://{self.name}"

    def replica(self, name: str | None = None, **options: Any) -> FakeServer:
        """A new server replicating this one."""
        return FakeServer(name, replica_of=self, **options)

    def close(self) -> None:
        """Unregister the server, drop its sessions and delete its data."""
        self.drop_connections()
        self._replay_db.close()
        if _servers.get(self.name) is self:
            del _servers[self.name]
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scripted behaviour --------------------------------------------------------------

    def down(self) -> None:
        """Crash: open sessions are dropped, new connections refused until :meth:`up`."""
        self.is_up = False
        self.drop_connections()

    def up(self) -> None:
        self.is_up = True

    def hang(self) -> None:
        """Stop answering, without closing anything (a host behind a dead network link)."""
        self.hung = True

    def unhang(self) -> None:
        self.hung = False
        self._wake()

    def drop_connections(self) -> None:
        """Close every open session: their next (or current) statement fails, connection lost."""
        for session in list(self.sessions):
            session.drop()
        self.sessions.clear()
        self._wake()

    def fail_next(self, error: BaseException | str, *, match: str | None = None, times: int = 1) -> None:
        """The next ``times`` statements containing ``match`` (any, if None) raise ``error``
        (a string stands for ``sqlite3.OperationalError(error)``) instead of running."""
        exc = sqlite3.OperationalError(error) if isinstance(error, str) else error
        self._faults.append(_Fault(exc, match, times, after=False))

    def drop_next(self, *, match: str | None = None, times: int = 1, after: bool = False) -> None:
        """The next ``times`` statements containing ``match`` lose their connection; with
        ``after=True`` the statement ran (and a COMMIT committed) before the loss."""
        self._faults.append(_Fault(None, match, times, after=after))

    def delay(self, seconds: float) -> None:
        """Replay the source's transactions ``seconds`` after they committed (0: at once)."""
        self.catch_up()
        self.replay_delay = seconds

    def pause(self) -> None:
        """Stop replaying (the replica falls behind as the source commits)."""
        self.catch_up()
        self.replay_paused = True

    def resume(self) -> None:
        self.replay_paused = False

    def promote(self) -> None:
        """Stop replicating and accept writes, keeping what was replayed."""
        self.catch_up()
        self.source = None
        self.read_only = False

    def follow(self, source: FakeServer) -> None:
        """Become a read-only replica of ``source`` (which must hold this server's history).

        A primary turned into a replica restarts (as after pg_rewind): its sessions are dropped.
        """
        if self.source is None:
            self.drop_connections()
        self.source = source
        self.read_only = True
        self.catch_up()

    def set_read_only(self, read_only: bool = True) -> None:
        """Refuse (or accept again) writes; a read-only server reports itself in recovery."""
        self.read_only = read_only

    # -- replication -----------------------------------------------------------------------

    @property
    def position(self) -> int:
        """Transactions this server holds (committed here or replayed), after catching up."""
        self.catch_up()
        return len(self._history)

    def lsn(self) -> str:
        return f"0/{self.position:X}"

    def catch_up(self) -> None:
        """Replay what the source committed, as far as the delay allows (nothing while paused)."""
        source = self.source
        if source is None or self.replay_paused:
            return
        horizon = time.monotonic() - self.replay_delay
        pending = source._history[len(self._history) :]
        for commit in pending:
            if commit.at > horizon:
                break
            db = self._replay_db
            db.execute("BEGIN")
            try:
                for sql, params in commit.statements:
                    db.execute(sql, params)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            self._history.append(commit)

    def _committed(self, statements: list[Logged]) -> None:
        self._history.append(_Commit(tuple(statements), time.monotonic()))

    def _functions(self) -> dict[str, Callable[[], Any]]:
        def replay_lsn() -> str | None:
            return self.lsn() if self.read_only else None

        def receive_lsn() -> str | None:
            # Every replica receives its source's commits at once; only their replay waits.
            source = self.source
            return source.lsn() if self.read_only and source is not None else None

        def current_lsn() -> str:
            if self.read_only:
                raise sqlite3.OperationalError("recovery is in progress")
            return self.lsn()

        return {
            "pg_is_in_recovery": lambda: int(self.read_only),
            "pg_last_wal_replay_lsn": replay_lsn,
            "pg_last_wal_receive_lsn": receive_lsn,
            "pg_current_wal_flush_lsn": current_lsn,
            "pg_current_wal_lsn": current_lsn,
        }

    # -- what the driver calls -----------------------------------------------------------------

    async def connect(self, *, read_only: bool) -> FakeSession:
        await self._arrive(None)
        if not self.is_up:
            raise ConnectionRefusedError(f"fake server {self.name!r} is down")
        session = FakeSession(
            self, self.path, read_only=read_only, functions=self._functions(), on_commit=self._committed
        )
        self.sessions.add(session)
        self.connections_opened += 1
        return session

    def disconnect(self, session: FakeSession) -> None:
        session.close()
        self.sessions.discard(session)

    async def execute(
        self, session: FakeSession, sql: str, params: Sequence[Any], *, first: str | None = None
    ) -> sqlite3.Cursor:
        """Run ``first`` (if given) and ``sql`` in one round trip; the cursor of ``sql``."""
        statements = [Statement(self.name, session.id, s, ()) for s in ([first] if first else [])]
        statements.append(Statement(self.name, session.id, sql, tuple(params)))
        self.statements.extend(statements)
        fault = None
        for statement in statements:
            fault = await self._before(session, statement) or fault
        if first is not None:
            await self._run(session, first, ())
        cursor = await self._run(session, sql, params)
        if fault is not None:  # drop_next(after=True)
            self._lose(session)
        return cursor

    async def _before(self, session: FakeSession, statement: Statement) -> _Fault | None:
        await self._arrive(session)
        if self.handler is not None:
            outcome = self.handler(statement)
            if inspect.isawaitable(outcome):
                await outcome
        fault = self._take_fault(statement.sql)
        if fault is not None and not fault.after:
            if fault.error is not None:
                raise fault.error
            self._lose(session)
        self._check(session)
        return fault

    async def _run(self, session: FakeSession, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        self._check(session)
        self.catch_up()
        if is_write(sql) and (self.read_only or session.read_only):
            raise FakeReadOnly(f"cannot execute {first_word(sql)} on read-only fake server {self.name!r}")
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return session.run(sql, params)
            except sqlite3.OperationalError as exc:
                # SQLite refuses a second writer at once; a server makes it wait for the lock.
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(_BUSY_RETRY)
            self._check(session)

    async def arrive(self, session: FakeSession) -> None:
        """A round trip on ``session`` (latency, hang), then a check that it is still open."""
        await self._arrive(session)
        self._check(session)

    async def _arrive(self, session: FakeSession | None) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        while self.hung and (session is None or not session.dropped):
            stalled = asyncio.get_running_loop().create_future()
            self._stalled.append(stalled)
            try:
                await stalled
            finally:
                self._stalled.remove(stalled)

    def _check(self, session: FakeSession) -> None:
        if session.dropped:
            session.closed = True
            raise FakeConnectionLost(f"fake server {self.name!r} closed the connection unexpectedly")

    def _lose(self, session: FakeSession) -> None:
        session.drop()
        self.sessions.discard(session)
        self._check(session)

    def _take_fault(self, sql: str) -> _Fault | None:
        for fault in self._faults:
            if fault.match is None or fault.match in sql:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _wake(self) -> None:
        for stalled in self._stalled:
            if not stalled.done() and not stalled.get_loop().is_closed():
                stalled.set_result(None)
