"""What the core tests share besides fixtures: the model and the quiet manager options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peewee

from aiopeewee_dist import Manager

# Managers here are deterministic unless a test asks for more: no monitor, no read-your-writes.
QUIET: dict[str, Any] = {"health_check_interval": None, "read_your_writes": None}


class Item(peewee.Model):
    name = peewee.CharField(unique=True)
    qty = peewee.IntegerField(default=0)

    class Meta:
        table_name = "core_item"


MakeManager = Callable[..., Manager]
