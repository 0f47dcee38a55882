"""Tests of aiopeewee_dist._options: PoolOptions, node names, weights."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiopeewee_dist._errors import ConfigurationError
from aiopeewee_dist._options import (
    NODE_OPTION_NAMES,
    POOL_OPTION_NAMES,
    PoolOptions,
    parse_node_option,
    parse_weight,
    validate_node_name,
)


def test_defaults() -> None:
    options = PoolOptions()
    assert dataclasses.asdict(options) == {
        "min_size": 0,
        "max_size": 10,
        "acquire_timeout": 10.0,
        "connect_timeout": 10.0,
        "max_lifetime": 3600.0,
        "max_idle": 600.0,
        "ping_after_idle": 5.0,
        "query_timeout": None,
    }
    assert set(POOL_OPTION_NAMES) == {f.name for f in dataclasses.fields(PoolOptions)}
    assert {*POOL_OPTION_NAMES, "name", "weight"} == NODE_OPTION_NAMES


def test_times_become_float_and_edge_values_are_accepted() -> None:
    options = PoolOptions(min_size=5, max_size=5, acquire_timeout=1, ping_after_idle=0)
    assert isinstance(options.acquire_timeout, float) and options.acquire_timeout == 1.0
    assert options.ping_after_idle == 0.0
    assert PoolOptions(ping_after_idle=None).ping_after_idle is None
    assert PoolOptions(max_size=1).max_size == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_size": 0}, r"^max_size must be >= 1 and <= 10000, got 0$"),
        ({"min_size": -1}, r"^min_size must be >= 0 and <= 10000, got -1$"),
        ({"min_size": 11}, r"^min_size must be <= max_size, got min_size=11, max_size=10$"),
        ({"max_size": True}, r"^max_size must be an integer, got True$"),
        ({"max_size": 2.0}, r"^max_size must be an integer, got 2.0$"),
        ({"min_size": "1"}, r"^min_size must be an integer, got '1'$"),
        ({"acquire_timeout": 0}, r"^acquire_timeout must be > 0 and <= 86400, got 0$"),
        ({"connect_timeout": -1.5}, r"^connect_timeout must be > 0 and <= 86400, got -1.5$"),
        ({"max_lifetime": 0.0}, r"^max_lifetime must be > 0"),
        ({"max_idle": math.inf}, r"^max_idle must be finite, got inf$"),
        ({"max_idle": math.nan}, r"^max_idle must be finite, got nan$"),
        ({"acquire_timeout": 10**400}, r"^acquire_timeout must be finite"),
        ({"acquire_timeout": None}, r"^acquire_timeout must be a number, got None$"),
        ({"acquire_timeout": False}, r"^acquire_timeout must be a number, got False$"),
        ({"ping_after_idle": -1}, r"^ping_after_idle must be >= 0 and <= 86400, got -1$"),
        ({"ping_after_idle": "5"}, r"^ping_after_idle must be a number or None, got '5'$"),
    ],
)
def test_invalid_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PoolOptions(**changes)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=message):
        PoolOptions().replace(**changes)


def test_replace() -> None:
    base = PoolOptions(max_size=4)
    assert base.replace(min_size=2) == PoolOptions(min_size=2, max_size=4)
    assert base.replace() == base
    with pytest.raises(ConfigurationError, match="unknown pool option 'max_sise'"):
        base.replace(max_sise=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.max_size = 3  # type: ignore[misc]


def test_from_strings() -> None:
    options = PoolOptions.from_strings(
        {
            "min_size": "2",
            "max_size": "+20",
            "acquire_timeout": "2.5",
            "connect_timeout": "1e1",
            "max_lifetime": "60",
            "max_idle": ".5",
            "ping_after_idle": "None",
            "name": "primary",
            "weight": "3",
        }
    )
    assert options == PoolOptions(
        min_size=2,
        max_size=20,
        acquire_timeout=2.5,
        connect_timeout=10.0,
        max_lifetime=60.0,
        max_idle=0.5,
        ping_after_idle=None,
    )
    base = PoolOptions(max_size=50)
    assert PoolOptions.from_strings({"min_size": "20"}, base=base) == PoolOptions(min_size=20, max_size=50)
    assert PoolOptions.from_strings({}) == PoolOptions()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_size": "ten"}, r"^option 'max_size' must be an integer, got 'ten'$"),
        ({"max_size": "1.0"}, r"^option 'max_size' must be an integer, got '1.0'$"),
        ({"max_size": " 3"}, r"^option 'max_size' must be an integer, got ' 3'$"),
        ({"max_size": "1_000"}, r"^option 'max_size' must be an integer"),
        ({"max_size": "9" * 5000}, r"^option 'max_size' must be an integer"),
        ({"acquire_timeout": "nan"}, r"^option 'acquire_timeout' must be a number, got 'nan'$"),
        ({"acquire_timeout": "inf"}, r"^option 'acquire_timeout' must be a number"),
        ({"acquire_timeout": ""}, r"^option 'acquire_timeout' must be a number, got ''$"),
        ({"acquire_timeout": "1e999"}, r"^acquire_timeout must be finite"),
        ({"ping_after_idle": "never"}, r"^option 'ping_after_idle' must be a number or 'none'"),
        ({"max_size": "0"}, r"^max_size must be >= 1 and <= 10000, got 0$"),
        ({"min_size": "11"}, r"^min_size must be <= max_size"),
        ({"bogus": "1"}, r"^unknown pool option 'bogus'$"),
    ],
)
def test_from_strings_errors(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PoolOptions.from_strings(values)


@pytest.mark.parametrize(
    ("value", "expected"), [("2.5", 2.5), ("0", 0.0), (3, 3.0), (0.25, 0.25), ("1e2", 100.0)]
)
def test_parse_weight(value: str | float, expected: float) -> None:
    assert parse_weight(value) == expected
    assert isinstance(parse_weight(value), float)


@pytest.mark.parametrize(
    "value", ["-1", -0.5, "heavy", "", "nan", math.inf, math.nan, True, None, "1e999", 10**400]
)
def test_parse_weight_errors(value: object) -> None:
    with pytest.raises(ConfigurationError, match=r"^weight must be"):
        parse_weight(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["primary", "replica-1", "eu_west.2", "a", "x" * 63, "0"])
def test_valid_node_names(name: str) -> None:
    assert validate_node_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 64, "has space", "caf\u00e9", "a/b", "a\n", "a:b", None, 3])
def test_invalid_node_names(name: object) -> None:
    with pytest.raises(ConfigurationError, match=r"^node name must be 1-63 characters"):
        validate_node_name(name)  # type: ignore[arg-type]


def test_parse_node_option() -> None:
    assert parse_node_option("name", "r1") == "r1"
    assert parse_node_option("weight", "2") == 2.0
    assert parse_node_option("max_size", "3") == 3
    assert parse_node_option("ping_after_idle", "NONE") is None
    # No cross-field checks: min_size=50 is fine until combined with a smaller max_size.
    assert parse_node_option("min_size", "50") == 50
    with pytest.raises(ConfigurationError, match=r"^unknown node option 'colour'$"):
        parse_node_option("colour", "red")
    with pytest.raises(ConfigurationError, match=r"^max_idle must be > 0 and <= 2.592e\+06, got 0.0$"):
        parse_node_option("max_idle", "0")


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.integers(min_value=-2, max_value=20),
    st.floats(min_value=-1, max_value=100),
)


@given(st.dictionaries(st.sampled_from(POOL_OPTION_NAMES), _ANY_VALUE))
def test_random_values_construct_or_name_the_field(changes: dict[str, object]) -> None:
    try:
        options = PoolOptions(**changes)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        # The message must start with the field at fault (min_size for the cross-field check).
        field = str(exc).split(" ", 1)[0]
        assert field in changes or field == "min_size", str(exc)
        return
    assert 0 <= options.min_size <= options.max_size
    for name in POOL_OPTION_NAMES[2:]:
        value = getattr(options, name)
        assert value is None or (isinstance(value, float) and math.isfinite(value))


@given(
    st.dictionaries(
        st.sampled_from(POOL_OPTION_NAMES), st.text(max_size=8) | st.from_regex(r"-?[0-9.e]{1,6}")
    )
)
def test_random_strings_construct_or_name_the_key(values: dict[str, str]) -> None:
    try:
        PoolOptions.from_strings(values)
    except ConfigurationError as exc:
        message = str(exc)
        assert any(name in message for name in values), message
