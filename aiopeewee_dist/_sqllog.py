"""The ``aiopeewee_dist.sql`` logger: every statement at DEBUG, with node, duration and rows.

Parameters are replaced by their count unless the manager was built with
``log_params=True`` (they may hold personal data or secrets). The statement path pays one
``isEnabledFor`` call when DEBUG is off (Logger caches the answer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from ._drivers import Result

__all__ = ["SQL_LOGGER", "log_statement"]

SQL_LOGGER = logging.getLogger("aiopeewee_dist.sql")
_MAX_PARAM = 200


def _params(params: Sequence[Any], log_params: bool) -> str:
    if not params:
        return "[]"
    if not log_params:
        return f"[{len(params)} redacted]"
    text = repr(list(params))
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 3] + "..."


def log_statement(
    node: str,
    sql: str,
    params: Sequence[Any],
    start: float,
    result: Result | None,
    error: BaseException | None,
    log_params: bool,
) -> None:
    """Log one statement begun at ``start`` (``time.perf_counter()``) that gave ``result`` or
    raised ``error``. Call only when ``SQL_LOGGER.isEnabledFor(logging.DEBUG)``."""
    elapsed = time.perf_counter() - start
    if error is not None:
        outcome = f"error {type(error).__name__}"
    else:
        rows = (
            -1 if result is None else len(result.rows) if result.description is not None else result.rowcount
        )
        outcome = f"rows={rows}"
    SQL_LOGGER.debug(
        "node=%s %.3fms %s: %s params=%s",
        node,
        elapsed * 1000,
        outcome,
        " ".join(sql.split()),
        _params(params, log_params),
    )
