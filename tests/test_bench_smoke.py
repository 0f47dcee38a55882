"""Smoke test of the benchmark harness (benchmarks/): quick mode, two contenders, < 20 s.

Runs ``python -m benchmarks.run`` with BENCH_QUICK=1 and the project venv's python for the
raw psycopg and aiopeewee_dist contenders (no contender venvs are created), then checks the
shape of the JSON results. Skipped when the local PostgreSQL cluster is not running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cluster
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import limit_report

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {"get", "create", "select100", "update", "txn3", "mix90_10"}

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not cluster.cluster_available("pg"), reason="pg cluster not running"),
]


def test_quick_run_produces_results(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "BENCH_QUICK": "1",
        "BENCH_PYTHON": sys.executable,
        "BENCH_CONTENDERS": "psycopg,aiopd",
        "BENCH_SECONDS": "0.05",
        "BENCH_WARMUP": "0.02",
        "BENCH_TABLE_PREFIX": "bench_smoke",  # not the tables of a full run going on meanwhile
    }
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())

    assert result["baseline"] == "psycopg"
    assert set(result["contenders"]) == {"psycopg", "aiopd"}
    assert result["skipped"] == {}
    assert result["errors"] == {}
    assert {"nproc", "cpu", "memory"} <= set(result["machine"])
    cells = {(r["contender"], r["workload"], r["concurrency"]) for r in result["results"]}
    assert cells == {(c, w, n) for c in ("psycopg", "aiopd") for w in WORKLOADS for n in (1, 16, 64)}
    for row in result["results"]:
        assert row["median_ops_per_s"] > 0
        assert row["ratio_to_baseline"] > 0
        if row["contender"] == "psycopg":
            assert row["ratio_to_baseline"] == pytest.approx(1.0)
    streams = {s["contender"]: s for s in result["streams"]}
    assert set(streams) == {"psycopg", "aiopd"}
    for stream in streams.values():
        assert stream["ok"], stream
        assert stream["rows"] == result["config"]["stream_rows"]
        assert stream["peak_rss_mb"] > 0
    assert result["router"]["ok"], result["router"]
    assert result["router"]["route_read_2_replicas_us"] > 0
    assert result["fanout"]["ok"], result["fanout"]
    assert result["fanout"]["fanout_rows"] > 0


def run_script(*args: str) -> dict[str, Any]:
    env = {**os.environ, "BENCH_TABLE_PREFIX": "bench_smoke"}
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_limit_ratios_and_backends_produce_results() -> None:
    limit = run_script("benchmarks.limit", "1", "0.02", "aiopd_asyncpg,asyncpg")
    cells = {(c["contender"], c["workload"], c["concurrency"]): c for c in limit["cells"]}
    assert {name for name, _, _ in cells} == {"asyncpg_held", "asyncpg", "aiopd_asyncpg"}
    for (name, _, _), cell in cells.items():
        assert cell["ops_per_s"] > 0 and cell["cpu_us"] > 0
        if name == "asyncpg_held":
            assert cell["ops_per_s_to_limit"] == pytest.approx(1.0)
    assert cells[("aiopd_asyncpg", "get", 1)]["raw"] == "asyncpg"
    assert cells[("aiopd_asyncpg", "get", 1)]["cpu_us_to_raw"] > 0
    lines = limit_report.section(limit)
    assert any("asyncpg get, 1 task >= 0.75x the limit" in line for line in lines)
    backends = run_script("benchmarks.backends", "1", "0.02")
    assert {(c["backend"], c["workload"], c["tasks"]) for c in backends["cells"]} == {
        *(("mariadb", w, n) for w in ("get", "create") for n in (1, 16)),
        *(("sqlite", w, n) for w in ("get", "create") for n in (1, 4, 16)),
    }
    assert all(c["wall_to_raw"] > 0 and c["cpu_to_raw"] > 0 for c in backends["cells"])
    assert limit_report.backends_section(backends)[0] == "## MariaDB and SQLite"
