"""Names removed from the public API, kept for one release with a ``DeprecationWarning``."""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["ManagerDeprecations", "module_attribute", "warn"]

#: ``aiopeewee_dist.<name>`` that left ``__all__``: where it lives now.
_MOVED = {
    "Node": ("aiopeewee_dist._node", "Node", "manager.node(name) returns one; pass node names to node="),
    "DatabaseURL": ("aiopeewee_dist._url", "DatabaseURL", "pass URLs as strings"),
    "parse_url": ("aiopeewee_dist._url", "parse_url", "pass URLs as strings"),
}


def warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; {new}",
        DeprecationWarning,
        stacklevel=3,
    )


def module_attribute(name: str) -> Any:
    """``aiopeewee_dist.<name>`` for a name that left the package's public API."""
    try:
        module_name, attribute, advice = _MOVED[name]
    except KeyError:
        raise AttributeError(f"module 'aiopeewee_dist' has no attribute {name!r}") from None
    warnings.warn(
        f"aiopeewee_dist.{name} is no longer public and will be removed in the next release; {advice}",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(module_name), attribute)


class _Renamed(Protocol):
    """What the deprecated names forward to."""

    def stats(self) -> dict[str, Any]: ...

    async def replace_primary(self, target: str) -> Node: ...


class ManagerDeprecations:
    """Manager methods renamed or merged into another (mixed into Manager)."""

    def get_stats(self: _Renamed) -> dict[str, Any]:
        """Deprecated: use ``stats()``."""
        warn("Manager.get_stats()", "use Manager.stats()")
        return self.stats()

    async def promote(self: _Renamed, name: str) -> Node:
        """Deprecated: use ``replace_primary(name)``, which also takes a URL."""
        warn("Manager.promote()", "use Manager.replace_primary(name)")
        return await self.replace_primary(name)
