"""Schema migrations written with Peewee's ``playhouse.migrate``, run asynchronously.

See :class:`Migrations` and ``aiopeewee-dist migrate`` (docs/migrations.md).
"""

from __future__ import annotations

from ._errors import MigrationError, MigrationLockTimeout
from ._folder import Migration
from ._runner import Migrations, Planned, Status

__all__ = ["Migration", "MigrationError", "MigrationLockTimeout", "Migrations", "Planned", "Status"]
