"""Per-node options: pool limits, node name and weight, and their conversion from URL text."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigurationError

# Upper bounds sit far above any sensible setting. They exist so that nothing derived from an
# option (a timer, a history length, a pool's bookkeeping) can overflow or wait for ever.
#: Most connections one node's pool may hold.
MAX_POOL_SIZE = 10_000
#: Longest wait or timeout: a day.
MAX_TIMEOUT = 86_400.0
#: Longest connection lifetime or idle time: thirty days.
MAX_AGE = 30 * 86_400.0
#: Shortest and longest time between two health checks.
MIN_CHECK_INTERVAL = 0.01
MAX_CHECK_INTERVAL = 3_600.0
#: Most consecutive checks that eject or readmit a node.
MAX_CHECK_COUNT = 1_000
#: Largest load-balancing weight.
MAX_WEIGHT = 1_000_000.0
#: Most rows per chunk or batch, and most shards worked on at once.
MAX_CHUNK = 1_000_000
MAX_CONCURRENCY = 10_000

#: Field name -> (kind, lower bound, whether the lower bound itself is allowed, upper bound).
_RULES: dict[str, tuple[str, float, bool, float]] = {
    "min_size": ("int", 0, True, MAX_POOL_SIZE),
    "max_size": ("int", 1, True, MAX_POOL_SIZE),
    "acquire_timeout": ("float", 0.0, False, MAX_TIMEOUT),
    "connect_timeout": ("float", 0.0, False, MAX_TIMEOUT),
    "max_lifetime": ("float", 0.0, False, MAX_AGE),
    "max_idle": ("float", 0.0, False, MAX_AGE),
    "ping_after_idle": ("optional_float", 0.0, True, MAX_TIMEOUT),
    "query_timeout": ("optional_float", 0.0, False, MAX_TIMEOUT),
}

#: Names of the :class:`PoolOptions` fields, in declaration order.
POOL_OPTION_NAMES: tuple[str, ...] = tuple(_RULES)

#: Every option that belongs to us rather than to the driver when given in a URL query string.
NODE_OPTION_NAMES: frozenset[str] = frozenset({"name", "weight", *POOL_OPTION_NAMES})

_INT_RE = re.compile(r"[+-]?[0-9]+")
# Stricter than float(): no "nan", "inf", "1_0" or surrounding whitespace sneaking in from a URL.
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NODE_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,63}")


def _check_field(name: str, value: object) -> int | float | None:
    """Type- and range-check one pool option value; return it normalised (times become float)."""
    kind, bound, inclusive, upper = _RULES[name]
    if kind == "optional_float" and value is None:
        return None
    # bool is an int subclass, but ``max_size=True`` is always a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind != "int" else int):
        expected = "an integer" if kind == "int" else "a number" if kind == "float" else "a number or None"
        raise ConfigurationError(f"{name} must be {expected}, got {value!r}")
    number: int | float = value
    if kind != "int":
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigurationError(f"{name} must be finite, got {value!r}")
    if number < bound or (number == bound and not inclusive) or number > upper:
        lower = f"{'>=' if inclusive else '>'} {bound:g}"
        raise ConfigurationError(f"{name} must be {lower} and <= {upper:g}, got {value!r}")
    return number


def _convert(name: str, text: str) -> int | float | None:
    """Convert URL text for pool option ``name`` to its typed value, without range checks."""
    kind = _RULES[name][0]
    if kind == "optional_float" and text.lower() == "none":
        return None
    # The digit-count cap keeps int() away from its str-length limit (ValueError, not ours).
    if kind == "int" and _INT_RE.fullmatch(text) and len(text) <= 100:
        return int(text)
    if kind != "int" and _FLOAT_RE.fullmatch(text):
        return float(text)
    expected = {"int": "an integer", "float": "a number", "optional_float": "a number or 'none'"}[kind]
    raise ConfigurationError(f"option {name!r} must be {expected}, got {text!r}")


@dataclass(frozen=True, kw_only=True)
class PoolOptions:
    """Limits of one node's connection pool; every time is in seconds."""

    min_size: int = 0
    max_size: int = 10
    #: Wait at most this long for a free connection, then raise PoolTimeout.
    acquire_timeout: float = 10.0
    #: Opening one new connection.
    connect_timeout: float = 10.0
    #: Connections older than this are closed on return (the pool adds 0-5% jitter).
    max_lifetime: float = 3600.0
    #: Idle connections above ``min_size`` unused this long are closed.
    max_idle: float = 600.0
    #: Ping a connection on checkout if it sat idle longer than this; 0 = always, None = never.
    ping_after_idle: float | None = 5.0
    #: A statement taking longer fails with QueryTimeout and its connection is discarded;
    #: None = no limit. Bounds a server that stops answering without closing the socket
    #: (the error comes at most ``_bounded.CANCEL_GRACE`` = 1 s later: the driver's grace to
    #: cancel the statement on the server).
    query_timeout: float | None = None

    def __post_init__(self) -> None:
        """Validate every field, raising ConfigurationError naming the offending option."""
        for name in POOL_OPTION_NAMES:
            object.__setattr__(self, name, _check_field(name, getattr(self, name)))
        if self.min_size > self.max_size:
            raise ConfigurationError(
                f"min_size must be <= max_size, got min_size={self.min_size}, max_size={self.max_size}"
            )

    def replace(self, **changes: Any) -> PoolOptions:
        """Return a validated copy with ``changes`` applied."""
        unknown = sorted(set(changes) - set(POOL_OPTION_NAMES))
        if unknown:
            raise ConfigurationError(f"unknown pool option {unknown[0]!r}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_strings(cls, values: Mapping[str, str], *, base: PoolOptions | None = None) -> PoolOptions:
        """Build options from URL query text on top of ``base`` (defaults if None).

        ``name`` and ``weight`` are node options but not pool options, so they are skipped;
        any other key that is not a pool option is an error.
        """
        changes: dict[str, Any] = {}
        for key, text in values.items():
            if key in ("name", "weight"):
                continue
            if key not in _RULES:
                raise ConfigurationError(f"unknown pool option {key!r}")
            changes[key] = _convert(key, text)
        return (base or cls()).replace(**changes)


def _finite_float(value: object) -> float | None:
    """``value`` as a finite float if it is a real number (not a bool) that has one, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def seconds(
    name: str,
    value: object,
    *,
    allow_none: bool = False,
    positive: bool = True,
    lower: float = 0.0,
    upper: float = MAX_TIMEOUT,
) -> float | None:
    """``value`` as a finite number of seconds in range, or None if allowed; ConfigurationError
    naming ``name`` otherwise. The range is ``(lower, upper]`` if ``positive``, else ``[lower, upper]``."""
    if value is None and allow_none:
        return None
    number = _finite_float(value)
    if number is None or (number <= lower if positive else number < lower) or number > upper:
        bound = f"{'>' if positive else '>='} {lower:g} and <= {upper:g}"
        raise ConfigurationError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return number


def count(name: str, value: object, *, upper: int = MAX_CHECK_COUNT) -> int:
    """``value`` as an integer from 1 to ``upper``; ConfigurationError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
        raise ConfigurationError(f"{name} must be an integer from 1 to {upper}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class ReplicaPolicy:
    """How replicas are watched: health checks and the freshness bound; times in seconds."""

    #: Time between two rounds of checks; None turns the background monitor off.
    health_check_interval: float | None = 1.0
    #: A check that takes longer than this failed.
    health_check_timeout: float = 2.0
    #: Consecutive failed checks that take a node out of the rotation.
    eject_after: int = 2
    #: Consecutive good checks that bring it back.
    readmit_after: int = 2
    #: Replicas whose data may be older than this get no reads; None = no bound.
    max_lag: float | None = None

    def __post_init__(self) -> None:
        interval = seconds(
            "health_check_interval",
            self.health_check_interval,
            allow_none=True,
            positive=False,
            lower=MIN_CHECK_INTERVAL,
            upper=MAX_CHECK_INTERVAL,
        )
        seconds("health_check_timeout", self.health_check_timeout)
        count("eject_after", self.eject_after)
        count("readmit_after", self.readmit_after)
        max_lag = seconds("max_lag", self.max_lag, allow_none=True)
        if max_lag is not None:
            # Freshness is only known as of the last check, so the bound must leave room for one.
            if interval is None:
                raise ConfigurationError("max_lag needs the health monitor (health_check_interval is None)")
            if max_lag <= interval:
                raise ConfigurationError(
                    f"max_lag ({max_lag:g}s) must be larger than health_check_interval ({interval:g}s)"
                )


def parse_weight(value: str | float | int) -> float:
    """Return a node's load-balancing weight as a finite float >= 0 (text is accepted too)."""
    if isinstance(value, str):
        if not _FLOAT_RE.fullmatch(value):
            raise ConfigurationError(f"weight must be a number, got {value!r}")
        number: float = float(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"weight must be a number, got {value!r}")
    else:
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf
    if not math.isfinite(number) or not 0 <= number <= MAX_WEIGHT:
        raise ConfigurationError(f"weight must be a finite number >= 0 and <= {MAX_WEIGHT:g}, got {value!r}")
    return float(number)


def validate_node_name(name: str) -> str:
    """Return ``name`` if it is 1-63 ASCII letters, digits, '-', '_' or '.'; raise otherwise."""
    if not isinstance(name, str) or not _NODE_NAME_RE.fullmatch(name):
        raise ConfigurationError(
            f"node name must be 1-63 characters from letters, digits, '-', '_' and '.', got {name!r}"
        )
    return name


def parse_node_option(name: str, text: str) -> object:
    """Convert and check one node option given as URL text, on its own (no cross-field checks).

    Lets a URL be rejected early for ``max_size=ten`` while ``min_size=20`` can still be
    paired with a larger ``max_size`` given elsewhere.
    """
    if name == "name":
        return validate_node_name(text)
    if name == "weight":
        return parse_weight(text)
    if name not in _RULES:
        raise ConfigurationError(f"unknown node option {name!r}")
    return _check_field(name, _convert(name, text))
