"""Globally unique, time-ordered 64-bit ids made without coordination (a Snowflake layout).

Sharded tables cannot use a per-database sequence for primary keys: each shard would hand
out the same numbers. An :class:`IdGenerator` makes ids in the application instead::

    bit 63      62 ............. 22   21 ...... 12   11 ....... 0
     0        | ms since epoch (41) | worker (10)  | sequence (12) |

- 41 bits of milliseconds since a custom epoch (default 2024-01-01 UTC): about 69 years;
- 10 bits of worker id (0-1023): every process that makes ids needs its own;
- 12 bits of sequence: 4096 ids per millisecond per worker.

The top bit stays 0, so ids fit a signed ``BIGINT``. Ids of one generator strictly increase,
even when the wall clock steps back (NTP): the generator keeps counting from the last
millisecond it used ("bump") and so never waits; the same happens when more than 4096 ids are
asked for within one millisecond. Ids of different generators are unique as long as their
worker ids differ.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import peewee

from .._errors import ConfigurationError

__all__ = ["DEFAULT_EPOCH_MS", "IdGenerator", "IdParts", "ShardedIdField", "decode_id"]

TIMESTAMP_BITS = 41
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER_ID = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
_MAX_TIMESTAMP = (1 << TIMESTAMP_BITS) - 1
_WORKER_SHIFT = SEQUENCE_BITS
_TIMESTAMP_SHIFT = SEQUENCE_BITS + WORKER_BITS

#: 2024-01-01T00:00:00Z in Unix milliseconds: ids stay small for decades after it.
DEFAULT_EPOCH_MS = 1_704_067_200_000


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class IdParts(NamedTuple):
    """An id taken apart: when (Unix ms), by which worker, and its sequence number."""

    timestamp_ms: int
    worker_id: int
    sequence: int


def decode_id(value: int, *, epoch_ms: int = DEFAULT_EPOCH_MS) -> IdParts:
    """Split an id made by :class:`IdGenerator` (with the same ``epoch_ms``) into its parts."""
    if not isinstance(value, int) or value < 0 or value >> (_TIMESTAMP_SHIFT + TIMESTAMP_BITS):
        raise ValueError(f"not a 63-bit id: {value!r}")
    return IdParts(
        (value >> _TIMESTAMP_SHIFT) + epoch_ms,
        (value >> _WORKER_SHIFT) & MAX_WORKER_ID,
        value & MAX_SEQUENCE,
    )


class IdGenerator:
    """Makes unique, increasing 63-bit ids; callable, so it can be a field's ``default=``.

    ::

        ids = IdGenerator(worker_id=int(os.environ["WORKER_ID"]))

        class Order(peewee.Model):
            id = ShardedIdField(ids)            # or peewee.BigIntegerField(primary_key=True, default=ids)

    ``worker_id`` (0-1023) must be unique among the processes that make ids at the same time
    (a pod ordinal, a lease from a registry, ...); two generators with the same worker id can
    make the same id. Safe to share between threads and tasks: making an id never blocks on
    I/O and holds a lock for a few instructions.

    ``clock`` returns Unix time in milliseconds (tests inject one to step time back).
    """

    def __init__(
        self,
        worker_id: int,
        *,
        epoch_ms: int = DEFAULT_EPOCH_MS,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if (
            not isinstance(worker_id, int)
            or isinstance(worker_id, bool)
            or not 0 <= worker_id <= MAX_WORKER_ID
        ):
            raise ConfigurationError(f"worker_id must be an integer 0-{MAX_WORKER_ID}, got {worker_id!r}")
        if not isinstance(epoch_ms, int) or isinstance(epoch_ms, bool) or epoch_ms < 0:
            raise ConfigurationError(f"epoch_ms must be a non-negative integer, got {epoch_ms!r}")
        self.worker_id = worker_id
        self.epoch_ms = epoch_ms
        self._clock = clock or _wall_clock_ms
        self._lock = threading.Lock()
        self._last_ms = -1  # the millisecond of the last id (may run ahead of the clock)
        self._last_reading = -1  # the clock's last reading, to notice it stepping back
        self._sequence = MAX_SEQUENCE
        #: How often the clock was seen going back (for monitoring NTP steps).
        self.clock_regressions = 0

    def __repr__(self) -> str:
        return f"<IdGenerator worker_id={self.worker_id} epoch_ms={self.epoch_ms}>"

    def __call__(self) -> int:
        """The next id."""
        return self.next_id()

    def next_id(self) -> int:
        """The next id: greater than every id this generator made before."""
        with self._lock:
            reading = self._clock()
            if reading < self._last_reading:
                self.clock_regressions += 1
            self._last_reading = reading
            now = reading - self.epoch_ms
            if now < 0:
                raise ConfigurationError(
                    f"the clock ({now + self.epoch_ms} ms) is before the id epoch ({self.epoch_ms} ms)"
                )
            if now > self._last_ms:
                self._last_ms = now
                self._sequence = 0
            else:
                # Same millisecond, or the clock stepped back: go on counting in the last
                # millisecond used. When its 4096 ids are spent, borrow the next millisecond:
                # ids stay increasing and nobody waits (the clock catches up later).
                self._sequence += 1
                if self._sequence > MAX_SEQUENCE:
                    self._last_ms += 1
                    self._sequence = 0
            if self._last_ms > _MAX_TIMESTAMP:
                raise OverflowError("the 41-bit timestamp of the id scheme is exhausted; use a later epoch")
            return (self._last_ms << _TIMESTAMP_SHIFT) | (self.worker_id << _WORKER_SHIFT) | self._sequence

    def decode(self, value: int) -> IdParts:
        """Split ``value`` into (Unix ms, worker id, sequence) using this generator's epoch."""
        return decode_id(value, epoch_ms=self.epoch_ms)


class ShardedIdField(peewee.BigIntegerField):
    """A ``BIGINT`` primary key filled in by ``generator`` when the model instance is created.

    The id exists before the row is written, so it can route the row (``shard_key="id"``).
    As with any Peewee primary key that is not auto-incremented, insert with
    ``create()`` or ``save(force_insert=True)``: a plain ``save()`` of an instance that
    already has its id is an UPDATE.
    """

    def __init__(self, generator: Callable[[], int], *, primary_key: bool = True, **kwargs: Any) -> None:
        if not callable(generator):
            raise ConfigurationError(f"generator must be callable (an IdGenerator), got {generator!r}")
        if "default" in kwargs:
            raise ConfigurationError("ShardedIdField takes its default from the generator; drop default=")
        self.generator = generator
        super().__init__(primary_key=primary_key, default=generator, **kwargs)
