"""Real crawls with a real Chromium: JavaScript fixture pages (tests/sites/js/).

Every page's content only exists once its script ran: injected on load, injected
after a delay, paginated by a JS button, loaded on scroll, built from the query
string. With the render blocks the exact item set comes out; the same workflow
without them finds none of it (so the browser did the work), and plain pages are
fetched by Scrapy's own HTTP client either way.
"""

from __future__ import annotations

import copy
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Crawl, require_service, stat_items
from tests.mockserver import MockServer
from wfcrawl.settings.defaults import DEFAULTS

pytestmark = pytest.mark.requires_browser


@pytest.fixture(autouse=True)
def _browser() -> None:
    try:
        import scrapy_playwright  # noqa: F401
    except ImportError:
        require_service("scrapy-playwright", False, "pip install 'wfcrawl[browser]'")
    require_service("Chromium", shutil.which("chromium") is not None, "apt-get install chromium")


WORKFLOW: dict[str, Any] = {
    "name": "jsfixtures",
    "start_urls": [
        {"url": "/js/index.html", "phase": "index"},
        {"url": "/js/onload.html", "phase": "onload"},
        {"url": "/js/delayed.html", "phase": "delayed"},
        {"url": "/js/pager.html", "phase": "pager"},
        {"url": "/js/scroll.html", "phase": "scroll"},
    ],
    "phases": {
        # A plain page whose links are fetched rendered (node-level render blocks).
        "index": {
            "nodes": [
                {"type": "extract", "item": "index", "fields": {"title": "h1.title::text"}},
                {"type": "extract_links", "css": "a.detail", "marker": "detail", "render": {"wait_for": "h1.name"}},
                {"type": "extract_links", "css": "a.shot", "marker": "detail",
                 "render": {"wait_for": "h1.name", "distinct": True, "screenshot": True, "html": True}},
                {"type": "extract_links", "css": "a.again", "marker": "again"},
            ],
            "transitions": [{"marker": "detail", "to": "detail"}, {"marker": "again", "to": "plain_detail"}],
        },
        "detail": {"nodes": [{"type": "extract", "item": "detail",
                              "fields": {"name": {"css": "h1.name::text", "required": True}}}]},
        "plain_detail": {"nodes": [{"type": "extract", "item": "plain_detail", "fields": {"static": "p.static::text"}}]},
        "onload": {
            "render": {},
            "nodes": [{"type": "extract", "item": "onload", "rows": "li.product",
                       "fields": {"name": ".name::text", "price": {"css": ".price::text", "type": "float"}}}],
        },
        "delayed": {
            "render": {"wait_for": "li.product"},
            "nodes": [{"type": "extract", "item": "delayed", "rows": "li.product", "fields": {"name": ".name::text"}}],
        },
        "pager": {
            "render": {"wait_for": "li.product", "click": {"selector": "button.next", "times": 5, "collect": True}},
            "nodes": [{"type": "extract", "item": "pager", "rows": "li.product",
                       "fields": {"name": ".name::text", "page": {"css": ".page::text", "type": "int"}}}],
        },
        "scroll": {
            "render": {"wait_for": "li.post", "scroll": 5},
            "nodes": [{"type": "extract", "item": "scroll", "rows": "li.post", "fields": {"text": "::text"}}],
        },
    },
}

JS_TYPES = ("detail", "onload", "delayed", "pager", "scroll")


def without_render(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: without_render(v) for k, v in doc.items() if k != "render"}
    if isinstance(doc, list):
        return [without_render(v) for v in doc]
    return doc


def write(tmp_path: Path, doc: dict[str, Any], name: str = "workflow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def browser_args(*extra: str) -> str:
    return ",".join([*DEFAULTS["WFCRAWL_RENDER_BROWSER_ARGS"], *extra])


def browser_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line carries ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                pids.append(int(entry))
    return pids


def header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


@pytest.mark.parametrize("parse_workers", [0, 1], ids=["in_process", "parse_worker"])
def test_rendered_crawl_exact_items_and_plain_pages_stay_plain(
    crawl: Any, fresh_server: MockServer, tmp_path: Path, parse_workers: int,
) -> None:
    marker = f"--wfcrawl-test-run={uuid.uuid4().hex}"
    result: Crawl = crawl(
        write(tmp_path, WORKFLOW),
        *("-s", f"WFCRAWL_RENDER_SCREENSHOT_DIR={tmp_path / 'shots'}",
          "-s", f"WFCRAWL_RENDER_HTML_DIR={tmp_path / 'html'}",
          "-s", f"WFCRAWL_RENDER_BROWSER_ARGS={browser_args(marker)}",
          # Rendered pages parsed in a worker too: same items, same provenance.
          "-s", f"WFCRAWL_PARSE_WORKERS={parse_workers}"),
        base_url=fresh_server.url,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Every page that reached the nodes: index, 3 details, plain_detail, 4 JS phases.
    assert result.stats.get("wfcrawl/parse_workers/pages", 0) == 9 * parse_workers
    assert result.fields("index") == [{"title": "JS fixtures"}]
    assert result.fields("onload") == [
        {"name": "Blue kettle", "price": 21.5}, {"name": "Red kettle", "price": 19.9},
        {"name": "Steel kettle", "price": 34.0},
    ]
    assert result.fields("delayed") == [{"name": "Late chair"}, {"name": "Slow lamp"}]
    # Three pages behind a "next" button that replaces the list: every state kept.
    assert result.fields("pager") == [
        {"name": "Ash desk", "page": 3}, {"name": "Birch bed", "page": 3}, {"name": "Elm stool", "page": 2},
        {"name": "Oak table", "page": 1}, {"name": "Pine shelf", "page": 1}, {"name": "Teak bench", "page": 2},
    ]
    assert sorted(i["text"] for i in result.of_type("scroll")) == [f"Post {n}" for n in range(1, 10)]
    assert result.fields("detail") == [{"name": "Item 1"}, {"name": "Item 2"}, {"name": "Item 3"}]
    # detail.html?id=1 was scheduled rendered first; its plain twin is a duplicate.
    # id=3's render block says `distinct`, so its plain fetch happens too.
    assert [i["_meta"]["url"] for i in result.of_type("plain_detail")] == [f"{fresh_server.url}/js/detail.html?id=3"]
    assert result.stats["dupefilter/filtered"] == 1

    renders = {i["_meta"]["url"].rsplit("/", 1)[1]: i["_meta"].get("render") for i in result.items}
    assert renders["index.html"] is None and renders["detail.html?id=3"] is not None
    assert renders["pager.html"] == {"scrolls": 0, "clicks": 2}
    assert renders["scroll.html"] == {"scrolls": 3, "clicks": 0}
    shot_meta = next(i["_meta"]["render"] for i in result.of_type("detail") if i["name"] == "Item 3")
    shot, html = Path(shot_meta["screenshot"]), Path(shot_meta["html"])
    assert shot.parent == tmp_path / "shots" / "jsfixtures" and html.parent == tmp_path / "html" / "jsfixtures"
    assert shot.stem == html.stem and len(shot.stem) == 40  # the request fingerprint
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '<h1 class="name">Item 3</h1>' in html.read_text()

    assert stat_items(result.stats, "wfcrawl/render/") == {
        "requests": 7, "pages": 7, "clicks": 2, "scrolls": 3, "screenshots": 1, "html": 1,
    }
    # Every page the browser opened was closed; one browser, one context.
    assert result.stats["playwright/page_count"] == result.stats["playwright/page_count/closed"] == 7
    assert result.stats["playwright/browser_count"] == 1 and result.stats["playwright/context_count"] == 1
    assert browser_processes(marker) == []

    # Which client fetched what: Chromium sends Sec-Fetch-* headers, Scrapy's HTTP/1.1 client does not.
    by_path: dict[str, list[str | None]] = {}
    for record in fresh_server.requests:
        by_path.setdefault(record.path, []).append(header(record.headers, "sec-fetch-mode"))
    assert by_path["/js/index.html"] == [None]
    assert by_path["/js/detail.html?id=3"] in ([None, "navigate"], ["navigate", None])
    assert by_path["/js/detail.html?id=1"] == ["navigate"]
    assert by_path["/js/data/page-2.json"] == ["cors"]


def test_without_render_blocks_nothing_is_found_and_no_browser_starts(
    crawl: Any, server: MockServer, tmp_path: Path
) -> None:
    result: Crawl = crawl(write(tmp_path, without_render(copy.deepcopy(WORKFLOW))), base_url=server.url)
    # Degraded (exit status 3): the nodes of the JavaScript phases matched nothing (wfcrawl.outcome).
    assert result.returncode == 3, result.stderr[-3000:]
    assert result.stats["wfcrawl/outcome"] == "degraded"
    assert result.stats["wfcrawl/outcome/reasons/node_never_matched"] == len(JS_TYPES)
    assert {t: result.fields(t) for t in JS_TYPES} == {t: [] for t in JS_TYPES}
    assert result.fields("index") == [{"title": "JS fixtures"}]
    assert result.stats["wfcrawl/pages/onload"] == 1 and result.stats["wfcrawl/pages/detail"] == 3
    assert [k for k in result.stats if k.startswith(("playwright/", "wfcrawl/render/"))] == []


def test_hung_and_crashed_pages_are_retried_counted_and_the_crawl_goes_on(
    crawl: Any, server: MockServer, tmp_path: Path
) -> None:
    marker = f"--wfcrawl-test-run={uuid.uuid4().hex}"
    doc = {
        "name": "jsfail",
        "start_urls": [
            {"url": "/js/hang.html", "phase": "hang"},
            {"url": "/js/crash.html", "phase": "page"},
            {"url": "/js/onload.html", "phase": "page"},
        ],
        "phases": {
            "hang": {"render": {"timeout": 1}, "nodes": [{"type": "extract", "item": "hang", "fields": {"name": "h1"}}]},
            "page": {"render": {"wait_for": "li.product"},
                     "nodes": [{"type": "extract", "item": "product", "rows": "li.product", "fields": {"name": ".name::text"}}]},
        },
    }
    result: Crawl = crawl(
        write(tmp_path, doc),
        # A small V8 heap makes crash.html run out of memory at once; the renderer dies.
        *("-s", f"WFCRAWL_RENDER_BROWSER_ARGS={browser_args(marker, '--js-flags=--max-old-space-size=32')}",
          "-s", "WFCRAWL_RENDER_RETRY_TIMES=1"),
        base_url=server.url,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.fields("product") == [{"name": "Blue kettle"}, {"name": "Red kettle"}, {"name": "Steel kettle"}]
    assert result.of_type("hang") == []
    assert stat_items(result.stats, "wfcrawl/render/") == {
        "requests": 5, "pages": 1,
        "failed/timeout": 2, "failed/crash": 2,
        "retry/count": 2, "retry/reason_count/timeout": 1, "retry/reason_count/crash": 1, "retry/max_reached": 2,
    }
    assert stat_items(result.stats, "wfcrawl/pages/failed") == {"": 2, "/TimeoutError": 1, "/TargetClosedError": 1}
    # scrapy-playwright reopens a page whose target closed (3 times) before the error
    # reaches wfcrawl: 1 + 2 x 4 crash pages + 2 hung pages; every one closed.
    assert result.stats["playwright/page_count"] == result.stats["playwright/page_count/closed"] == 11
    assert browser_processes(marker) == []


def test_missing_browser_fails_at_start(crawl: Any, server: MockServer, tmp_path: Path) -> None:
    result: Crawl = crawl(
        write(tmp_path, WORKFLOW), "-s", "WFCRAWL_RENDER_BROWSER_PATH=/nonexistent/chromium", base_url=server.url,
    )
    assert result.returncode != 0
    assert "WFCRAWL_RENDER_BROWSER_PATH='/nonexistent/chromium' is not an executable file" in result.stderr
    assert result.items == []
