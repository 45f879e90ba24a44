"""The built docs site as a reader sees it: every page opened in headless Chromium (Debian's, driven by
Playwright) renders its heading and text with no script error and no failed request, every link a
rendered page shows leads to a page or file that exists (and to the anchor it names), and the HTTP
reference shows every OpenAPI operation through Swagger UI.

``test_site.py`` checks the HTML files; this checks what the browser makes of them (scripts run, the
reference page is drawn by JavaScript, links are resolved the browser's way). The site is served by
a local static server; nothing touches the network. ``scripts/test`` installs Debian's chromium.
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urldefrag, urlsplit

import pytest
from playwright.sync_api import Browser, sync_playwright

DOCS = Path(__file__).resolve().parents[2] / "docs"
#: As the machine notes say: without the background-networking flags Chromium keeps dialling out.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
#: What every rendered page reports back: its heading, its text's length, its links (as the browser
#: resolved them) and every element id (the anchors links may name).
READ_PAGE = """() => ({
  h1: (document.querySelector("article h1") || {}).textContent || "",
  text: (document.querySelector("article") || {}).innerText || "",
  links: Array.from(document.querySelectorAll("a[href]"), a => a.href),
  ids: Array.from(document.querySelectorAll("[id], a[name]"), e => e.id || e.getAttribute("name")),
})"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a page closed while a file was still being sent (a broken pipe): not the site's fault


@dataclass
class Rendered:
    h1: str
    text: str
    links: list[str]
    ids: set[str]
    problems: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: scripts/test installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def render(browser: Browser, url: str, wait_for: str | None = None) -> Rendered:
    """Open ``url`` in a fresh page and report what it shows and what went wrong while it loaded."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url} ({request.failure})"))
    page.on("response", lambda response: problems.append(f"HTTP {response.status}: {response.url}")
            if response.status >= 400 else None)
    try:
        page.goto(url, wait_until="load", timeout=30_000)
        if wait_for:
            page.wait_for_selector(wait_for, timeout=30_000)
        read = page.evaluate(READ_PAGE)
    finally:
        page.close()
    return Rendered(read["h1"].strip(), read["text"], read["links"], set(read["ids"]), problems)


def test_every_page_renders_without_an_error_and_every_link_resolves(
        site: Path, served: str, browser: Browser) -> None:
    rendered = {}
    for path in sorted(site.rglob("*.html")):
        url = served + path.relative_to(site).as_posix()
        rendered[url] = render(browser, url)
    problems = [f"{url}: {p}" for url, page in rendered.items() for p in page.problems]
    problems += [f"{url}: no heading or almost no text" for url, page in rendered.items()
                 if not url.endswith("404.html") and (not page.h1 or len(page.text) < 200)]
    assert problems == []
    broken, checked, files = [], 0, {}
    for url, page in rendered.items():
        for link in page.links:
            if not link.startswith(served):
                assert urlsplit(link).scheme in ("http", "https", "mailto"), f"{url}: {link}"
                continue  # outside the site: no network here
            target, fragment = urldefrag(link)
            if target.endswith("/"):
                target += "index.html"
            checked += 1
            if target in rendered:
                if fragment and fragment not in rendered[target].ids:
                    broken.append(f"{url}: {link} (no such anchor)")
                continue
            if target not in files:  # a file the site ships (the OpenAPI document, an asset)
                try:
                    with urllib.request.urlopen(target, timeout=10) as response:
                        files[target] = response.status
                except HTTPError as error:
                    files[target] = error.code
            if files[target] != 200:
                broken.append(f"{url}: {link} (HTTP {files[target]})")
    assert broken == []
    assert len(rendered) == len(list(DOCS.rglob("*.md"))) + 1  # every page of docs/, and 404.html
    assert checked > 500


def test_the_http_reference_shows_every_operation(site: Path, served: str, browser: Browser) -> None:
    document = json.loads((site / "assets" / "openapi" / "openapi.json").read_text())
    methods = {"get", "post", "put", "patch", "delete"}
    operations = sum(1 for item in document["paths"].values() for method in item if method in methods)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(served + "reference/api.html", wait_until="load", timeout=30_000)
        page.wait_for_selector("#swagger-ui .opblock", timeout=30_000)
        shown = page.locator("#swagger-ui .opblock").count()
        title = page.locator("#swagger-ui .info .title").inner_text()
    finally:
        page.close()
    assert errors == []
    assert operations > 40
    assert shown == operations
    assert document["info"]["title"] in title
