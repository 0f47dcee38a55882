"""benchmarks/telemetry_overhead.py runs (tiny counts): its modes and the baseline comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_telemetry_overhead_benchmark_smoke() -> None:
    script = ROOT / "benchmarks" / "telemetry_overhead.py"
    proc = subprocess.run(
        [sys.executable, str(script), "-n", "20", "--rounds", "2", "--baseline", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["cpu_min_us"]) == {"off", "noop", "sdk", "baseline"}
    assert all(value > 0 for value in report["wall_median_us"].values())
