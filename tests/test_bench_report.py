"""benchmarks/report.py: the sections issue 16 asks for, rendered from a results dict (no server)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import report

STEPS = ("raw", "driver", "run_sql", "result", "manager")


def result() -> dict[str, Any]:
    cpu = {w: dict(zip(STEPS, (100, 110, 120, 130, 150), strict=True)) for w in ("get", "select100")}
    fanout = {"ok": True, "repeats": 3, "single_shard_s": {"s1": 0.1}, "fanout_s": 0.17, "fanout_rows": 60}
    fanout |= {"fanout_over_slowest": 1.7, "fanout_over_sum": 0.6, "single_shard_streamed_s": {"s1": 0.1}}
    fanout |= {"fanout_streamed_s": 0.18, "fanout_streamed_over_slowest": 1.8}
    fanout |= {"raw_concurrent_s": 0.16, "raw_concurrent_over_slowest": 1.6}
    return {
        "started": "2026-12-03 00:00:00 UTC",
        "config": {"stream_rows": 1_000_000, "shard_rows": 200_000},
        "streams": [],
        "fanout": fanout,
        "layers": {"postgresql+asyncpg": {"ok": True, "cpu_us": cpu}, "postgresql": {"ok": False}},
        "limit": {},
        "backends": {},
    }


def test_the_extras_show_fan_out_streamed_its_floor_and_the_layer_table() -> None:
    text = "\n".join(report.extras(result()))
    assert "**1.70x the slowest single shard**" in text
    assert "**1.80x the slowest single shard**" in text
    assert "= **1.60x** the slowest single shard: the floor" in text
    assert "| postgresql+asyncpg | get | 100 | 110 | 120 | 130 | 150 |" in text
    assert "| postgresql |" not in text  # a failed layer run is left out
