"""Running a migrations folder on a Manager's primary, or on every shard's primary.

Nothing runs on replicas: they replicate the DDL. Per target database, the run holds the
deploy lock (:mod:`._lock`) on one pinned connection, creates the history table if needed,
then applies each pending migration and records it in the same transaction on PostgreSQL
and SQLite (whose DDL is transactional); MySQL commits DDL as it goes, so a migration that
fails there may leave part of its changes, and is not recorded.

With shards, every shard's lock is taken first (in shard order, so two deploys cannot
deadlock), then migrations are applied one at a time on every shard before the next: a
migration that fails on one shard stops the run, and the error says which shards are at
which version.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import ConfigurationError
from .._manager import Manager
from .._node import Node
from ..sharding import ShardedManager
from ._bridge import Statement, run_up
from ._errors import MigrationError
from ._folder import Migration, load_folder
from ._history import History, validate_table
from ._lock import deploy_lock

__all__ = ["Migrations", "Planned", "Status"]

logger = logging.getLogger("aiopeewee_dist.migrate")


@dataclass
class Status:
    """One target's state: applied migrations, pending ones, applied ones no longer in the folder."""

    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def version(self) -> str | None:
        """The last applied migration (None before the first)."""
        return self.applied[-1] if self.applied else None


def _targets(manager: Manager | ShardedManager) -> dict[str, Node]:
    if isinstance(manager, ShardedManager):
        return {name: shard.primary_node for name, shard in manager.managers.items()}
    if isinstance(manager, Manager):
        return {"primary": manager.primary_node}
    raise ConfigurationError(f"expected a Manager or a ShardedManager, got {type(manager).__name__}")


class Migrations:
    """A folder of migrations written with Peewee's ``playhouse.migrate``.

    ::

        # migrations/0001_add_stars.py
        import peewee
        from playhouse.migrate import migrate

        def up(migrator):
            migrate(migrator.add_column("note", "stars", peewee.IntegerField(default=0)))

        await Migrations("migrations").up(manager)  # a Manager or a ShardedManager

    ``table``: the history table; ``lock_timeout`` (s): how long to wait for another deploy.
    """

    def __init__(
        self, folder: str | Path, *, table: str = "aiopeewee_migrations", lock_timeout: float = 60.0
    ) -> None:
        self.folder = Path(folder)
        self.table = validate_table(table)
        if isinstance(lock_timeout, bool) or not 0 <= lock_timeout <= 3600:
            raise ConfigurationError(f"lock_timeout must be between 0 and 3600 seconds, got {lock_timeout!r}")
        self.lock_timeout = float(lock_timeout)

    def load(self) -> list[Migration]:
        return load_folder(self.folder)

    async def status(self, manager: Manager | ShardedManager) -> dict[str, Status]:
        """``{target: Status}``: ``"primary"``, or one entry per shard."""
        migrations = self.load()
        result = {}
        for name, node in _targets(manager).items():
            applied = await History(node, self.table).applied(missing_ok=True)
            result[name] = _status(migrations, applied)
        return result

    @asynccontextmanager
    async def _locked(self, manager: Manager | ShardedManager) -> AsyncIterator[dict[str, History]]:
        async with AsyncExitStack() as stack:
            histories = {}
            for name, node in _targets(manager).items():
                await stack.enter_async_context(node.connection(write=True))
                await stack.enter_async_context(deploy_lock(node, self.lock_timeout))
                history = histories[name] = History(node, self.table)
                await history.create()
            yield histories

    async def up(self, manager: Manager | ShardedManager) -> dict[str, list[str]]:
        """Apply every pending migration; ``{target: names applied now}``.

        Raises :class:`MigrationError` (with ``versions`` and ``failed``) if one fails.
        """
        migrations = self.load()
        async with self._locked(manager) as histories:
            applied = {name: await history.applied() for name, history in histories.items()}
            done: dict[str, list[str]] = {name: [] for name in histories}
            for migration in migrations:
                for target, history in histories.items():
                    if migration.name in applied[target]:
                        continue
                    try:
                        await _apply(history, migration)
                    except Exception as exc:
                        versions = {t: _version(migrations, applied[t]) for t in histories}
                        raise MigrationError(
                            f"migration {migration.name} failed on {target}: {exc}"
                            f" (now at: {_describe(versions)}; later targets and migrations were not run)",
                            versions=versions,
                            failed=(migration.name, target),
                        ) from exc
                    applied[target].append(migration.name)
                    done[target].append(migration.name)
                    logger.info("migration %s applied on %s", migration.name, target)
        return done

    async def plan(self, manager: Manager | ShardedManager) -> dict[str, list[Planned]]:
        """Dry run: ``{target: [Planned(migration, statements, incomplete)]}`` for what is pending.

        Nothing is changed. On PostgreSQL and SQLite the pending migrations really run, in
        one transaction that is rolled back, so the SQL is exact (and the run briefly takes
        the locks the migrations take). MySQL cannot roll DDL back: there statements are only
        recorded, and introspection sees the schema as it is now, so a migration that
        inspects what an earlier step would create stops the plan (``incomplete`` says why).
        """
        migrations = self.load()
        plans: dict[str, list[Planned]] = {}
        for target, node in _targets(manager).items():
            applied = set(await History(node, self.table).applied(missing_ok=True))
            pending = [m for m in migrations if m.name not in applied]
            async with node.connection(write=True):
                plans[target] = await _plan_on(node, target, pending)
        return plans


@dataclass
class Planned:
    """One pending migration of a dry run: its statements, as ``(sql, params)``."""

    name: str
    statements: list[Statement]
    #: Why the plan stops here (MySQL only: introspection of a schema not yet changed).
    incomplete: str | None = None


async def _plan_on(node: Node, target: str, pending: list[Migration]) -> list[Planned]:
    transactional = node.dialect != "mysql"
    planned: list[Planned] = []
    if transactional:
        await node.run_sql("BEGIN", write=False)
    try:
        for migration in pending:
            entry = Planned(migration.name, [])
            planned.append(entry)
            try:
                await run_up(node, migration.up, dry_run=not transactional, recorded=entry.statements)
            except Exception as exc:
                if transactional:
                    message = f"dry run: migration {migration.name} fails on {target}: {exc}"
                    raise MigrationError(message) from exc
                entry.incomplete = f"cannot plan further without applying: {exc}"
                break
    finally:
        if transactional:
            with contextlib.suppress(Exception):
                await node.run_sql("ROLLBACK", write=False)
    return planned


def _status(migrations: list[Migration], applied: list[str]) -> Status:
    names = {m.name for m in migrations}
    done = set(applied)
    return Status(
        applied=[name for name in applied if name in names],
        pending=[m.name for m in migrations if m.name not in done],
        unknown=[name for name in applied if name not in names],
    )


def _version(migrations: list[Migration], applied: list[str]) -> str | None:
    done = set(applied)
    known = [m.name for m in migrations if m.name in done]
    return known[-1] if known else None


def _describe(versions: dict[str, str | None]) -> str:
    return ", ".join(f"{target}={version or 'none'}" for target, version in versions.items())


async def _apply(history: History, migration: Migration) -> None:
    node = history.node
    dialect = node.dialect
    if dialect == "postgresql":
        begin, commit, rollback = "BEGIN", "COMMIT", "ROLLBACK"
    elif dialect == "sqlite":  # inside the run's BEGIN IMMEDIATE (the deploy lock)
        begin, commit = "SAVEPOINT aiopd_migration", "RELEASE SAVEPOINT aiopd_migration"
        rollback = "ROLLBACK TO SAVEPOINT aiopd_migration"
    else:  # MySQL commits DDL implicitly: no transaction to speak of
        await run_up(node, migration.up)
        await history.record(migration.name)
        return
    await node.run_sql(begin, write=False)
    try:
        await run_up(node, migration.up)
        await history.record(migration.name)
    except BaseException:
        with contextlib.suppress(Exception):  # a broken connection rolls back by itself
            await node.run_sql(rollback, write=False)
            if dialect == "sqlite":
                await node.run_sql(commit, write=False)
        raise
    await node.run_sql(commit, write=False)
