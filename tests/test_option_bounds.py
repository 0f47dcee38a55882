"""Every numeric option has a lower and an upper bound, checked at construction.

Each bound is probed on both sides: the extreme allowed value builds a Manager, one step past it
raises ConfigurationError naming the option (never OverflowError or a driver error later).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from aiopeewee_dist import ConfigurationError, Manager
from aiopeewee_dist._options import (
    MAX_AGE,
    MAX_CHECK_COUNT,
    MAX_CHECK_INTERVAL,
    MAX_CHUNK,
    MAX_POOL_SIZE,
    MAX_TIMEOUT,
    MAX_WEIGHT,
    MIN_CHECK_INTERVAL,
)

URL = "sqlite:///bounds.db"

#: option -> (smallest allowed, largest allowed, a value just below, a value just above)
BOUNDS: dict[str, tuple[Any, Any, Any, Any]] = {
    "min_size": (0, MAX_POOL_SIZE, -1, MAX_POOL_SIZE + 1),
    "max_size": (1, MAX_POOL_SIZE, 0, MAX_POOL_SIZE + 1),
    "acquire_timeout": (1e-9, MAX_TIMEOUT, 0.0, MAX_TIMEOUT * 1.001),
    "connect_timeout": (1e-9, MAX_TIMEOUT, 0.0, MAX_TIMEOUT * 1.001),
    "max_lifetime": (1e-9, MAX_AGE, 0.0, MAX_AGE * 1.001),
    "max_idle": (1e-9, MAX_AGE, 0.0, MAX_AGE * 1.001),
    "ping_after_idle": (0.0, MAX_TIMEOUT, -1e-9, MAX_TIMEOUT * 1.001),
    "query_timeout": (1e-9, MAX_TIMEOUT, 0.0, MAX_TIMEOUT * 1.001),
    "health_check_interval": (MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL, MIN_CHECK_INTERVAL / 2, 3601.0),
    "health_check_timeout": (1e-9, MAX_TIMEOUT, 0.0, MAX_TIMEOUT * 1.001),
    "eject_after": (1, MAX_CHECK_COUNT, 0, MAX_CHECK_COUNT + 1),
    "readmit_after": (1, MAX_CHECK_COUNT, 0, MAX_CHECK_COUNT + 1),
    "max_lag": (1.0 + 1e-9, MAX_TIMEOUT, 1.0, MAX_TIMEOUT * 1.001),
    "sticky_seconds": (0.0, MAX_TIMEOUT, -1e-9, MAX_TIMEOUT * 1.001),
    "causal_wait": (0.0, MAX_TIMEOUT, -1e-9, MAX_TIMEOUT * 1.001),
}


def _manager(name: str, value: Any) -> Manager:
    options: dict[str, Any] = {name: value}
    if name == "max_lag":
        options["health_check_interval"] = 1.0
    if name == "min_size":
        options["max_size"] = MAX_POOL_SIZE
    return Manager(URL, **options)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_extremes_inside_the_bounds_are_accepted(name: str) -> None:
    lowest, highest, _, _ = BOUNDS[name]
    for value in (lowest, highest):
        _manager(name, value)


@pytest.mark.parametrize("name", sorted(BOUNDS))
@pytest.mark.parametrize("side", ["below", "above"])
def test_one_step_outside_a_bound_names_the_option(name: str, side: str) -> None:
    _, _, below, above = BOUNDS[name]
    with pytest.raises(ConfigurationError, match=rf"\b{name}\b"):
        _manager(name, below if side == "below" else above)


@pytest.mark.parametrize("value", [1.3e-173, 5e-324, 0.001])
def test_a_tiny_health_check_interval_is_a_configuration_error(value: float) -> None:
    # Found by the bad-input suite: 1.3e-173 overflowed the history sizing with OverflowError.
    with pytest.raises(ConfigurationError, match=r"health_check_interval .*>= 0\.01"):
        Manager(URL, health_check_interval=value)


@pytest.mark.parametrize(
    ("query", "name"),
    [
        (f"max_size={MAX_POOL_SIZE + 1}", "max_size"),
        (f"acquire_timeout={MAX_TIMEOUT * 2:g}", "acquire_timeout"),
        (f"weight={MAX_WEIGHT * 2:g}", "weight"),
        ("weight=1e400", "weight"),
    ],
)
def test_url_options_have_the_same_upper_bounds(query: str, name: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"\b{name}\b"):
        Manager(f"{URL}?{query}")


def test_weight_bounds_at_runtime() -> None:
    manager = Manager(URL, ["sqlite:///bounds.db?name=r"])
    manager.set_weight("r", MAX_WEIGHT)
    for bad in (-1.0, MAX_WEIGHT * 2, math.inf):
        with pytest.raises(ConfigurationError, match="weight"):
            manager.set_weight("r", bad)


@pytest.mark.parametrize("chunk_size", [0, MAX_CHUNK + 1, True, 2.0])
def test_iterate_chunk_size_is_bounded(chunk_size: Any) -> None:
    manager = Manager(URL)
    with pytest.raises(ConfigurationError, match="chunk_size"):
        manager.iterate("SELECT 1", chunk_size=chunk_size)
