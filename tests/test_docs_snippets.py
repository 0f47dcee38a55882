"""Every Python snippet in README.md and docs/*.md runs (issue 12, item 6).

A fenced ``python`` block runs as it is, in a fresh namespace, with ``DATABASE_URL`` naming a
SQLite file (so ``Manager.from_env()`` works) and the quickstart's example URLs
(``postgresql://app:secret@db1..db3``) replaced by the local cluster's PostgreSQL nodes, or by
SQLite files without the cluster. The line before a block may mark it:

- ``<!-- snippet: fragment -->``: a piece of a larger program (undefined names, top-level
  ``await``): it is only compiled;
- ``<!-- snippet: continues ... -->``: it runs in the namespace of the file's previous block.

The README's FastAPI example and the integration guide's apps are then called over HTTP: they
must answer with the JSON a client wants (the model's fields, not Peewee's internals).
"""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cluster
import httpx
import pytest

from aiopeewee_dist import Manager

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(
    r"(?:^(?P<marker><!--\s*snippet:\s*(?P<kind>\w+)[^>]*-->)\n)?^```python\n(?P<code>.*?)^```", re.M | re.S
)
#: Docs written by other work, whose snippets need servers or variables this test does not set up
#: yet (Patroni/Galera endpoints, a peewee-async app): compiled only, until they are made to run
#: here. Remove an entry once its file runs.
# Pages whose snippets other tests run, each in the setting it needs (a cluster, a user's pytest
# session, a migrations folder), or that include a file run elsewhere (examples/):
COMPILED_ONLY = {
    "ha.md",  # tests/test_docs_ha.py
    "peewee-async.md",  # tests/test_peewee_async_docs.py
    "migrations.md",  # tests/test_migrate.py
    "telemetry.md",  # tests/test_telemetry_docs.py
    "testing-your-app.md",  # tests/test_pytest_plugin.py
    "serverless.md",  # includes examples/serverless_handler.py (tests/test_examples_more.py)
}
EXAMPLE_URLS = {
    "postgresql://app:secret@db1:5432/app": 0,
    "postgresql://app:secret@db2:5432/app": 1,
    "postgresql://app:secret@db3:5432/app": 2,
}


@dataclass
class Snippet:
    path: Path
    line: int
    kind: str  # "run", "fragment" or "continues"
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def snippets() -> list[Snippet]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in _BLOCK.finditer(text):
            kind = match.group("kind") or ("fragment" if path.name in COMPILED_ONLY else "run")
            assert kind in ("run", "fragment", "continues"), f"{path}: unknown snippet marker {kind!r}"
            line = text.count("\n", 0, match.start("code"))
            found.append(Snippet(path, line, kind, match.group("code")))
    return found


def test_the_docs_have_snippets_and_only_known_markers() -> None:
    found = snippets()
    assert len(found) >= 10
    assert {s.kind for s in found} <= {"run", "fragment", "continues"}
    # Fragments are the exception: most snippets really run.
    assert sum(s.kind != "fragment" for s in found) >= 5


@pytest.mark.parametrize("snippet", [s for s in snippets() if s.kind == "fragment"], ids=lambda s: s.name)
def test_fragments_compile(snippet: Snippet) -> None:
    compile(snippet.code, snippet.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.fixture
def node_urls(tmp_path: Path) -> Iterator[list[str]]:
    """Three URLs standing for the quickstart's db1..db3: the cluster's PostgreSQL nodes
    (table "user" dropped before and after), or one SQLite file without the cluster."""
    if not cluster.cluster_available("pg"):
        yield [f"sqlite:///{tmp_path / 'quickstart.db'}"] * 3
        return
    urls = [cluster.PG_PRIMARY, *cluster.PG_REPLICAS]
    drop = 'DROP TABLE IF EXISTS "user"'
    asyncio.run(cluster.pg_rows(cluster.PG_PRIMARY, drop))
    yield urls
    asyncio.run(cluster.pg_rows(cluster.PG_PRIMARY, drop))


def run_file(
    path: Path, urls: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> list[dict[str, Any]]:
    """Run every runnable snippet of ``path`` in order; the namespaces they ran in."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
    monkeypatch.delenv("DATABASE_REPLICA_URLS", raising=False)
    namespaces: list[dict[str, Any]] = []
    for snippet in snippets():
        if snippet.path != path or snippet.kind == "fragment":
            continue
        code = snippet.code
        for example, index in EXAMPLE_URLS.items():
            code = code.replace(example, urls[index])
        if snippet.kind == "continues":
            assert namespaces, f"{snippet.name} continues, but no block runs before it"
            namespace = namespaces[-1]
        else:
            namespace = {"__name__": f"snippet_{snippet.line}"}
            namespaces.append(namespace)
        exec(compile(code, snippet.name, "exec"), namespace)
    return namespaces


def test_readme_snippets_run_and_the_fastapi_example_returns_json(
    node_urls: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [quickstart] = run_file(ROOT / "README.md", node_urls, monkeypatch, tmp_path)
    assert "ada" in capsys.readouterr().out  # the quickstart's iterate() printed the users
    app, manager = quickstart["app"], quickstart["manager"]

    async def call() -> httpx.Response:
        # The app's lifespan (as a server runs it) opens the manager the quickstart closed.
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            missing = await client.get("/users/nobody")
            assert missing.status_code == 404
            response = await client.get("/users/ada")
        assert all(node.closed for node in manager.nodes)  # and closes it at shutdown
        return response

    response = asyncio.run(call())
    assert response.status_code == 200
    assert response.json() == {"id": 1, "name": "ada", "karma": 11}


@pytest.mark.parametrize("path", [p for p in DOCS if p.name != "README.md"], ids=lambda p: p.name)
def test_docs_snippets_run(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    namespaces = run_file(path, [f"sqlite:///{tmp_path / 'x.db'}"] * 3, monkeypatch, tmp_path)
    for namespace in namespaces:
        if path.name == "integrations.md" and "create_note" in namespace:
            asyncio.run(_notes_round_trip(namespace))


async def _notes_round_trip(namespace: dict[str, Any]) -> None:
    """The guide's FastAPI app: a POST and the GET of what it created answer with plain JSON."""
    manager: Manager = namespace["manager"]
    app = namespace["app"]
    try:
        await manager.create_tables([namespace["Note"]])
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            created = await client.post("/notes", json={"text": "hello"})
            assert created.status_code == 201 and created.json() == {"id": 1, "text": "hello"}
            assert (await client.get("/notes/1")).json() == {"id": 1, "text": "hello"}
            assert (await client.get("/balance")).json() == {"notes": 1}
    finally:
        await manager.close()
