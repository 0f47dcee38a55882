"""The history table: one row per migration applied to a database."""

from __future__ import annotations

import datetime
import re

import peewee

from .._errors import ConfigurationError
from .._node import Node

__all__ = ["History", "validate_table"]

_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_table(name: str) -> str:
    if not isinstance(name, str) or not _TABLE_RE.match(name):
        raise ConfigurationError(
            f"table must be a plain SQL name (letters, digits, _; at most 63), got {name!r}"
        )
    return name


class History:
    """Reads and writes the history table of one node's database (on its pinned connection)."""

    def __init__(self, node: Node, table: str) -> None:
        self.node = node
        self.table = table
        quote = node.database.quote  # the dialect's quote characters, e.g. '""' or '``'
        self._quoted = f"{quote[0]}{table}{quote[1]}"  # validate_table(): nothing to escape
        self._param = node.database.param

    async def create(self) -> None:
        await self.node.run_sql(
            f"CREATE TABLE IF NOT EXISTS {self._quoted} (name VARCHAR(255) NOT NULL PRIMARY KEY,"
            " applied_at VARCHAR(40) NOT NULL)"
        )

    async def applied(self, *, missing_ok: bool = False) -> list[str]:
        """Names of the applied migrations, in the order they were applied."""
        try:
            result = await self.node.run_sql(
                f"SELECT name FROM {self._quoted} ORDER BY applied_at, name", write=False
            )
        except peewee.DatabaseError:
            if missing_ok:  # status of a database never migrated: no table yet
                return []
            raise
        return [row[0] for row in result.rows]

    async def record(self, name: str) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        await self.node.run_sql(
            f"INSERT INTO {self._quoted} (name, applied_at) VALUES ({self._param}, {self._param})",
            (name, now),
        )
