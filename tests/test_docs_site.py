"""The documentation site: ``mkdocs build --strict`` (what ``make docs`` runs) succeeds, then
every page of the built site opens in headless Chromium with its title and the navigation,
and no internal link of any page answers 404."""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest
from conftest import REQUIRE_CLUSTER

ROOT = Path(__file__).resolve().parent.parent
NAV_TITLES = [
    "Getting started",
    "Routing and consistency",
    "Transactions",
    "Sharding",
    "High availability",
    "Integrations",
    "Serverless",
    "Testing your app",
    "Moving from peewee-async",
    "Benchmarks",
    "API reference",
]


def build_site(site: Path) -> float:
    """``make docs`` into ``site``; the build's duration in seconds."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return time.monotonic() - start


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    site = tmp_path_factory.mktemp("site")
    seconds = build_site(site)
    print(f"\n[docs] mkdocs build --strict: {seconds:.1f} s")
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", site
    finally:
        server.shutdown()
        server.server_close()


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # Chromium closes connections it no longer needs (prefetches): not an error of the site.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Page(HTMLParser):
    """The title, the primary navigation's link texts and every link (pages, stylesheets,
    scripts, images) of a rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.links: list[str] = []
        self.nav_texts: list[str] = []
        self._in_title = False
        self._nav_depth = 0
        self._in_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "title":
            self._in_title = True
        if tag == "nav" and "md-nav--primary" in (attributes.get("class") or ""):
            self._nav_depth = 1
        elif tag == "nav" and self._nav_depth:
            self._nav_depth += 1
        if tag == "a" and attributes.get("href"):
            self.links.append(str(attributes["href"]))
            self._in_link = bool(self._nav_depth)
        elif tag in ("link", "script", "img"):  # the stylesheets, scripts and images it loads
            target = attributes.get("href") or attributes.get("src")
            if target:
                self.links.append(target)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag == "nav" and self._nav_depth:
            self._nav_depth -= 1
        if tag == "a":
            self._in_link = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._in_link and data.strip():
            self.nav_texts.append(data.strip())


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Debian's chromium is not installed (bash scripts/install-chromium.sh)"
        if REQUIRE_CLUSTER:
            pytest.fail(message)
        pytest.skip(message)
    return path


async def render(browser: str, url: str) -> str:
    """The page's DOM after Chromium loaded it and ran its scripts."""
    proc = await asyncio.create_subprocess_exec(
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--virtual-time-budget=1000", "--dump-dom", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, f"chromium failed on {url}"
    return out.decode()


def pages(base: str, site: Path) -> list[str]:
    """Every page of the built site (each is a folder's index.html)."""
    found = sorted(path.parent.relative_to(site).as_posix() for path in site.rglob("index.html"))
    return [base if folder == "." else f"{base}{folder}/" for folder in found]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_every_page_renders_with_title_and_navigation_and_no_broken_link(
    served: tuple[str, Path],
) -> None:
    browser = chromium()
    base, site = served
    urls = pages(base, site)
    assert len(urls) >= len(NAV_TITLES)
    limit = asyncio.Semaphore(3)

    async def one(url: str) -> tuple[str, _Page]:
        async with limit:
            parsed = _Page()
            parsed.feed(await render(browser, url))
            return url, parsed

    rendered = await asyncio.gather(*(one(url) for url in urls))
    internal: set[str] = set()
    for url, page in rendered:
        assert page.title.strip().endswith("aiopeewee_dist"), f"{url}: title {page.title!r}"
        missing = [title for title in NAV_TITLES if title not in page.nav_texts]
        assert not missing, f"{url}: navigation lacks {missing}"
        for href in page.links:
            target = urldefrag(urljoin(url, href)).url
            if target.startswith(base):
                internal.add(target)
    broken = await asyncio.to_thread(lambda: sorted(u for u in internal if status(u) != 200))
    assert not broken, f"internal links that do not answer 200: {broken}"
    assert set(urls) <= internal, "a page no other page links to"
    assert any("/assets/" in link for link in internal)  # the theme's CSS and scripts were checked


@pytest.mark.parametrize(
    ("page", "complaint"),
    [
        ("See [the missing page](missing.md).\n", "missing.md"),
        ("::: aiopeewee_dist.NoSuchName\n", "NoSuchName"),
    ],
)
def test_a_broken_link_or_reference_fails_the_build(tmp_path: Path, page: str, complaint: str) -> None:
    """The site's own settings (strict, link validation, mkdocstrings) on a one-page site."""
    config = (ROOT / "mkdocs.yml").read_text()
    config = re.sub(r"\nnav:\n(?:  .*\n)+", "\nnav:\n  - Home: index.md\n", config)
    (tmp_path / "mkdocs.yml").write_text(config.replace('paths: ["."]', f'paths: ["{ROOT}"]'))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(f"# Home\n\n{page}")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"],
        cwd=tmp_path,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0 and complaint in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_the_api_reference_documents_every_exported_name(served: tuple[str, Path]) -> None:
    import aiopeewee_dist

    _, site = served
    html = (site / "api" / "index.html").read_text()
    missing = [name for name in aiopeewee_dist.__all__ if f'id="aiopeewee_dist.{name}"' not in html]
    assert missing == []
