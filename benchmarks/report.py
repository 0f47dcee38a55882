"""Turns a results JSON into ``docs/benchmarks.md`` and a PNG chart (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import limit_report
from .common import WORKLOADS
from .contenders_registry import BASELINE, BY_NAME

WORKLOAD_TITLES = {
    "get": "get by primary key",
    "create": "create one row",
    "select100": "select 100 rows into models",
    "update": "update by key",
    "txn3": "3-statement transaction",
    "mix90_10": "90/10 read/write mix",
}
PEERS = ("peewee_async", "pwasyncio", "peewee_aio", "sqlalchemy", "tortoise")
OURS = "aiopd"


def _index(result: dict[str, Any]) -> dict[tuple[str, str, int], float]:
    return {
        (r["contender"], r["workload"], r["concurrency"]): r["median_ops_per_s"] for r in result["results"]
    }


def _contenders(result: dict[str, Any]) -> list[str]:
    return [name for name in BY_NAME if name in result["contenders"]]


def _cells(result: dict[str, Any]) -> list[tuple[str, int]]:
    levels = sorted({r["concurrency"] for r in result["results"]})
    return [(w, c) for w in WORKLOADS for c in levels]


def table(result: dict[str, Any], ratio: bool) -> list[str]:
    idx = _index(result)
    names = _contenders(result)
    lines = [
        "| workload | tasks | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for workload, conc in _cells(result):
        cells = []
        base = idx.get((BASELINE, workload, conc))
        for name in names:
            value = idx.get((name, workload, conc))
            if value is None:
                cells.append("-")
            elif ratio:
                cells.append(f"{value / base:.2f}" if base else "-")
            else:
                cells.append(f"{value:,.0f}")
        lines.append(f"| {WORKLOAD_TITLES[workload]} | {conc} | " + " | ".join(cells) + " |")
    return lines


def targets(result: dict[str, Any], ours: str = OURS) -> list[str]:
    """The three targets of issue 6, per cell, with the numbers."""
    idx = _index(result)
    lines = []
    checks = [
        ("≥ 0.95 x peewee-async", lambda w, c: (idx.get(("peewee_async", w, c)), 0.95)),
        ("≥ 0.6 x raw psycopg 3", lambda w, c: (idx.get((BASELINE, w, c)), 0.6)),
    ]
    for label, ref_of in checks:
        met, total, misses = 0, 0, []
        for w, c in _cells(result):
            mine = idx.get((ours, w, c))
            ref, factor = ref_of(w, c)
            if mine is None or ref is None:
                continue
            total += 1
            if mine >= factor * ref:
                met += 1
            else:
                misses.append(f"{w}@{c} {mine / ref:.2f}x")
        verdict = "met" if total and met == total else "NOT met"
        detail = f"; misses: {', '.join(misses)}" if misses else ""
        lines.append(f"- `{ours}` {label}: **{verdict}** ({met} of {total} cells meet it{detail})")
    met, total, misses = 0, 0, []
    for w, c in _cells(result):
        mine = idx.get((ours, w, c))
        if mine is None:
            continue
        for peer in PEERS:
            ref = idx.get((peer, w, c))
            if ref is None:
                continue
            total += 1
            if mine >= ref:
                met += 1
            else:
                misses.append(f"{peer} {w}@{c} {mine / ref:.2f}x")
    verdict = "met" if total and met == total else "NOT met"
    detail = f"; behind: {', '.join(misses)}" if misses else ""
    lines.append(f"- `{ours}` ≥ every peer ORM: **{verdict}** ({met} of {total} comparisons won{detail})")
    return lines


def chart(result: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    idx = _index(result)
    names = _contenders(result)
    levels = sorted({r["concurrency"] for r in result["results"]})
    fig, axes = plt.subplots(3, 3, figsize=(16, 13), constrained_layout=True)
    width = 0.8 / max(len(names), 1)
    colours = plt.get_cmap("turbo")
    for ax, workload in zip(axes.flat, WORKLOADS, strict=False):
        for i, name in enumerate(names):
            values = [idx.get((name, workload, c), 0.0) for c in levels]
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(levels))]
            ax.bar(xs, values, width, label=name, color=colours(i / max(len(names) - 1, 1)))
        ax.set_title(WORKLOAD_TITLES[workload])
        ax.set_xticks(range(len(levels)), [f"{c} task{'s' if c > 1 else ''}" for c in levels])
        ax.set_ylabel("ops/s (median)")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(names), 8), fontsize=9)
    _target_panels(result, axes[2], colours)
    fig.suptitle(
        f"ops/s per contender and workload; bottom row: issue 16's ratios "
        f"({result['started']}, pool max_size 16)"
    )
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _target_panels(result: dict[str, Any], axes: Any, colours: Any) -> None:
    """Issue 16's ratios, each with its target as a dashed line."""
    cells = [c for c in (result.get("limit") or {}).get("cells", []) if c.get("ops_per_s_to_raw")]
    ours = sorted({c["contender"] for c in cells})
    keys = sorted(
        {(c["workload"], c["concurrency"]) for c in cells}, key=lambda k: (WORKLOADS.index(k[0]), k[1])
    )
    width = 0.8 / max(len(ours), 1)
    for i, name in enumerate(ours):
        found = {
            (c["workload"], c["concurrency"]): c["ops_per_s_to_raw"] for c in cells if c["contender"] == name
        }
        xs = [j + (i - (len(ours) - 1) / 2) * width for j in range(len(keys))]
        axes[0].bar(xs, [found.get(k, 0.0) for k in keys], width, label=name, color=colours(0.6 + 0.15 * i))
    axes[0].set_xticks(range(len(keys)), [f"{w}@{n}" for w, n in keys], rotation=45, fontsize=8)
    axes[0].axhline(0.9, linestyle="--", color="grey")
    axes[0].set_title("aiopeewee_dist / its raw driver per operation (target 0.9 for writes)")
    axes[0].legend(fontsize=8)
    streams = {
        s["contender"]: s["seconds"]
        for s in result.get("streams", [])
        if s.get("ok") and s.get("size") == 1_000_000
    }
    fan = result.get("fanout") or {}
    bars = {
        "stream psycopg": streams.get("aiopd", 0.0) / streams.get("psycopg", 1.0),
        "stream asyncpg": streams.get("aiopd_asyncpg", 0.0) / streams.get("asyncpg", 1.0),
        "fan-out": fan.get("fanout_over_slowest", 0.0),
        "fan-out streamed": fan.get("fanout_streamed_over_slowest", 0.0),
        "raw 3 at once": fan.get("raw_concurrent_over_slowest", 0.0),
    }
    axes[1].bar(list(bars), list(bars.values()), color=[colours(0.3)] * 2 + [colours(0.8)] * 3)
    axes[1].axhline(1.5, linestyle="--", color=colours(0.3))
    axes[1].axhline(1.2, linestyle="--", color=colours(0.8))
    axes[1].set_title("1M rows / raw driver (target 1.5); fan-out / slowest shard (1.2)")
    axes[1].tick_params(axis="x", labelrotation=20, labelsize=8)
    backends = (result.get("backends") or {}).get("cells", [])
    labels = [f"{c['backend']} {c['workload']}@{c['tasks']}" for c in backends]
    axes[2].bar(labels, [c["wall_to_raw"] for c in backends], color=colours(0.5))
    axes[2].axhline(0.9, linestyle="--", color="grey")
    axes[2].set_title("MariaDB and SQLite / raw aiomysql, aiosqlite")
    axes[2].tick_params(axis="x", labelrotation=45, labelsize=8)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)


def extras(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    streams = [
        s
        for s in result.get("streams", [])
        if s.get("ok") and s.get("size", 0) in (0, result["config"]["stream_rows"])
    ]
    lines += limit_report.stream_sizes(result)
    if streams:
        rows = result["config"]["stream_rows"]
        lines += [
            f"### Streaming {rows:,} rows (one process each; peak RSS of that process)",
            "",
            "| contender | seconds | rows/s | RSS before (MB) | peak RSS (MB) |",
            "|---|---:|---:|---:|---:|",
        ]
        for s in streams:
            lines.append(
                f"| {s['contender']} | {s['seconds']:.2f} | {s['rows_per_s']:,.0f} | "
                f"{s['rss_before_mb']:.0f} | {s['peak_rss_mb']:.0f} |"
            )
        lines.append("")
    fan = result.get("fanout") or {}
    if fan.get("ok"):
        singles = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in fan["single_shard_s"].items())
        lines += [
            "### Fan-out over 3 shards (`ShardedManager`, databases shard1..3 on the primary)",
            "",
            f"One scanning select (~1 % of {result['config']['shard_rows']:,} rows per shard), median of "
            f"{fan['repeats']}: single shards {singles}; fan-out to all three "
            f"{fan['fanout_s'] * 1000:.1f} ms ({fan['fanout_rows']} rows) = "
            f"**{fan['fanout_over_slowest']:.2f}x the slowest single shard** "
            f"({fan['fanout_over_sum']:.2f}x their sum). The three shards share this machine's 2 cores.",
            "",
        ]
        if "fanout_streamed_s" in fan:
            streamed = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in fan["single_shard_streamed_s"].items())
            lines += [
                f"Streamed (`iterate`): single shards {streamed}; fan-out to all three "
                f"{fan['fanout_streamed_s'] * 1000:.1f} ms = "
                f"**{fan['fanout_streamed_over_slowest']:.2f}x the slowest single shard**. "
                "Target (issue 16): at most 1.2x, both materialised and streamed.",
                "",
            ]
        if "raw_concurrent_s" in fan:
            lines += [
                "The same SQL on three raw psycopg connections at once (no library, no models): "
                f"{fan['raw_concurrent_s'] * 1000:.1f} ms = **{fan['raw_concurrent_over_slowest']:.2f}x** "
                "the slowest single shard: the floor on this machine, where three scans share 2 cores.",
                "",
            ]
    lines += _layers_section(result.get("layers") or {})
    router = result.get("router") or {}
    if router.get("ok"):
        lines += [
            "### The router's own cost (in process)",
            "",
            "| measure | µs per call |",
            "|---|---:|",
        ]
        for key, value in router.items():
            if key.endswith("_us"):
                lines.append(f"| {key[:-3]} | {value:.2f} |")
        lines.append("")
    return lines


# Static: how the library's per-query path is built, so the tables can be read against it.
COMMENTARY = [
    "- `get`/`get_or_none`/`get_by_id` with equality filters and the `INSERT` of `create`/`save` "
    "run from per-node compiled templates (`aiopeewee_dist/_templates.py`): no Peewee query is "
    "built or compiled on the hot path. Simple selects and updates given to `execute()` (the "
    "`select100` and `update` workloads here) are compiled once per query shape and node "
    "(`aiopeewee_dist/_shapes.py`); other queries are compiled by Peewee on every call.",
    "- Plain `Model.select()` rows become model instances through a cached per-shape builder "
    "(`aiopeewee_dist/_rows.py`) instead of Peewee's per-row `Model(**kwargs)`; results are "
    "identical (tests/test_fast_paths.py).",
    "- In a transaction (`txn3`) the psycopg driver sends `BEGIN` in the same message as the "
    "block's first statement: 4 round trips per transaction instead of 5 (the raw contenders "
    "send `BEGIN` on its own).",
    "- The raw `psycopg` baseline binds parameters on the server and prepares statements after "
    "5 executions; aiopeewee_dist keeps client-side binding and no prepared statements, which is "
    "what stays correct behind PgBouncer in transaction mode (PgBouncer before 1.21 cannot carry "
    "named prepared statements). Compare `psycopg_client`, raw psycopg with those settings: at "
    "concurrency 1 most of the remaining gap to `psycopg` is its prepared statements (server-side "
    "binding alone does not pay; client-side cursors never prepare). With the client and the three "
    "PostgreSQL servers sharing 2 cores, the server's parse/plan time is part of every ratio.",
    "- Concurrency 16/64 ratios mostly measure how the event loop, the driver and the server share "
    "2 cores; `python -m benchmarks.profile_get --workload W` shows one task's path.",
]


def write(result: dict[str, Any], md_path: Path, png_path: Path) -> None:
    has_chart = chart(result, png_path)
    m = result["machine"]
    cfg = result["config"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`benchmarks/run.py`); do not edit by hand.",
        "",
        f"Run {result['started']}, {result['duration_s']} s. Machine: {m['nproc']} CPUs ({m['cpu']}), "
        f"{m['memory']} RAM, {m['os']}. The PostgreSQL 15 primary and both standbys of "
        "`scripts/cluster.sh` run on the same machine as the client.",
        "",
        "## Method",
        "",
        f"Every contender runs in its own process (its own venv where pins conflict) against the same "
        f"server. For each round ({cfg['rounds']}), each workload and each concurrency, every contender "
        f"runs in turn (order rotated per round): {cfg['warmup']} s warm-up, then operations counted "
        f"for {cfg['seconds']} s with N tasks on a pool of at most 16 connections. The tables show the "
        "median over rounds. Ratios are to raw psycopg 3 (`psycopg_pool.AsyncConnectionPool`, "
        "default cursor with server-side binding) measured in the same run. Table `bench_item` "
        "holds 10,000 seeded rows; `get`/`update` use random keys. `psycopg_client` is raw psycopg "
        "with aiopeewee_dist's driver settings (client-side binding, no prepared statements). "
        "Where the time goes: `benchmarks/.venvs/main/bin/python -m benchmarks.profile_get` (cProfile).",
        "",
        "Contenders:",
        "",
    ]
    lines += [f"- `{name}`: {label}" for name, label in result["contenders"].items()]
    for name, reason in result["skipped"].items():
        lines.append(f"- `{name}`: **skipped** ({reason})")
    lines += ["", "## Targets", "", *targets(result), ""]
    lines += limit_report.section(result.get("limit") or {})
    lines += limit_report.backends_section(result.get("backends") or {})
    lines += ["## Where aiopeewee_dist spends a query", "", *COMMENTARY, ""]
    lines += ["## ops/s (median)", "", *table(result, ratio=False), ""]
    lines += [f"## Ratio to raw psycopg 3 (`{BASELINE}` = 1.00)", "", *table(result, ratio=True), ""]
    if has_chart:
        lines += [f"![ops/s per contender and workload]({png_path.name})", ""]
    more = extras(result)
    if more:
        lines += ["## Streaming, fan-out, router cost", "", *more]
    if result["errors"]:
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in result["errors"].items()] + [""]
    lines += ["## Versions", "", f"aiopeewee_dist: {result.get('source', '?')}", ""]
    lines += ["| contenders (one venv) | versions |", "|---|---|"]
    groups: dict[str, list[str]] = {}
    for name, versions in result["versions"].items():
        text = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        groups.setdefault(text, []).append(name)
    for text, names in groups.items():
        lines.append(f"| {', '.join(names)} | {text} |")
    lines.append("")
    md_path.write_text("\n".join(lines))


def main() -> None:
    """Re-render the docs from a results JSON: ``python -m benchmarks.report [FILE]``."""
    import json
    import sys

    root = Path(__file__).resolve().parent.parent
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "benchmarks" / ".results" / "latest.json"
    write(json.loads(source.read_text()), root / "docs" / "benchmarks.md", root / "docs" / "benchmarks.png")


def _layers_section(layers: dict[str, Any]) -> list[str]:
    """Client CPU per operation entered at each layer (``benchmarks/layers.py``)."""
    done = {scheme: found for scheme, found in layers.items() if found.get("ok")}
    if not done:
        return []
    steps = ("raw", "driver", "run_sql", "result", "manager")
    lines = [
        "### Where a statement's client CPU goes (concurrency 1, `benchmarks/layers.py`)",
        "",
        "This process's CPU µs per operation, entered at each layer: the raw driver on a held "
        "connection, our driver adapter, the node (pool checkout, timing, error mapping), the node "
        "plus turning rows into what Peewee returns, and the manager (lookup, routing, "
        "read-your-writes). Each step's increase is that layer's cost.",
        "",
        "| driver | workload | " + " | ".join(steps) + " |",
        "|---|---|" + "---:|" * len(steps),
    ]
    for scheme, found in done.items():
        for workload, cpu in found["cpu_us"].items():
            lines.append(f"| {scheme} | {workload} | " + " | ".join(f"{cpu[s]:.0f}" for s in steps) + " |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
