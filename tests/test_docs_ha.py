"""Every Python snippet of docs/ha.md runs, against the HA topologies (``make ha-up``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cluster
import pytest
from chaos.ha import galera_topology, patroni_topology

DOC = Path(__file__).resolve().parent.parent / "docs" / "ha.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index: int, tmp_path: Path) -> None:
    patroni, galera = patroni_topology(), galera_topology()
    env = {
        **os.environ,
        "PATRONI_REST": ",".join(patroni.rest_urls),
        "APP_PASSWORD": cluster.APP_PASSWORD,
        **{f"GALERA_{n.name.upper()}": galera.url(n.name) for n in galera.nodes},
    }
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", SNIPPETS[index]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "the snippet printed nothing"


def test_there_are_snippets() -> None:
    assert len(SNIPPETS) == 3
