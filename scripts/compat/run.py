"""Run peewee-async 2.1.0's own test suite twice and print pass/fail figures per backend.

    python scripts/compat/run.py --src PEEWEE_ASYNC_SRC [--backends psycopg,aiopg,mysql,sqlite]

1. ``plain``: the suite as it is, peewee-async's own database classes on the local cluster's
   primaries (the servers of ``scripts/cluster.sh``: ``AIOPD_PG_PRIMARY``, ``AIOPD_MY_PRIMARY``,
   read from ``scripts/cluster.sh env`` when not set).
2. ``manager``: every database the suite builds replaced by ``Manager(url).database``.

``PEEWEE_ASYNC_SRC`` is a checkout of tag v2.1.0 of https://github.com/05bit/peewee-async
(outside this repository; it is only read). The tests that assert peewee-async's private
internals are skipped in manager mode, each with its reason: ``EXCLUDED`` in
``peewee_async_compat_plugin.py`` (and docs/peewee-async.md). Exit status 1 when any test
fails in either mode. ``make compat`` runs this with the cluster started.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BACKENDS = ("psycopg", "aiopg", "mysql", "sqlite")
VERSION = "2.1.0"


def _cluster_env() -> dict[str, str]:
    env = dict(os.environ)
    if "AIOPD_PG_PRIMARY" in env and "AIOPD_MY_PRIMARY" in env:
        return env
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "cluster.sh"), "env"], check=True, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def _check_source(src: Path) -> None:
    pyproject = src / "pyproject.toml"
    if not (src / "tests" / "conftest.py").is_file() or not pyproject.is_file():
        sys.exit(
            f"{src} is not a peewee-async checkout (no tests/conftest.py); get one with\n"
            f"  git clone --branch v{VERSION} --depth 1 https://github.com/05bit/peewee-async DIR\n"
            "and pass it as PEEWEE_ASYNC_SRC=DIR"
        )
    found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.MULTILINE)
    version = found.group(1) if found else "unknown"
    if version != VERSION:
        sys.exit(f"{src} is peewee-async {version}; the measure is tag v{VERSION}")


def run_mode(mode: str, src: Path, backends: str, extra: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"aiopd-compat-{mode}-") as scratch:
        report = Path(scratch) / "report.json"
        env = _cluster_env()
        env.update(
            AIOPD_COMPAT_MODE=mode,
            AIOPD_COMPAT_SRC=str(src),
            AIOPD_COMPAT_REPORT=str(report),
            AIOPD_COMPAT_BACKENDS=backends,
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")])),
            PYTHONDONTWRITEBYTECODE="1",  # nothing written into the checkout
        )
        command = [
            sys.executable, "-m", "pytest", str(src / "tests"),
            "--rootdir", str(src), "-c", str(src / "pyproject.toml"),
            "-p", "peewee_async_compat_plugin", "-p", "no:cacheprovider",
            "-o", "timeout=120", "-q", "-rfE", *extra,
        ]  # fmt: skip
        print(f"== {mode}: {' '.join(command)}", flush=True)
        # cwd: the scratch directory, where the suite's SQLite file (test.sqlite) is created.
        subprocess.run(command, cwd=scratch, env=env, check=False)
        if not report.is_file():
            sys.exit(f"{mode}: pytest wrote no report (see its output above)")
        result: dict[str, Any] = json.loads(report.read_text())
        return result


def summarise(results: dict[str, dict[str, Any]]) -> bool:
    """Print the figures; True when no test failed in any mode."""
    print(f"\n{'backend':<10}{'mode':<9}{'passed':>8}{'failed':>8}{'excluded':>10}{'skipped':>9}{'total':>7}")
    ok = True
    for backend in (*BACKENDS, "none"):
        for mode, result in results.items():
            tests = [t for t in result["tests"] if t["backend"] == backend]
            if not tests:
                continue
            n = Counter(t["outcome"] for t in tests)
            ok = ok and n["failed"] == 0
            print(
                f"{backend:<10}{mode:<9}{n['passed']:>8}{n['failed']:>8}{n['excluded']:>10}"
                f"{n['skipped']:>9}{len(tests):>7}"
            )
    for mode, result in results.items():
        failed = sorted(t["test"] for t in result["tests"] if t["outcome"] == "failed")
        if failed:
            print(f"\nfailed ({mode}):\n  " + "\n  ".join(failed))
    excluded = next(iter(results.values()))["excluded"]
    print("\nexcluded in manager mode (peewee-async internals):")
    for test, reason in excluded.items():
        print(f"  {test}: {reason}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", required=True, type=Path, help="peewee-async v2.1.0 checkout")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated subset of " + ",".join(BACKENDS)
    )
    parser.add_argument("--modes", default="plain,manager")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    args = parser.parse_args()
    src = args.src.resolve()
    _check_source(src)
    results = {mode: run_mode(mode, src, args.backends, args.pytest_args) for mode in args.modes.split(",")}
    sys.exit(0 if summarise(results) else 1)


if __name__ == "__main__":
    main()
