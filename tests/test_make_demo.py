"""``make demo`` installs only what the demo needs (issue 12, item 7): no developer tools, no
pip inside the venv, no build of the package. Measured from a fresh clone: 15 s on a 2-core
machine at load 9 (it was about 60 s idle, 195 s at that load, with the dev install)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_make_demo_installs_only_the_runtime_and_sqlite_requirements() -> None:
    # A venv path that does not exist, so that make plans the whole install (-n: runs nothing).
    venv = ".venv-demo-plan"
    assert not (ROOT / venv).exists()
    plan = subprocess.run(
        ["make", "-n", "demo", f"VENV={venv}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["sqlite"]]:
        assert f"'{requirement}'" in plan, plan
    [install] = [line for line in plan.splitlines() if " install " in line]
    dev_only = {"mypy", "ruff", "hypothesis", "pytest", "fastapi", "uvicorn"}
    assert not any(tool in install for tool in dev_only), install
    assert "[dev]" not in plan and "--without-pip" in plan and "examples/quickstart.py" in plan
