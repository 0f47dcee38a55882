"""One rolled-back transaction per test that every query of a manager joins.

The model is pytest-django's ``db`` fixture and SQLAlchemy's "join the session to an
external transaction" recipe: the test takes one connection of the primary and opens a
transaction on it; every node of the manager (replicas too) then runs its statements on
that connection, from any task, so the test's reads see its own uncommitted writes and
nothing ever reaches a real replica. The test's own ``manager.transaction()`` blocks
become savepoints. At the end the transaction is rolled back.

The simulated replicas of :func:`simulated_manager` point at the primary's own server, so
a test can make one lag (it reads on its own connections, which see none of the test's
writes, and reports the lag to the router), go down (it refuses connections, as a crashed
server does) or take over from a primary that went down, with no real cluster.
"""

from __future__ import annotations

import logging
import math
import time
from types import TracebackType
from typing import Any

from .._context import Binding
from .._drivers import Driver
from .._errors import ConfigurationError, RoutingError
from .._manager import Manager
from .._node import Node
from .._pool import PooledConnection
from ._simdriver import DEAD_CONNECTION, SharedConnection, SimDriver

__all__ = ["RolledBack", "rolled_back", "simulated_manager"]

logger = logging.getLogger("aiopeewee_dist.testing")


def simulated_manager(url: str, *, replicas: int = 2, **options: Any) -> Manager:
    """A manager whose ``replicas`` simulated replicas (``replica-1``, ...) all point at ``url``.

    Meant for :func:`rolled_back`: the replicas then share the test's transaction until a
    test makes one lag or go down. The health monitor is off (``health_check_interval=None``)
    so that only the test changes a node's state. Other ``options`` go to :class:`Manager`;
    a SQLite URL must name a file (a ``:memory:`` database is private to one connection).
    """
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not 0 <= replicas <= 16:
        raise ConfigurationError(f"replicas must be an integer from 0 to 16, got {replicas!r}")
    options.setdefault("health_check_interval", None)
    # max_lag needs the health monitor, which must not run here: it would find that the
    # simulated replicas are really the primary's server. The router's bound is set instead,
    # and the simulation reports each replica's freshness.
    max_lag = options.pop("max_lag", None)
    if max_lag is not None and (isinstance(max_lag, bool) or not 0 < max_lag <= 86400):
        raise ConfigurationError(f"max_lag must be between 0 and 86400 seconds, got {max_lag!r}")
    names = {f"replica-{i}": url for i in range(1, replicas + 1)}
    manager = Manager(url, names, **options)
    manager._router.max_lag = max_lag
    return manager


class RolledBack:
    """The test's transaction on ``manager``'s primary, and the controls of its simulation.

    Use through :func:`rolled_back` (or the pytest plugin's ``aiopd`` fixture).
    """

    def __init__(self, manager: Manager) -> None:
        if not isinstance(manager, Manager):
            raise ConfigurationError(
                f"rolled_back() takes a Manager, got {type(manager).__name__}"
                " (for a ShardedManager, enter rolled_back() for each shard's manager)"
            )
        self.manager = manager
        self._shared: SharedConnection | None = None
        self._drivers: dict[Node, SimDriver] = {}
        self._saved_health: dict[Node, tuple[bool, float | None]] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> RolledBack:
        if self._shared is not None:
            raise ConfigurationError("this RolledBack is already entered; create a new one per test")
        primary = self.manager.primary_node
        driver = primary.driver
        pc = await primary.pool.acquire()
        try:
            for sql in driver.begin_statements(isolation=None, read_only=False):
                await driver.execute(pc.conn, sql, ())
        except BaseException:
            primary.pool.release(pc, broken=True)
            raise
        binding = Binding(primary, primary.pool, pc, read_only=False)
        binding.depth = 1  # the test's transaction: the test's own blocks are savepoints
        self._shared = SharedConnection(driver, binding, statement_savepoints=primary.dialect == "postgresql")
        for node in self.manager.nodes:
            self._install(node)
        return self

    def _install(self, node: Node) -> SimDriver:
        assert self._shared is not None
        sim = self._drivers.get(node)
        if sim is None:
            sim = self._drivers[node] = SimDriver(node.driver, self._shared, node.name)
            self._saved_health[node] = (node.health.up, node.health.fresh_as_of)
            _use_driver(node, sim)
        node.shared_binding = self._shared.binding
        if node.role == "replica" and not self.manager._monitor.running:
            node.health.fresh_as_of = math.inf  # it reads the primary's own data: never stale
        return sim

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        shared = self._shared
        assert shared is not None
        for node, sim in self._drivers.items():
            _use_driver(node, sim.real)
            node.shared_binding = None
            node.health.up, node.health.fresh_as_of = self._saved_health[node]
            node.expire_connections()  # connections made while a node was simulated down or lagging
        self._drivers.clear()
        binding = shared.binding
        broken = True
        try:
            if not shared.driver.is_closed(shared.conn):
                await shared.driver.execute(shared.conn, "ROLLBACK", ())
                broken = False
        finally:
            self._shared = None
            binding.pool.release(binding.pc, broken=broken)

    @property
    def shared(self) -> SharedConnection:
        if self._shared is None:
            raise ConfigurationError("the RolledBack block is not entered")
        return self._shared

    # -- simulation ----------------------------------------------------------------------

    def _is_down(self, node: Node) -> bool:
        sim = self._drivers.get(node)
        return sim is not None and sim.down

    def _replica(self, name: str) -> Node:
        node = self.manager.node(name)
        if node.role != "replica":
            raise RoutingError(f"node {name!r} is the primary, not a replica")
        return node

    def lag(self, name: str, seconds: float) -> None:
        """Make replica ``name`` lag: it replays none of the test's writes from now on.

        Its reads run on its own connections, which see only committed data (none of the
        test's), and the router sees data ``seconds`` old (and ageing), so with ``max_lag``
        below that it takes no reads. :meth:`catch_up` ends it.
        """
        if not 0 <= seconds <= 86400:
            raise ConfigurationError(f"seconds must be between 0 and 86400, got {seconds!r}")
        node = self._replica(name)
        self._install(node)
        node.shared_binding = None
        node.health.fresh_as_of = time.monotonic() - seconds

    def catch_up(self, name: str) -> None:
        """Replica ``name`` replays everything again: it joins the test's transaction."""
        self._install(self._replica(name))

    def down(self, name: str, *, detected: bool = True) -> None:
        """Take node ``name`` down: it refuses connections and its statements fail.

        ``detected=True``: the health monitor has already ejected it (a replica gets no
        reads). ``detected=False``: the moment before, when a read still lands on it, fails
        with a lost connection and is retried on another node.
        """
        node = self.manager.node(name)
        sim = self._install(node)
        dead = Binding(node, node.pool, PooledConnection(DEAD_CONNECTION, 0, 0.0), read_only=False)
        dead.depth = 1  # a transaction block on it tries a savepoint, which fails like the rest
        node.shared_binding = dead
        node.expire_connections()
        sim.down = True
        if detected:
            node.health.up = False

    def up(self, name: str) -> None:
        """Bring node ``name`` back (healthy, sharing the test's transaction again)."""
        node = self.manager.node(name)
        self._install(node).down = False
        node.shared_binding = self.shared.binding
        node.health.up = True

    async def fail_over(self, to: str | None = None) -> Node:
        """The primary goes down and replica ``to`` (default: the first one not down) is promoted.

        Writes go to the new primary from the next statement on, inside the test's
        transaction, as :meth:`Manager.replace_primary` does after a real failover.
        """
        old = self.manager.primary_node
        if to is None:
            candidates = [n for n in self.manager.replicas if n.health.up and not self._is_down(n)]
            if not candidates:
                raise RoutingError("fail_over(): no replica is up to take over")
            to = candidates[0].name
        new = self._replica(to)
        self.down(old.name)
        await self.manager.replace_primary(new.name)
        self._install(new)
        new.health.fresh_as_of = None
        logger.info("simulated failover: %s is the primary (was %s)", new.name, old.name)
        return new


def _use_driver(node: Node, driver: Driver) -> None:
    """Send ``node``'s statements and connects (all its pools') through ``driver``."""
    node.driver = driver
    for pool in node.pools():
        pool.driver = driver


def rolled_back(manager: Manager) -> RolledBack:
    """``async with rolled_back(manager) as db:`` every query of ``manager`` in the block joins
    one transaction on its primary, rolled back at the end; ``db`` simulates outages."""
    return RolledBack(manager)
