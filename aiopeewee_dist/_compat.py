"""The one place that reaches into peewee's private attributes (see docs/architecture.md)."""

from __future__ import annotations

from typing import Any

__all__ = ["model_database", "related_models", "set_model_database"]


def model_database(model: Any) -> Any:
    """The database a model class is bound to (``Meta.database``; None when unbound)."""
    return model._meta.database


def set_model_database(model: Any, database: Any) -> None:
    """Bind one model class (only it, not its relations) to ``database``, without running the
    fields' database hooks: they configured themselves for "no database" (a BlobField's bytes
    type, a JSONField's helpers) and must stay so for a stand-in that is no real database."""
    meta = model._meta
    hooks, meta._db_hooks = meta._db_hooks, []
    try:
        meta.set_database(database)
    finally:
        meta._db_hooks = hooks


def related_models(model: Any) -> list[Any]:
    """The models a model points at (foreign keys) and that point at it (back-references)."""
    meta = model._meta
    return [*meta.refs.values(), *meta.backrefs.values()]
