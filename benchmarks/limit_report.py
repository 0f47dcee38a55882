"""The "against the limit" section of docs/benchmarks.md (issue 16), from ``benchmarks.limit``."""

from __future__ import annotations

from typing import Any

OURS = ("aiopd_asyncpg", "aiopd", "aiopd_aiopg")
#: (contender, workload, concurrency, measure, bound, text). Measure: "limit" or "raw".
TARGETS: tuple[tuple[str, str, int, str, float, str], ...] = (
    ("aiopd_asyncpg", "get", 1, "limit", 0.75, "asyncpg get, 1 task >= 0.75x the limit"),
    ("aiopd_asyncpg", "get", 16, "limit", 0.6, "asyncpg get, 16 tasks >= 0.6x the limit"),
    ("aiopd_asyncpg", "create", 1, "limit", 0.6, "asyncpg create, 1 task >= 0.6x the limit"),
    *(
        (ours, workload, tasks, "raw", 0.9, f"{ours} {workload}, {tasks} task(s) >= 0.9x its raw driver")
        for ours in OURS
        for workload in ("create", "update", "txn3")
        for tasks in (1, 16)
    ),
    *(
        ("aiopd", "select100", tasks, "raw", 0.8, f"aiopd select100, {tasks} task(s) >= 0.8x raw psycopg")
        for tasks in (1, 16)
    ),
)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _verdict(cell: dict[str, Any], measure: str, bound: float) -> str:
    wall = cell[f"ops_per_s_to_{measure}"]
    cpu = cell[f"cpu_us_to_{measure}"]
    if wall >= bound and cpu >= bound:
        return "**met**"
    if cpu >= bound:
        return "met on client CPU, not on wall-clock"
    if wall >= bound:
        return "met on wall-clock, not on client CPU"
    return "**not met**"


def _failed(title: str, result: dict[str, Any]) -> list[str]:
    """A section whose measure failed says so, instead of being left out."""
    return [title, "", f"Not measured in this run: {result.get('error')}", ""]


def section(limit: dict[str, Any]) -> list[str]:
    if not limit:
        return []
    if not limit.get("cells"):
        return _failed("## Against the limit (issue 16)", limit)
    cells = {(c["contender"], c["workload"], c["concurrency"]): c for c in limit["cells"]}
    lines = [
        "## Against the limit (issue 16)",
        "",
        f"One process, {limit['rounds']} interleaved rounds (contender order rotated), "
        f"{limit['seconds']} s per cell after every connection is open; medians of the per-round "
        "ratios. The limit is raw asyncpg with one held connection per task (`asyncpg_held`); "
        "each library is also compared with its own raw driver used per operation (a pool "
        "checkout per statement: `asyncpg`, `psycopg`, `aiopg`). Two measures: operations per "
        "wall-clock second, and this process's CPU time per operation, shown as limit CPU / "
        "contender CPU so that for both 1.0 is the limit. On a machine whose 2 cores are shared "
        "with other work the wall-clock ratios are noisy; client CPU per operation is what a "
        "library spends and can change.",
        "",
        "| contender | workload | tasks | ops/s | CPU µs/op | wall / limit | CPU / limit "
        "| wall / raw | CPU / raw |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in limit["cells"]:
        lines.append(
            f"| `{c['contender']}` | {c['workload']} | {c['concurrency']} | {c['ops_per_s']:,.0f} "
            f"| {c['cpu_us']:,.0f} | {_fmt(c['ops_per_s_to_limit'])} | {_fmt(c['cpu_us_to_limit'])} "
            f"| {_fmt(c['ops_per_s_to_raw'])} | {_fmt(c['cpu_us_to_raw'])} |"
        )
    lines += ["", "Targets:", ""]
    for name, workload, tasks, measure, bound, text in TARGETS:
        cell = cells.get((name, workload, tasks))
        if cell is None:
            continue
        wall, cpu = cell[f"ops_per_s_to_{measure}"], cell[f"cpu_us_to_{measure}"]
        lines.append(f"- {text}: {_verdict(cell, measure, bound)} (wall {_fmt(wall)}, CPU {_fmt(cpu)})")
    lines.append("")
    return lines


def backends_section(result: dict[str, Any]) -> list[str]:
    """The section for ``benchmarks.backends`` (MariaDB and SQLite against their raw drivers)."""
    if not result:
        return []
    if not result.get("cells"):
        return _failed("## MariaDB and SQLite", result)
    lines = [
        "## MariaDB and SQLite",
        "",
        f"One process, {result['rounds']} interleaved rounds, {result['seconds']} s per cell; ratios "
        "as in the section above (wall-clock and client CPU, 1.0 = the raw driver). MariaDB: raw "
        "aiomysql with its pool, per operation. SQLite: one raw aiosqlite connection shared by all "
        "tasks, against aiopeewee_dist's one-writer pool (`create`, N concurrent writers) and its "
        "reader pool (`get`, N readers), on a WAL file.",
        "",
        "| backend | workload | tasks | raw ops/s | aiopeewee_dist ops/s | wall / raw | CPU / raw |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in result["cells"]:
        lines.append(
            f"| {c['backend']} | {c['workload']} | {c['tasks']} | {c['raw_ops_per_s']:,.0f} "
            f"| {c['ops_per_s']:,.0f} | {c['wall_to_raw']:.2f} | {c['cpu_to_raw']:.2f} |"
        )
    return [*lines, ""]


RAW_DRIVER = {"aiopd_asyncpg": "asyncpg", "aiopd": "psycopg", "aiopd_aiopg": "aiopg"}


def stream_sizes(result: dict[str, Any]) -> list[str]:
    """Streaming at several lengths, each library against its raw driver, and peak RSS."""
    found = {(s["contender"], s["size"]): s for s in result.get("streams", []) if s.get("ok") and "size" in s}
    sizes = sorted({size for _, size in found})
    if len(sizes) < 2:
        return []
    lines = [
        f"### Streaming {', '.join(f'{n:,}' for n in sizes)} rows (one process per contender, the "
        "lengths in turn; peak RSS of that process after each)",
        "",
        "Target: at most 1.5x the raw driver's time at 1,000,000 rows, and peak RSS flat as the row "
        "count grows.",
        "",
        "| contender | rows | seconds | time / raw driver | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for (name, size), s in sorted(found.items()):
        raw = found.get((RAW_DRIVER.get(name, ""), size))
        ratio = f"{s['seconds'] / raw['seconds']:.2f} (`{raw['contender']}`)" if raw else "-"
        lines.append(f"| {name} | {size:,} | {s['seconds']:.2f} | {ratio} | {s['peak_rss_mb']:.0f} |")
    return [*lines, ""]
