"""The docs site builds offline with warnings as errors, and every internal link and anchor resolves.

The site is built into a temporary directory (``mkdocs build --strict``, as ``scripts/docs`` does),
then every HTML page is parsed with the standard library: each ``href``/``src`` that stays inside the
site must name a file that exists, and each ``#fragment`` an ``id`` on that page. Nothing touches the
network. The repository's own files must not point at the shared specification folder beside it
(DESIGN decision 20).
"""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[2]
#: What links may point at outside the site (never checked: no network here).
EXTERNAL = ("http:", "https:", "mailto:", "data:", "javascript:", "blob:")


class Page(HTMLParser):
    """The ids a page declares and the URLs it refers to."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("id",) + (("name",) if tag == "a" else ()):
            if values.get(name):
                self.ids.add(str(values[name]))
        for name in ("href", "src"):
            if values.get(name) and tag in ("a", "link", "script", "img", "iframe", "source"):
                self.urls.append(str(values[name]))


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_the_site_builds_with_every_page_of_the_nav(site: Path) -> None:
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    sources = {p.relative_to(ROOT / "docs").with_suffix(".html").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert sources <= pages
    assert (site / "assets" / "openapi" / "openapi.js").read_text().startswith("window.OFFERHUB_OPENAPI = {")
    assert (site / "assets" / "openapi" / "swagger-ui-bundle.js").stat().st_size > 100_000


def test_every_internal_link_and_anchor_resolves(site: Path) -> None:
    parsed = {path: parse(path) for path in site.rglob("*.html")}
    broken = []
    checked = 0
    for path, page in parsed.items():
        for url in page.urls:
            if url.startswith(EXTERNAL) or url.startswith("//"):
                continue
            parts = urlsplit(url)
            if not parts.path:
                target = path
            elif parts.path.startswith("/"):  # 404.html's links are root-relative (a server shows it anywhere)
                target = (site / unquote(parts.path).lstrip("/")).resolve()
            else:
                target = (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists() or site.resolve() not in (target.resolve(), *target.resolve().parents):
                broken.append(f"{path.relative_to(site)}: {url} (no such file)")
                continue
            checked += 1
            if parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{path.relative_to(site)}: {url} (no such anchor)")
    assert broken == []
    assert checked > 500


#: What a path into the shared specification folder beside the repository looks like, spelled in parts so
#: that this file, like every other, can be scanned for them.
OUTSIDE = ("../" + "shared", "shared/" + "spec/", "shared/" + "DESIGN")


def test_nothing_in_the_repository_points_at_shared() -> None:
    """The repository stands alone: no code, script, test or page reads or links the shared folder."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    offenders = []
    for name in tracked.splitlines():
        path = ROOT / name
        if path.suffix in (".png", ".jpg", ".ico", ".gz") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if any(needle in text for needle in OUTSIDE):
            offenders.append(name)
    assert offenders == []
