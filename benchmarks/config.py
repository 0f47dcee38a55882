"""Benchmark settings from the environment (``BENCH_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .contenders_registry import CONTENDERS, QUICK


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass
class Config:
    quick: bool = False
    rounds: int = 3
    seconds: float = 0.5
    warmup: float = 0.2
    concurrency: tuple[int, ...] = (1, 16, 64)
    contenders: tuple[str, ...] = field(default_factory=lambda: tuple(c.name for c in CONTENDERS))
    stream_rows: int = 1_000_000
    #: Extra stream lengths for the raw drivers and aiopeewee_dist (peak RSS must stay flat).
    stream_sizes: tuple[int, ...] = (100_000, 1_000_000, 5_000_000)
    shard_rows: int = 200_000
    extras: bool = True  # streaming, fan-out, router cost
    python: str | None = None  # one python for every contender instead of the venvs

    @classmethod
    def from_env(cls) -> Config:
        quick = _env("BENCH_QUICK", "0") not in ("0", "", "false")
        base = (
            cls(
                quick=True,
                rounds=1,
                seconds=0.1,
                warmup=0.05,
                contenders=QUICK,
                stream_rows=20_000,
                stream_sizes=(20_000,),
                shard_rows=5_000,
            )
            if quick
            else cls()
        )
        names = _env("BENCH_CONTENDERS", ",".join(base.contenders))
        return cls(
            quick=quick,
            rounds=int(_env("BENCH_ROUNDS", str(base.rounds))),
            seconds=float(_env("BENCH_SECONDS", str(base.seconds))),
            warmup=float(_env("BENCH_WARMUP", str(base.warmup))),
            concurrency=tuple(int(c) for c in _env("BENCH_CONCURRENCY", "1,16,64").split(",")),
            contenders=tuple(n.strip() for n in names.split(",") if n.strip()),
            stream_rows=int(_env("BENCH_STREAM_ROWS", str(base.stream_rows))),
            stream_sizes=tuple(
                int(n) for n in _env("BENCH_STREAM_SIZES", ",".join(map(str, base.stream_sizes))).split(",")
            ),
            shard_rows=int(_env("BENCH_SHARD_ROWS", str(base.shard_rows))),
            extras=_env("BENCH_EXTRAS", "1") not in ("0", "false"),
            python=os.environ.get("BENCH_PYTHON") or None,
        )
