"""A migrations folder: ``NNNN_description.py`` files, each with ``def up(migrator)``."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import MigrationError

__all__ = ["Migration", "load_folder"]

_NAME_RE = re.compile(r"^[0-9]+_[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class Migration:
    """One migration file: ``up(migrator)`` runs playhouse.migrate operations."""

    name: str
    path: Path
    up: Callable[[Any], Any]


def _load(path: Path) -> Migration:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"aiopeewee_migration_{digest}_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise MigrationError(f"cannot load migration {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise MigrationError(f"migration {path.name} failed to import: {exc}") from exc
    up = getattr(module, "up", None)
    if not callable(up):
        raise MigrationError(f"migration {path.name} defines no up(migrator) function")
    return Migration(path.stem, path, up)


def load_folder(folder: str | Path) -> list[Migration]:
    """The folder's migrations, in name order; a clear error for anything unusable."""
    root = Path(folder)
    if not root.is_dir():
        raise MigrationError(f"migrations folder {str(root)!r} does not exist (or is not a folder)")
    paths = [path for path in root.glob("*.py") if not path.name.startswith("_")]
    for path in paths:
        if not _NAME_RE.match(path.stem):
            raise MigrationError(
                f"migration file {path.name!r} must be named NNNN_description.py"
                " (digits, an underscore, then letters, digits or _), so the order is clear"
            )
    # By number first: 10_x comes after 9_x whatever the zero padding.
    paths.sort(key=lambda path: (int(path.stem.split("_", 1)[0]), path.stem))
    return [_load(path) for path in paths]
