"""The Conduit backend (``examples/conduit``) against the RealWorld contract.

One walk through the whole API (register, login, user, profiles, follow, articles with
filters and paging, feed, favorites, comments, tags, deletion, plus the error cases) runs
on SQLite and on the PostgreSQL primary with both standbys replaying 200 ms late. Every
response is checked against ``openapi.yml``: the status code must be one the operation
declares (403/404, which the spec leaves out but RealWorld uses, must carry the generic
error body), and every JSON body is validated with jsonschema against the operation's
response schema, ``$ref``s resolved inside the spec.

The walk uses one HTTP client, like a browser or a RealWorld test runner: its cookie jar
carries the read-your-writes token, so a write followed at once by a read (create an
article, then GET it) sees the write although the standbys are 200 ms behind.
Tables are prefixed ``cx_`` so as not to meet other tests' tables.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import cluster
import httpx
import jsonschema
import pytest
import yaml
from conftest import REQUIRE_CLUSTER, topology_for
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from aiopeewee_dist import Manager

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from conduit import Settings, create_app  # noqa: E402 (examples/ is not a package)
from conduit.app import create_tables  # noqa: E402
from conduit.models import MODELS, use_table_prefix  # noqa: E402

# A copy of the contract lives with the example, so the tests run from any checkout.
SPEC_PATH = Path(os.environ.get("CONDUIT_OPENAPI", ROOT / "examples" / "conduit" / "spec" / "openapi.yml"))
PREFIX = "cx_"
SPEC_URI = "urn:realworld:openapi"
#: Status codes the spec does not list but RealWorld's docs prescribe; they carry GenericErrorModel.
UNLISTED_ERRORS = {403, 404}


# -- the contract ---------------------------------------------------------------------------------


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def is_datetime(value: object) -> bool:
        if not isinstance(value, str) or not re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value
        ):
            return False
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True

    return checker


class Contract:
    """Checks a response of ``METHOD /api/...`` against the operation in openapi.yml."""

    def __init__(self, path: Path) -> None:
        self.spec: dict[str, Any] = yaml.safe_load(path.read_text())
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self.formats = _format_checker()
        self.templates = [
            (template, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"))
            for template in self.spec["paths"]
        ]
        self.seen: set[tuple[str, str, int]] = set()

    def template(self, path: str) -> str:
        path = path.split("?", 1)[0].removeprefix("/api")
        if path in self.spec["paths"]:  # literal paths win: /articles/feed is not /articles/{slug}
            return path
        matches = [template for template, pattern in self.templates if pattern.match(path)]
        assert matches, f"{path} is not in the spec"
        return matches[0]

    def validate(self, pointer: str, body: Any) -> None:
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry, format_checker=self.formats
        )
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{pointer}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])

    def check(self, method: str, path: str, response: httpx.Response) -> None:
        template = self.template(path)
        operation = self.spec["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not in the spec"
        status = response.status_code
        self.seen.add((method.upper(), template, status))
        declared = operation["responses"].get(str(status))
        if declared is None:
            assert status in UNLISTED_ERRORS, (
                f"{method} {template} answered {status}, not declared by the spec"
            )
            self.validate("/components/schemas/GenericErrorModel", response.json())
            return
        if "$ref" in declared:
            pointer = declared["$ref"].removeprefix("#")
            declared = self.spec["components"]["responses"][pointer.rsplit("/", 1)[1]]
        else:
            escaped = template.replace("~", "~0").replace("/", "~1")
            pointer = f"/paths/{escaped}/{method.lower()}/responses/{status}"
        content = declared.get("content") or {}
        if "application/json" not in content:
            if status == 204:
                assert response.content == b"", "a 204 answer has no body"
            return
        self.validate(f"{pointer}/content/application~1json/schema", response.json())


@pytest.fixture(scope="module")
def contract() -> Contract:
    if not SPEC_PATH.is_file():
        message = f"the RealWorld spec is not at {SPEC_PATH} (set CONDUIT_OPENAPI)"
        if REQUIRE_CLUSTER:
            pytest.fail(message)
        pytest.skip(message)
    return Contract(SPEC_PATH)


class Api:
    """One HTTP client (one cookie jar) that checks every answer against the contract."""

    def __init__(self, client: httpx.AsyncClient, contract: Contract) -> None:
        self.client = client
        self.contract = contract

    async def __call__(
        self, method: str, path: str, expect: int, *, token: str | None = None, json: Any = None, **kw: Any
    ) -> Any:
        headers = {"Authorization": f"Token {token}"} if token else {}
        response = await self.client.request(method, path, json=json, headers=headers, **kw)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        self.contract.check(method, path, response)
        return response.json() if response.content else None


# -- the walk -------------------------------------------------------------------------------------


async def walk(api: Api) -> None:
    # Users: register, duplicates, blanks, login.
    alice = (await api("POST", "/api/users", 201, json={"user": user_payload("alice")}))["user"]
    bob = (await api("POST", "/api/users", 201, json={"user": user_payload("bob")}))["user"]
    assert alice["username"] == "alice" and alice["bio"] == "" and alice["token"]
    dup = await api("POST", "/api/users", 422, json={"user": user_payload("alice")})
    assert dup["errors"]["username"] == ["has already been taken"]
    await api(
        "POST", "/api/users", 422, json={"user": {**user_payload("carol"), "email": "alice@example.com"}}
    )
    await api("POST", "/api/users", 422, json={"user": {"username": " ", "email": "x@y.z", "password": "pw"}})
    await api("POST", "/api/users", 422, json={"user": {"username": "nopass", "email": "n@y.z"}})
    await api("POST", "/api/users", 422, json={"nothing": 1})

    login = (await api("POST", "/api/users/login", 200, json={"user": login_payload("alice")}))["user"]
    assert login["email"] == "alice@example.com"
    await api("POST", "/api/users/login", 401, json={"user": {**login_payload("alice"), "password": "wrong"}})
    await api(
        "POST", "/api/users/login", 401, json={"user": {**login_payload("alice"), "email": "nobody@x.y"}}
    )
    await api("POST", "/api/users/login", 422, json={"user": {"email": "alice@example.com"}})
    a, b = login["token"], bob["token"]

    # Current user: read, auth errors, update then read back at once.
    me = (await api("GET", "/api/user", 200, token=a))["user"]
    assert me["username"] == "alice" and me["token"] == a
    await api("GET", "/api/user", 401)
    await api("GET", "/api/user", 401, token="not-a-jwt")
    await api("PUT", "/api/user", 401, json={"user": {"bio": "x"}})
    updated = await api(
        "PUT", "/api/user", 200, token=a, json={"user": {"bio": "I write", "image": "https://i/a.png"}}
    )
    assert updated["user"]["bio"] == "I write"
    assert (await api("GET", "/api/user", 200, token=a))["user"]["image"] == "https://i/a.png"
    await api("PUT", "/api/user", 422, token=a, json={"user": {"username": "bob"}})
    await api("PUT", "/api/user", 422, token=a, json={"user": {"email": ""}})

    # Articles: create, read back immediately (the replicas are behind), validation, auth.
    # tagList sent out of order, as RealWorld's Postman collection does: it expects it back sorted.
    new = {"title": "How to train your dragon", "description": "Ever wonder how?", "body": "Very carefully.",
           "tagList": ["training", "dragons"]}  # fmt: skip
    created = (await api("POST", "/api/articles", 201, token=a, json={"article": new}))["article"]
    slug = created["slug"]
    assert slug == "how-to-train-your-dragon" and created["tagList"] == ["dragons", "training"]
    assert created["author"]["username"] == "alice" and created["favoritesCount"] == 0
    read = (await api("GET", f"/api/articles/{slug}", 200))["article"]
    assert read == {**created, "author": {**created["author"], "following": False}}
    await api("POST", "/api/articles", 401, json={"article": new})
    await api("POST", "/api/articles", 422, token=a, json={"article": {"title": "t", "description": "d"}})
    await api("POST", "/api/articles", 422, token=a, json={"article": {**new, "body": ""}})
    await api("GET", "/api/articles/no-such-article", 404)

    second = await api(
        "POST", "/api/articles", 201, token=a, json={"article": {**new, "tagList": ["training"]}}
    )
    slug2 = second["article"]["slug"]
    assert slug2 != slug and slug2.startswith("how-to-train-your-dragon-")  # same title: another slug
    bobs = {"title": "Bob's", "description": "d", "body": "b", "tagList": ["dragons"]}
    slug3 = (await api("POST", "/api/articles", 201, token=b, json={"article": bobs}))["article"]["slug"]
    assert slug3 == "bob-s"

    # Lists: newest first, filters, paging, counts.
    everything = await api("GET", "/api/articles", 200)
    assert [x["slug"] for x in everything["articles"]] == [slug3, slug2, slug]
    assert everything["articlesCount"] == 3 and "body" not in everything["articles"][0]
    assert (await api("GET", "/api/articles?tag=dragons", 200))["articlesCount"] == 2
    by_alice = await api("GET", "/api/articles?author=alice", 200)
    assert [x["slug"] for x in by_alice["articles"]] == [slug2, slug]
    page = await api("GET", "/api/articles?limit=1&offset=1", 200)
    assert [x["slug"] for x in page["articles"]] == [slug2] and page["articlesCount"] == 3
    assert (await api("GET", "/api/articles?offset=5", 200)) == {"articles": [], "articlesCount": 3}
    assert (await api("GET", "/api/articles?favorited=bob", 200))["articlesCount"] == 0
    assert (await api("GET", "/api/articles?author=nobody", 200))["articlesCount"] == 0
    await api("GET", "/api/articles?limit=0", 422)
    await api("GET", "/api/articles?offset=-1", 422)

    # Favorites.
    fav = (await api("POST", f"/api/articles/{slug}/favorite", 200, token=b))["article"]
    assert fav["favorited"] is True and fav["favoritesCount"] == 1
    assert (await api("POST", f"/api/articles/{slug}/favorite", 200, token=b))["article"][
        "favoritesCount"
    ] == 1
    favorited = await api("GET", "/api/articles?favorited=bob", 200, token=b)
    assert [x["slug"] for x in favorited["articles"]] == [slug] and favorited["articles"][0]["favorited"]
    assert (await api("GET", f"/api/articles/{slug}", 200, token=a))["article"]["favorited"] is False
    unfav = (await api("DELETE", f"/api/articles/{slug}/favorite", 200, token=b))["article"]
    assert unfav["favorited"] is False and unfav["favoritesCount"] == 0
    await api("POST", f"/api/articles/{slug}/favorite", 401)
    await api("POST", "/api/articles/no-such-article/favorite", 404, token=b)

    # Comments.
    comment = await api(
        "POST", f"/api/articles/{slug}/comments", 200, token=b, json={"comment": {"body": "Nice"}}
    )
    comment_id = comment["comment"]["id"]
    assert comment["comment"]["author"]["username"] == "bob"
    comments = (await api("GET", f"/api/articles/{slug}/comments", 200))["comments"]
    assert [c["id"] for c in comments] == [comment_id]
    await api("POST", f"/api/articles/{slug}/comments", 401, json={"comment": {"body": "x"}})
    await api("POST", f"/api/articles/{slug}/comments", 422, token=b, json={"comment": {"body": ""}})
    await api("DELETE", f"/api/articles/{slug}/comments/{comment_id}", 403, token=a)
    await api("DELETE", f"/api/articles/{slug}/comments/{comment_id}", 204, token=b)
    await api("DELETE", f"/api/articles/{slug}/comments/{comment_id}", 404, token=b)
    assert (await api("GET", f"/api/articles/{slug}/comments", 200))["comments"] == []

    # Profiles, follow, feed.
    profile = (await api("GET", "/api/profiles/alice", 200, token=b))["profile"]
    assert profile == {"username": "alice", "bio": "I write", "image": "https://i/a.png", "following": False}
    await api("GET", "/api/profiles/nobody", 404)
    followed = (await api("POST", "/api/profiles/alice/follow", 200, token=b))["profile"]
    assert followed["following"] is True
    assert (await api("GET", "/api/profiles/alice", 200, token=b))["profile"]["following"] is True
    await api("POST", "/api/profiles/alice/follow", 401)
    await api("POST", "/api/profiles/nobody/follow", 404, token=b)
    await api("POST", "/api/profiles/bob/follow", 422, token=b)
    feed = await api("GET", "/api/articles/feed", 200, token=b)
    assert [x["slug"] for x in feed["articles"]] == [slug2, slug] and feed["articlesCount"] == 2
    assert all(x["author"]["following"] for x in feed["articles"])
    assert (await api("GET", "/api/articles/feed?limit=1", 200, token=b))["articles"][0]["slug"] == slug2
    await api("GET", "/api/articles/feed", 401)
    assert (await api("DELETE", "/api/profiles/alice/follow", 200, token=b))["profile"]["following"] is False
    assert (await api("GET", "/api/articles/feed", 200, token=b)) == {"articles": [], "articlesCount": 0}

    # Tags: in use, most used first.
    assert (await api("GET", "/api/tags", 200))["tags"] == ["dragons", "training"]

    # Update (author only; a new title makes a new slug), then delete.
    await api("PUT", f"/api/articles/{slug}", 403, token=b, json={"article": {"body": "mine now"}})
    await api("PUT", f"/api/articles/{slug}", 401, json={"article": {"body": "x"}})
    changed = await api(
        "PUT", f"/api/articles/{slug}", 200, token=a, json={"article": {"title": "Dragons 2"}}
    )
    new_slug = changed["article"]["slug"]
    assert new_slug == "dragons-2" and changed["article"]["body"] == "Very carefully."
    assert (await api("GET", f"/api/articles/{new_slug}", 200))["article"]["title"] == "Dragons 2"
    await api("GET", f"/api/articles/{slug}", 404)
    await api("DELETE", f"/api/articles/{new_slug}", 403, token=b)
    await api("DELETE", f"/api/articles/{new_slug}", 401)
    await api("DELETE", f"/api/articles/{new_slug}", 204, token=a)
    await api("GET", f"/api/articles/{new_slug}", 404)
    await api("DELETE", f"/api/articles/{new_slug}", 404, token=a)
    assert (await api("GET", "/api/articles", 200))["articlesCount"] == 2
    assert (await api("GET", "/api/tags", 200))["tags"] == ["dragons", "training"]


def user_payload(name: str) -> dict[str, str]:
    return {"username": name, "email": f"{name}@example.com", "password": f"{name}-secret"}


def login_payload(name: str) -> dict[str, str]:
    return {"email": f"{name}@example.com", "password": f"{name}-secret"}


def covered(contract: Contract) -> set[tuple[str, str]]:
    return {(method, template) for method, template, _ in contract.seen}


def all_operations(contract: Contract) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in contract.spec["paths"].items() for method in ops}


# -- fixtures and tests ---------------------------------------------------------------------------


@pytest.fixture
def prefixed() -> Iterator[None]:
    use_table_prefix(PREFIX)
    yield


async def run_walk(manager: Manager, contract: Contract, settings: Settings) -> None:
    app = create_app(settings, manager)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await walk(Api(client, contract))
        # Anything outside the spec answers in the error format too.
        missing = await client.get("/api/nothing-here")
        assert missing.status_code == 404 and missing.json()["errors"]["body"]


async def test_conduit_on_sqlite(tmp_path: Path, contract: Contract, prefixed: None) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'conduit.db'}", table_prefix=PREFIX)
    manager = Manager(settings.database_url)
    try:
        await create_tables(manager)  # ASGITransport runs no lifespan
        contract.seen.clear()
        await run_walk(manager, contract, settings)
        assert covered(contract) == all_operations(contract)  # every operation of the spec exercised
    finally:
        await manager.close()


@pytest.fixture
async def pg_tables(tmp_path: Path, prefixed: None) -> AsyncIterator[None]:
    topology_for("psycopg", tmp_path)  # skips (or fails under AIOPD_REQUIRE_CLUSTER=1) without the cluster
    manager = Manager(cluster.PG_PRIMARY, health_check_interval=None)
    try:
        await manager.drop_tables(MODELS)
        await create_tables(manager)
    finally:
        await manager.close()
    await cluster.wait_pg_replayed(cluster.PG_PRIMARY, cluster.PG_REPLICAS)
    yield
    manager = Manager(cluster.PG_PRIMARY, health_check_interval=None)
    try:
        await manager.drop_tables(MODELS)  # leave the shared database as we found it
    finally:
        await manager.close()


@pytest.fixture
def replicas_200ms_behind() -> Iterator[None]:
    try:
        for node in ("pg-replica-1", "pg-replica-2"):
            cluster.cluster("delay", node, "0.2")
        yield
    finally:
        for node in ("pg-replica-1", "pg-replica-2"):
            try:
                cluster.cluster("delay", node, "0")
            except cluster.ClusterError as exc:
                print(f"could not undo the delay of {node}: {exc}")


@pytest.mark.cluster
async def test_conduit_on_postgres_with_lagging_replicas(
    pg_tables: None, replicas_200ms_behind: None, contract: Contract
) -> None:
    settings = Settings(
        database_url=cluster.PG_PRIMARY, replica_urls=list(cluster.PG_REPLICAS), table_prefix=PREFIX
    )
    manager = Manager(settings.database_url, settings.replica_urls, acquire_timeout=5.0)
    try:
        contract.seen.clear()
        await run_walk(manager, contract, settings)
        router = manager.stats()["router"]
        # Reads right after this client's writes went to the primary because of its token ...
        assert router.get("fresh_primary_reads", 0) > 10, router
        # ... and a client without a token reads from the standbys.
        app = create_app(settings, manager)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as anonymous:
            before = sum(v for k, v in manager.stats()["router"].items() if k.startswith("reads:replica"))
            assert (await anonymous.get("/api/tags")).status_code == 200
            after = sum(v for k, v in manager.stats()["router"].items() if k.startswith("reads:replica"))
        assert after > before
    finally:
        await manager.close()
