"""A stand-in database for models used through a manager, that explains synchronous use.

Models used with aiopeewee_dist usually have no ``Meta.database``: the manager compiles
their queries for each node. Peewee's synchronous paths (``post.author``, iterating
``user.posts``, ``User.create()``, ``instance.save()``) then failed with
``InterfaceError: Query must be bound to a database``, which does not say what to do.
The manager binds every unbound model it meets (and the models related to it) to
:data:`SYNC_GUARD`, whose only job is to raise :class:`SyncQueryError` naming the
awaitable to use instead. Models bound to a database of their own are left alone.
"""

from __future__ import annotations

from typing import Any, NoReturn

import peewee

from ._compat import model_database, related_models, set_model_database
from ._errors import SyncQueryError

__all__ = ["SYNC_GUARD", "guard_model"]

_pw: Any = peewee


def _advice(query: Any) -> str:
    model = getattr(query, "model", None)
    name = model.__name__ if model is not None else "Model"
    if isinstance(query, _pw.Insert):
        return (
            f"to insert, use `await manager.create({name}, ...)` (instead of {name}.create()) or "
            f"`await manager.save(instance)` (instead of instance.save())"
        )
    if isinstance(query, _pw.Update):
        return "to save changes, use `await manager.save(instance)` (instead of instance.save())"
    if isinstance(query, _pw.Delete):
        return "to delete, use `await manager.delete_instance(instance)` or `await manager.execute(query)`"
    return (
        "a lazy relation (`post.author`, `list(user.posts)`) or a query run without await: load it "
        "with `await manager.related(instance, 'author')`, `await manager.prefetch(query, Related)` "
        "or `await manager.execute(query)`"
    )


class _SyncGuard(peewee.Database):
    """Compiles like a generic database; refuses to run anything, saying what to do."""

    def _refuse(self, query: Any = None) -> NoReturn:
        raise SyncQueryError(
            "this model is used through an aiopeewee_dist Manager, which runs queries only when "
            f"awaited; Peewee tried to run one synchronously: {_advice(query)}"
        )

    def execute(self, query: Any, **context_options: Any) -> NoReturn:
        self._refuse(query)

    def execute_sql(self, sql: str, params: Any = None) -> NoReturn:
        self._refuse()

    def connect(self, reuse_if_open: bool = False) -> NoReturn:
        self._refuse()

    def atomic(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse()

    def __repr__(self) -> str:
        return "<aiopeewee_dist sync guard>"


#: The stand-in bound to unbound models the manager uses.
SYNC_GUARD = _SyncGuard(None)
_guarded: set[Any] = set()


def guard_model(model: Any) -> None:
    """Bind ``model`` and the models related to it to :data:`SYNC_GUARD` if unbound (once)."""
    if model in _guarded:
        return
    pending = [model]
    while pending:
        current = pending.pop()
        if current in _guarded or not isinstance(current, type) or not issubclass(current, peewee.Model):
            continue
        _guarded.add(current)
        if model_database(current) is None:
            set_model_database(current, SYNC_GUARD)
        pending.extend(related_models(current))
