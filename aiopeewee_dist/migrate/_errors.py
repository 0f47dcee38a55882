"""Errors of the migration runner."""

from __future__ import annotations

from .._errors import AioPeeweeDistError

__all__ = ["MigrationError", "MigrationLockTimeout"]


class MigrationError(AioPeeweeDistError):
    """A migration failed (or the folder is unusable).

    ``versions``: ``{target: last applied migration or None}`` after the failure, for every
    target (``"primary"``, or each shard's name), so a failed sharded deploy says which
    shards are at which version. ``failed``: the migration's name and the target it failed on.
    """

    def __init__(
        self,
        message: str,
        *,
        versions: dict[str, str | None] | None = None,
        failed: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.versions = versions or {}
        self.failed = failed


class MigrationLockTimeout(MigrationError):
    """Another deploy held the migration lock for longer than ``lock_timeout``."""
