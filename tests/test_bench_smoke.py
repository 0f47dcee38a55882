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

import cluster
import pytest

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
