"""Soak: the mixed chaos workload for a long time, with a fault every so often.

    python tests/chaos/soak.py [--minutes 10] [--fault-every 30] [--backend psycopg]

(``make soak``, ``SOAK_MINUTES=...``). Every ``--report-every`` seconds it prints a line: operations,
failures (inside / outside a fault window), p99 latency, the memory held by aiopeewee_dist's own
allocations (tracemalloc, filtered to the package) and the process RSS. At the end the chaos
invariants are checked and the first and last windows compared: the library's memory must not
grow and every acknowledged write must be there. Exit status 0 when all holds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]

from cluster import run_cluster  # noqa: E402

from chaos.invariants import chaos_topology, check_invariants  # noqa: E402
from chaos.scenario import REPLICA_NODE, chaos_manager, fresh_table, restore  # noqa: E402
from chaos.workload import Ledger, Load  # noqa: E402

MAX_LAG = 2.0
# Library memory may move by this much between the compared windows (allocator noise, bounded
# buffers still filling in a short soak); a leak of even 10 bytes per operation exceeds it within
# minutes at this load (about 2,000 operations a second).
MEMORY_SLACK_BYTES = 512 * 1024


def _faults(kind: str) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(name, inject verb+args, undo verb+args), applied in turn."""
    replica = REPLICA_NODE[kind]
    return [
        ("replica down", ("down", replica), ("up", replica)),
        ("replay paused", ("pause", replica), ("resume", replica)),
        ("replay delayed 3s", ("delay", replica, "3"), ("delay", replica, "0")),
    ]


def _library_bytes() -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/aiopeewee_dist/*")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def soak(
    *, minutes: float, fault_every: float, fault_for: float, report_every: float, backend: str
) -> int:
    topology = chaos_topology(backend, Path("/tmp"))
    await fresh_table(topology)
    manager = chaos_manager(topology, max_lag=MAX_LAG)
    ledger = Ledger()
    load = Load(manager, ledger, max_lag=MAX_LAG)
    windows: list[dict[str, Any]] = []
    failures = {"inside": 0, "outside": 0}
    faults = itertools.cycle(_faults(topology.kind))
    tracemalloc.start()
    await manager.connect()
    load.start()
    started = time.monotonic()
    next_fault = started + fault_every
    next_report = started + report_every
    try:
        while (now := time.monotonic()) < started + minutes * 60:
            if now >= next_fault:
                name, inject, undo = next(faults)
                print(f"[soak] {now - started:6.0f}s fault: {name}", flush=True)
                with load.outage():
                    await run_cluster(*inject)
                    await asyncio.sleep(fault_for)
                    await run_cluster(*undo)
                next_fault = time.monotonic() + fault_every
            if now >= next_report:
                windows.append(_window(load, failures, now - started))
                print("[soak] " + json.dumps(windows[-1]), flush=True)
                next_report = now + report_every
            await asyncio.sleep(0.2)
        await load.stop()
        windows.append(_window(load, failures, time.monotonic() - started))
        # The windows hold the figures; the load's own history was drained into them.
        figures = await check_invariants("soak", manager, topology, ledger=ledger, load=load, report=False)
    finally:
        await load.stop()
        await manager.close()
        tracemalloc.stop()
        await restore(topology.kind)
    # Bounded buffers fill during the first minutes (the monitor keeps two minutes of primary
    # positions; latency samples): growth is measured from a third of the way in.
    first, last = windows[max(1, len(windows) // 3) if len(windows) > 1 else 0], windows[-1]
    growth = last["library_bytes"] - first["library_bytes"]
    summary = {
        "minutes": minutes,
        "windows": len(windows),
        "ops": sum(w["ops"] for w in windows),
        "failed_inside_fault_windows": failures["inside"],
        "failed_outside_fault_windows": failures["outside"],
        "stale_reads": figures["stale_reads"],
        "lost_writes": figures["lost_writes"],
        "leaked_connections": figures["leaked_connections"],
        "compared_from_s": first["at_s"],
        "p99_ms_first": first["p99_ms"],
        "p99_ms_last": last["p99_ms"],
        "library_bytes_first": first["library_bytes"],
        "library_bytes_last": last["library_bytes"],
        "rss_mb_first": first["rss_mb"],
        "rss_mb_last": last["rss_mb"],
    }
    print("[soak] summary " + json.dumps(summary), flush=True)
    ok = failures["outside"] == 0 and growth <= MEMORY_SLACK_BYTES
    if not ok:
        print(f"[soak] FAILED: failures outside faults={failures['outside']}, library growth={growth} B")
    return 0 if ok else 1


def _window(load: Load, failures: dict[str, int], at: float) -> dict[str, Any]:
    """Drain the load's outcomes into one report line (so the soak itself holds no history)."""
    outcomes, load.outcomes = load.outcomes, []
    latencies = sorted(o.took for o in outcomes if o.ok)
    failed = [o for o in outcomes if not o.ok]
    inside = sum(load.in_outage(o.at, grace=1.0) for o in failed)
    failures["inside"] += inside
    failures["outside"] += len(failed) - inside
    return {
        "at_s": round(at),
        "ops": len(outcomes),
        "failed": len(failed),
        "p99_ms": round(statistics.quantiles(latencies, n=100)[98] * 1000, 1) if len(latencies) > 1 else None,
        "library_bytes": _library_bytes(),
        "rss_mb": round(_rss_bytes() / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fault-every", type=float, default=30.0, help="seconds between faults")
    parser.add_argument("--fault-for", type=float, default=5.0, help="seconds each fault lasts")
    parser.add_argument("--report-every", type=float, default=30.0)
    parser.add_argument("--backend", choices=["psycopg", "aiopg", "mysql"], default="psycopg")
    args = parser.parse_args()
    return asyncio.run(
        soak(
            minutes=args.minutes,
            fault_every=args.fault_every,
            fault_for=args.fault_for,
            report_every=args.report_every,
            backend=args.backend,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
