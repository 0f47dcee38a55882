"""``CREATE TABLE`` / ``DROP TABLE`` for models, compiled for one node's dialect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import peewee

from ._compat import create_indexes, create_sequence, create_table, drop_table
from ._guard import guard_model
from ._node import Node

__all__ = ["create_tables", "drop_tables"]

# peewee's type stubs leave out SchemaManager and sort_models.
_pw: Any = peewee


async def create_tables(node: Node, models: Sequence[type[peewee.Model]], *, safe: bool = True) -> None:
    """Tables (with indexes and sequences) for ``models`` on ``node``, dependencies first."""
    database = node.database
    for model in models:
        guard_model(model)  # a model's first use may be its table: sync calls then explain too
    for model in _pw.sort_models(models):
        schema = _pw.SchemaManager(model, database=database)
        # No "IF NOT EXISTS" for indexes in this dialect: skip tables already there.
        if (
            safe
            and not database.safe_create_index
            and model._meta.table_name in await database.aio_get_tables(schema=model._meta.schema)
        ):
            continue
        if database.sequences:
            for field in model._meta.sorted_fields:
                if field.sequence:
                    await node.execute(create_sequence(schema, field))
        await node.execute(create_table(schema, safe=safe))
        for index in create_indexes(schema, safe=safe):
            await node.execute(index)


async def drop_tables(node: Node, models: Sequence[type[peewee.Model]], *, safe: bool = True) -> None:
    """``DROP TABLE`` for each model on ``node``, dependents first."""
    for model in reversed(_pw.sort_models(models)):
        schema = _pw.SchemaManager(model, database=node.database)
        await node.execute(drop_table(schema, safe=safe))
