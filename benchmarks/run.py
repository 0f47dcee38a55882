"""The orchestrator: ``python -m benchmarks.run [--docs] [--out FILE]``.

Starts one worker process per contender (each under its own venv's python), then runs
every (workload, concurrency) cell for every contender in turn, round after round, so
all contenders see the same server state; reports medians and ratios to raw psycopg.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import machine, schema, venvs
from .client import ROOT, Worker, WorkerError
from .common import WORKLOADS
from .config import Config
from .contenders_registry import BASELINE, BY_NAME

# Issue 16's in-process interleaved ratios (benchmarks/limit.py): rounds of every contender.
LIMIT_ROUNDS = "5"

DEFAULT_OUT = ROOT / "benchmarks" / ".results" / "latest.json"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def python_for(config: Config, name: str) -> tuple[str | None, str | None]:
    """(python, None) or (None, why the contender is skipped)."""
    if config.python:
        return config.python, None
    entry = BY_NAME[name]
    reason = venvs.failure(entry.venv)
    return (None, reason) if reason else (str(venvs.python(entry.venv)), None)


def start_workers(config: Config) -> tuple[dict[str, Worker], dict[str, str], dict[str, dict[str, str]]]:
    workers: dict[str, Worker] = {}
    skipped: dict[str, str] = {}
    versions: dict[str, dict[str, str]] = {}
    for name in config.contenders:
        if name not in BY_NAME:
            skipped[name] = "unknown contender"
            continue
        python, reason = python_for(config, name)
        if python is None:
            skipped[name] = reason or "no python"
            continue
        try:
            worker = Worker(name, BY_NAME[name].module, python)
        except (WorkerError, OSError) as exc:
            skipped[name] = f"cannot start: {exc}"
            continue
        workers[name] = worker
        versions[name] = worker.call(op="versions").get("versions", {})
    return workers, skipped, versions


def run_cells(config: Config, workers: dict[str, Worker]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    samples: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    names = list(workers)
    for rnd in range(config.rounds):
        # Rotate the order each round so no contender always runs right after the same one.
        order = names[rnd % len(names) :] + names[: rnd % len(names)] if names else []
        for workload in WORKLOADS:
            for concurrency in config.concurrency:
                for name in order:
                    reply = workers[name].call(
                        op="measure",
                        workload=workload,
                        concurrency=concurrency,
                        seconds=config.seconds,
                        warmup=config.warmup,
                    )
                    if reply.get("ok"):
                        samples.append(
                            {
                                "round": rnd,
                                "contender": name,
                                "workload": workload,
                                "concurrency": concurrency,
                                "ops_per_s": reply["ops_per_s"],
                                "ops": reply["ops"],
                            }
                        )
                    else:
                        errors[f"{name}/{workload}/{concurrency}"] = str(reply.get("error"))
            log(f"round {rnd + 1}/{config.rounds}: {workload} done")
    return samples, errors


def summarise(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int], list[float]] = {}
    for s in samples:
        groups.setdefault((s["contender"], s["workload"], s["concurrency"]), []).append(s["ops_per_s"])
    medians = {key: statistics.median(values) for key, values in groups.items()}
    rows = []
    for (name, workload, concurrency), median in medians.items():
        base = medians.get((BASELINE, workload, concurrency))
        rows.append(
            {
                "contender": name,
                "workload": workload,
                "concurrency": concurrency,
                "median_ops_per_s": median,
                "samples": groups[(name, workload, concurrency)],
                "ratio_to_baseline": median / base if base else None,
            }
        )
    return rows


def run_streams(config: Config, names: list[str]) -> list[dict[str, Any]]:
    """Each streaming contender in a fresh process, so its peak RSS is the stream's."""
    results = []
    for name in names:
        python, _reason = python_for(config, name)
        if python is None:
            continue
        try:
            worker = Worker(f"{name}-stream", BY_NAME[name].module, python, timeout=600)
        except WorkerError as exc:
            results.append({"contender": name, "ok": False, "error": str(exc)})
            continue
        try:
            if not worker.can_stream:
                continue
            sizes = [config.stream_rows]
            if BY_NAME[name].kind in ("driver", "ours"):
                sizes = sorted({*config.stream_sizes, config.stream_rows})
            for rows in sizes:  # in one process: its peak RSS must not grow with the row count
                reply = worker.call(op="stream", rows=rows)
                results.append({"contender": name, "size": rows, **reply})
                seconds, peak = reply.get("seconds", 0), reply.get("peak_rss_mb", 0)
                log(f"stream {name} {rows}: {seconds:.2f} s, peak RSS {peak:.0f} MB")
        finally:
            worker.stop()
    return results


def run_script(config: Config, module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks.MODULE`` (a JSON-printing script) under the main python."""
    python, reason = python_for(config, "aiopd")
    if python is None:
        return {"ok": False, "error": reason}
    proc = subprocess.run(
        [python, "-m", f"benchmarks.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        return {"ok": False, "error": proc.stderr.strip().splitlines()[-1:] or "failed"}
    result: dict[str, Any] = json.loads(proc.stdout)
    return {"ok": True, **result}


def source() -> str:
    """aiopeewee_dist's version and the checkout's commit (``+dirty`` with local changes)."""
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    version = "?"
    for line in (ROOT / "aiopeewee_dist" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            version = line.split("=", 1)[1].strip().strip('"')
    return f"{version} (git {commit or 'unknown'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--docs", action="store_true", help="write docs/benchmarks.md and docs/benchmarks.png"
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON file")
    args = parser.parse_args()
    config = Config.from_env()
    if args.out is None:  # a quick smoke never replaces a full run's results
        args.out = DEFAULT_OUT.with_name("quick.json") if config.quick else DEFAULT_OUT
    started = time.time()
    log(f"config: {config}")
    schema.prepare(
        stream_rows=max(config.stream_rows, *config.stream_sizes) if config.extras else 0,
        shard_rows=config.shard_rows if config.extras else 0,
    )
    workers, skipped, versions = start_workers(config)
    for name, reason in skipped.items():
        log(f"skipping {name}: {reason}")
    try:
        samples, errors = run_cells(config, workers)
    finally:
        for worker in workers.values():
            worker.stop()
    streams: list[dict[str, Any]] = []
    fanout: dict[str, Any] = {}
    router: dict[str, Any] = {}
    limit: dict[str, Any] = {}
    backends: dict[str, Any] = {}
    layers: dict[str, Any] = {}
    if config.extras:
        streams = run_streams(config, list(workers))
        fanout = run_script(config, "fanout", str(3 if config.quick else 15))
        router = run_script(config, "router_cost", str(2_000 if config.quick else 50_000))
        if not config.quick:  # a minute more; tests/test_bench_smoke.py runs them on their own
            limit = run_script(config, "limit", LIMIT_ROUNDS, "0.3")
            backends = run_script(config, "backends", LIMIT_ROUNDS, "0.3")
            layers = {
                scheme: run_script(config, "layers", "--scheme", scheme)
                for scheme in ("postgresql+asyncpg", "postgresql")
            }
        log(f"fan-out: {fanout}")
        log(f"router: {router}")
    result = {
        "config": {k: v for k, v in vars(config).items()},
        "machine": machine.info(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "source": source(),
        "baseline": BASELINE,
        "contenders": {name: BY_NAME[name].label for name in workers},
        "skipped": skipped,
        "errors": errors,
        "versions": versions,
        "results": summarise(samples),
        "streams": streams,
        "fanout": fanout,
        "router": router,
        "limit": limit,
        "backends": backends,
        "layers": layers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    log(f"results in {args.out} ({result['duration_s']} s)")
    if args.docs:
        from . import report

        report.write(result, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.png")
        log("wrote docs/benchmarks.md and docs/benchmarks.png")


if __name__ == "__main__":
    main()
