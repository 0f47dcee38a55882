"""The one place that touches private names of peewee and peewee-async.

peewee-async 2.1 sends its public transaction API through private methods:
``aio_atomic()``/``aio_transaction()`` call ``AioDatabase._aio_atomic`` and
``aio_begin()``/``aio_savepoint()`` call ``_aio_begin``; and its
``testing.TransactionTestCase`` disables transactions inside a test by patching exactly
those two names on the database object. A database that must behave like peewee-async's
therefore overrides those names, and nothing else may: :class:`PeeweeAsyncHooks` does, and
forwards to public-named methods the database class implements. Likewise peewee's
synchronous connection (``allow_sync()``) is opened by the private ``Database._connect``,
and the flag ``allow_sync()`` sets is the private ``AioDatabase._allow_sync``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, cast

__all__ = ["PeeweeAsyncHooks"]


class PeeweeAsyncHooks:
    """Mixin placed before a peewee-async database class in the bases (see the module doc)."""

    # -- what the database class implements -----------------------------------------------

    def atomic_block(self, *, savepoint: bool) -> AbstractAsyncContextManager[None]:
        """``aio_atomic()`` (``savepoint=True``: nests) or ``aio_transaction()`` (refuses to)."""
        raise NotImplementedError

    async def begin_block(self, *, savepoint: bool) -> Any:
        """``aio_begin()`` / ``aio_savepoint()``: a started ``peewee_async.Transaction``."""
        raise NotImplementedError

    def sync_connect_params(self) -> dict[str, Any]:
        """Keyword arguments for peewee's synchronous ``connect`` (credentials included)."""
        raise NotImplementedError

    def sync_target(self) -> str:
        """What the synchronous connection connects to, for the refusal message."""
        raise NotImplementedError

    # -- the private names peewee-async and peewee call -----------------------------------

    def _aio_atomic(self, use_savepoint: bool = False) -> AbstractAsyncContextManager[None]:
        return self.atomic_block(savepoint=use_savepoint)

    async def _aio_begin(self, use_savepoint: bool = False) -> Any:
        return await self.begin_block(savepoint=use_savepoint)

    @property
    def sync_allowed(self) -> bool:
        """Whether ``allow_sync()`` (or ``set_allow_sync(True)``) lets synchronous queries run."""
        return bool(cast(Any, self)._allow_sync)

    def execute_sql(self, *args: Any, **kwargs: Any) -> Any:
        # peewee-async checks the flag with ``assert``, which ``python -O`` removes: a
        # synchronous query would then block the event loop silently. Same exception type
        # and advice, kept under -O.
        if not self.sync_allowed:
            raise AssertionError(
                f"Error, sync query is not allowed on {self.sync_target()}! Call the `.set_allow_sync()` "
                "or use the `.allow_sync()` context manager, or await the query instead."
            )
        return cast(Any, super()).execute_sql(*args, **kwargs)

    def _connect(self) -> Any:
        # peewee's own _connect for the dialect (the driver, autocommit, encodings, hstore), given
        # the node's credentials only for the call: the database object does not keep them.
        database = cast(Any, self)
        kept = database.connect_params
        database.connect_params = self.sync_connect_params()
        try:
            return cast(Any, super())._connect()
        finally:
            database.connect_params = kept
