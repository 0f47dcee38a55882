"""The pytest plugin (``pytest11`` entry point), run as a user runs it: the snippets of
docs/testing-your-app.md in a separate pytest session in a fresh directory, on SQLite and on
MariaDB (whose DDL would end a transaction, so tables must be made outside the tests'
transactions), with pytest-asyncio's per-test event loops."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Topology

from aiopeewee_dist import Manager

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing-your-app.md"
INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""
MYAPP = "import os\nfrom aiopeewee_dist import Manager\nmanager = Manager(os.environ['AIOPD_TEST_URL'])\n"
OWN_MANAGER_TEST = """
from conftest import Note  # the first conftest's model, imported by the test below
from myapp import manager


async def test_own_manager(db):
    await manager.create(Note, text="own")
    assert await manager.count(Note.select()) == 1
"""


def doc_files() -> list[tuple[str, str]]:
    """``(file name, code)`` of each Python snippet of the doc (its first line names the file)."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    files = []
    for block in blocks:
        first = block.splitlines()[0]
        assert first.startswith("# "), f"a snippet of {DOC.name} does not name its file: {first!r}"
        files.append((first[2:].strip(), block))
    return files


def run_pytest(directory: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    (directory / "pytest.ini").write_text(INI)
    env = {k: v for k, v in os.environ.items() if k != "AIOPD_TEST_URL"}
    if url is not None:
        env["AIOPD_TEST_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_doc_suite(directory: Path) -> None:
    (conftest, code), (test_name, test_code), *_ = doc_files()
    (directory / conftest).write_text(code)
    (directory / test_name).write_text(test_code)


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
async def test_the_documented_suite_passes(topology: Topology, tmp_path: Path) -> None:
    write_doc_suite(tmp_path)
    proc = run_pytest(tmp_path, "--aiopd-url", topology.primary)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout
    manager = Manager(topology.primary, health_check_interval=None)
    try:  # the session dropped the tables it made
        tables = await manager.database.aio_get_tables()
    finally:
        await manager.close()
    assert "plugin_note" not in tables


async def test_rolled_back_around_the_apps_own_manager(tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.mkdir()
    url = f"sqlite:///{tmp_path / 'own.db'}"
    write_doc_suite(first)
    assert run_pytest(first, "-k", "create", url=url).returncode == 0  # makes and drops plugin_note
    suite = tmp_path / "own"
    suite.mkdir()
    (suite / "notes.py").write_text(doc_files()[0][1])
    own_conftest = doc_files()[2][1].replace("import pytest", "import pytest\nfrom notes import Note", 1)
    (suite / "conftest.py").write_text(own_conftest)
    (suite / "myapp.py").write_text(MYAPP)
    (suite / "test_own.py").write_text(OWN_MANAGER_TEST.replace("from conftest", "from notes"))
    setup = Manager(url)
    try:
        await setup.create_tables([_note_model(suite)])
    finally:
        await setup.close()
    proc = run_pytest(suite, url=url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = Manager(url)
    try:
        assert await check.raw_sql("SELECT count(*) FROM plugin_note") == [(0,)]  # rolled back
    finally:
        await check.close()


def _note_model(directory: Path) -> type:
    namespace: dict[str, object] = {}
    exec((directory / "notes.py").read_text(), namespace)
    return namespace["Note"]  # type: ignore[return-value]


def test_plugin_without_a_url_says_what_to_do(tmp_path: Path) -> None:
    write_doc_suite(tmp_path)
    proc = run_pytest(tmp_path, "-k", "test_create")
    assert proc.returncode == 1
    assert "needs a test database: pass --aiopd-url, set $AIOPD_TEST_URL" in proc.stdout
