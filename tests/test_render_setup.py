"""Rendering wiring without a browser: the add-on, the browser lookup, the fingerprinter
and the render middleware's plain-data round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.http import HtmlResponse
from scrapy.settings import Settings
from scrapy.utils.request import RequestFingerprinter
from scrapy.utils.test import get_crawler

from tests.conftest import IN_CI, ROOT
from wfcrawl.addon import WfcrawlAddon
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.meta import PHASE, RENDER, RENDER_RESULT
from wfcrawl.middlewares.render import RenderMiddleware
from wfcrawl.render.fingerprint import RenderFingerprinter
from wfcrawl.render.setup import apply_render_policy, find_browser
from wfcrawl.settings.table import table
from wfcrawl.workflow import load_text

try:
    import scrapy_playwright  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if IN_CI:
        raise
    pytest.skip("scrapy-playwright is not installed (pip install 'wfcrawl[browser]')", allow_module_level=True)

HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"

WORKFLOW = """\
name: js
start_urls: [http://127.0.0.1:1/js/]
phases:
  listing:
    render: {wait_for: li}
    nodes:
      - {type: extract, item: x, fields: {a: li}}
"""


@pytest.fixture
def fake_browser(tmp_path: Path) -> str:
    """An executable file standing in for Chromium (nothing here launches it)."""
    path = tmp_path / "chromium"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def with_addon(settings: dict[str, Any]) -> Settings:
    """Settings after the add-on ran (as in `scrapy crawl`: Twisted's asyncio reactor)."""
    result = Settings(settings)
    WfcrawlAddon().update_settings(result)
    return result


def crawler_with(settings: dict[str, Any]) -> Crawler:
    """A crawler configured by the add-on. get_crawler() runs reactorless in a test
    process (rendering refuses that), so the add-on runs first, on its own."""
    installed = with_addon(settings).copy_to_dict()
    keep = ("DOWNLOAD_HANDLERS", "DOWNLOAD_SLOTS", "REQUEST_FINGERPRINTER_CLASS")
    return get_crawler(Spider, {
        k: v for k, v in installed.items() if k.startswith(("WFCRAWL_", "PLAYWRIGHT_")) or k in keep
    })


def test_off_by_default_nothing_installed_and_playwright_not_imported() -> None:
    code = (
        "import sys\n"
        "from scrapy.settings import Settings\n"
        "from wfcrawl.addon import WfcrawlAddon\n"
        "s = Settings()\n"
        "WfcrawlAddon().update_settings(s)\n"
        "print(s.getdict('DOWNLOAD_HANDLERS'), s['REQUEST_FINGERPRINTER_CLASS'], s.getdict('DOWNLOAD_SLOTS'),\n"
        "      [m for m in s.getdict('DOWNLOADER_MIDDLEWARES') if 'render' in str(m)],\n"
        "      any(m.startswith(('playwright', 'scrapy_playwright')) for m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "{} scrapy.utils.request.RequestFingerprinter {} [] False"


def test_enabled_installs_handler_slot_middleware_and_fingerprinter(fake_browser: str) -> None:
    settings = {
        "WFCRAWL_RENDER_ENABLED": True, "WFCRAWL_RENDER_BROWSER_PATH": fake_browser,
        "WFCRAWL_RENDER_CONCURRENCY": 6, "CONCURRENT_REQUESTS_PER_DOMAIN": 3,
        "DOWNLOAD_HANDLERS": {"s3": None},
    }
    s = with_addon(settings)
    assert s.getdict("DOWNLOAD_HANDLERS") == {"s3": None, "http": HANDLER, "https": HANDLER}
    launch = s.getdict("PLAYWRIGHT_LAUNCH_OPTIONS")
    assert launch["executable_path"] == fake_browser
    assert launch["headless"] is True
    assert "--disable-background-networking" in launch["args"]
    # The render slot never exceeds the per-domain concurrency the workflow promised.
    assert s.getdict("DOWNLOAD_SLOTS") == {"wfcrawl-render": {"concurrency": 3}}
    assert s.getint("PLAYWRIGHT_MAX_PAGES_PER_CONTEXT") == 6
    assert s.getfloat("PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT") == 30000.0
    assert s.getdict("DOWNLOADER_MIDDLEWARES")[RenderMiddleware] == 950
    crawler = crawler_with(settings)
    assert isinstance(crawler.request_fingerprinter, RenderFingerprinter)
    assert isinstance(crawler.request_fingerprinter._base, RequestFingerprinter)


def test_plain_requests_keep_scrapys_http11_path() -> None:
    """scrapy-playwright's handler is Scrapy's HTTP/1.1 handler plus a branch on
    meta["playwright"]: a request without it goes to the parent's download_request."""
    from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler
    from scrapy_playwright.handler import ScrapyPlaywrightDownloadHandler

    assert issubclass(ScrapyPlaywrightDownloadHandler, HTTP11DownloadHandler)


def test_browser_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError) as info:
        find_browser("")
    assert str(info.value) == (
        "rendering pages needs Chromium, and none was found on PATH (looked for chromium, "
        "chromium-browser, google-chrome, google-chrome-stable). On Debian/Ubuntu: apt-get install "
        "chromium. Or set WFCRAWL_RENDER_BROWSER_PATH."
    )
    with pytest.raises(ConfigurationError) as info:
        with_addon({"WFCRAWL_RENDER_ENABLED": True, "WFCRAWL_RENDER_BROWSER_PATH": "/nonexistent/chromium"})
    assert str(info.value) == "WFCRAWL_RENDER_BROWSER_PATH='/nonexistent/chromium' is not an executable file"


def test_foreign_http_handler_is_an_error(fake_browser: str) -> None:
    h2 = "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler"
    with pytest.raises(ConfigurationError) as info:
        with_addon({"WFCRAWL_RENDER_ENABLED": True, "WFCRAWL_RENDER_BROWSER_PATH": fake_browser,
                    "DOWNLOAD_HANDLERS": {"https": h2}})
    assert str(info.value) == (
        "rendering pages needs scrapy-playwright's download handler for https, "
        f"but DOWNLOAD_HANDLERS['https'] is '{h2}'"
    )


def test_rendering_needs_the_asyncio_reactor(fake_browser: str) -> None:
    base = {"WFCRAWL_RENDER_ENABLED": True, "WFCRAWL_RENDER_BROWSER_PATH": fake_browser}
    with pytest.raises(ConfigurationError) as info:
        with_addon({**base, "TWISTED_REACTOR_ENABLED": False})
    assert str(info.value) == "rendering pages needs a Twisted reactor, but TWISTED_REACTOR_ENABLED is false"
    with pytest.raises(ConfigurationError) as info:
        with_addon({**base, "TWISTED_REACTOR": "twisted.internet.epollreactor.EPollReactor"})
    assert str(info.value) == (
        "rendering pages needs TWISTED_REACTOR='twisted.internet.asyncioreactor.AsyncioSelectorReactor', "
        "not 'twisted.internet.epollreactor.EPollReactor'"
    )


def test_workflow_turns_rendering_on_unless_switched_off() -> None:
    plan = load_text(WORKFLOW, "js.yaml")
    settings = Settings()
    apply_render_policy(settings, plan)
    assert settings.getbool("WFCRAWL_RENDER_ENABLED") and settings.getpriority("WFCRAWL_RENDER_ENABLED") == 30
    off = Settings()
    off.set("WFCRAWL_RENDER_ENABLED", False, priority="cmdline")
    with pytest.raises(ConfigurationError) as info:
        apply_render_policy(off, plan)
    assert str(info.value) == (
        "workflow 'js' (js.yaml) renders pages in a browser (render blocks), but WFCRAWL_RENDER_ENABLED is false"
    )


def test_fingerprints_distinct_only_when_the_block_says_so(fake_browser: str) -> None:
    crawler = crawler_with({"WFCRAWL_RENDER_ENABLED": True, "WFCRAWL_RENDER_BROWSER_PATH": fake_browser})
    fp = crawler.request_fingerprinter.fingerprint
    url = "http://127.0.0.1:1/js/detail.html?id=1"
    plain = fp(Request(url))
    assert plain == RequestFingerprinter().fingerprint(Request(url))
    assert fp(Request(url, meta={RENDER: {"wait_for": "css=h1"}})) == plain
    distinct = fp(Request(url, meta={RENDER: {"distinct": True}}))
    assert distinct != plain and len(distinct) == len(plain)


def _middleware(fake_browser: str, tmp_path: Path) -> tuple[RenderMiddleware, Crawler]:
    crawler = crawler_with({
        "WFCRAWL_RENDER_ENABLED": True, "WFCRAWL_RENDER_BROWSER_PATH": fake_browser,
        "WFCRAWL_RENDER_SCREENSHOT_DIR": str(tmp_path / "shots"), "WFCRAWL_RENDER_RETRY_TIMES": 1,
    })
    crawler.spider = crawler._create_spider("js")
    return RenderMiddleware.from_crawler(crawler), crawler


def _as_json(request: Request) -> str:
    return json.dumps(request.to_dict()["meta"])  # raises TypeError on anything that is not plain data


def test_middleware_builds_playwright_meta_and_leaves_plain_data(fake_browser: str, tmp_path: Path) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError

    mw, crawler = _middleware(fake_browser, tmp_path)
    block = {"wait_for": "css=h1", "timeout": 2, "screenshot": {"full_page": False}}
    request = Request("http://127.0.0.1:1/js/a.html", meta={RENDER: block, PHASE: "p"})
    plain_meta = _as_json(request)
    fingerprint = crawler.request_fingerprinter.fingerprint(request).hex()

    mw.process_request(request)  # returns None (annotated): the request goes on to the browser
    meta = request.meta
    assert (meta["playwright"], meta["playwright_context"], meta["download_slot"]) == (True, "wfcrawl", "wfcrawl-render")
    assert meta["playwright_page_goto_kwargs"] == {"wait_until": "load", "timeout": 2000.0}
    script = meta["playwright_page_methods"][0].method.__self__
    assert script.screenshot_path == str(tmp_path / "shots" / "js" / f"{fingerprint}.png")
    with pytest.raises(TypeError):
        _as_json(request)  # Python objects while in the downloader...

    retry = mw.process_exception(request, PlaywrightTimeoutError("Timeout 2000ms exceeded."))
    assert isinstance(retry, Request)
    _as_json(request)  # ...and plain data again once out of it
    assert retry.meta[RENDER] is block and retry.meta["retry_times"] == 1
    assert "playwright_page_methods" not in retry.meta

    mw.process_request(retry)
    assert mw.process_exception(retry, PlaywrightTimeoutError("again")) is None  # retries used up
    stats = crawler.stats.get_stats()
    assert {k: v for k, v in stats.items() if k.startswith("wfcrawl/render/")} == {
        "wfcrawl/render/requests": 2,
        "wfcrawl/render/failed/timeout": 2,
        "wfcrawl/render/retry/count": 1,
        "wfcrawl/render/retry/reason_count/timeout": 1,
        "wfcrawl/render/retry/max_reached": 1,
    }
    assert json.loads(_as_json(retry)) == {**json.loads(plain_meta), **json.loads(_as_json(retry))}

    # A rendered response: the outcome is recorded as plain data.
    ok = Request("http://127.0.0.1:1/js/b.html", meta={RENDER: {}})
    mw.process_request(ok)
    ok.meta["playwright_page_methods"][0].result = {"clicks": 2, "scrolls": 0}
    response = HtmlResponse(ok.url, body=b"<html></html>", request=ok, flags=["playwright"])
    assert mw.process_response(ok, response) is response
    assert response.meta[RENDER_RESULT] == {"clicks": 2, "scrolls": 0}
    assert crawler.stats.get_value("wfcrawl/render/clicks") == 2
    _as_json(ok)


def test_non_browser_errors_are_left_to_scrapy(fake_browser: str, tmp_path: Path) -> None:
    mw, crawler = _middleware(fake_browser, tmp_path)
    request = Request("http://127.0.0.1:1/js/a.html", meta={RENDER: {}})
    mw.process_request(request)
    assert mw.process_exception(request, ConnectionRefusedError()) is None
    assert "playwright_page_methods" not in request.meta
    assert crawler.stats.get_value("wfcrawl/render/failed/browser") is None


def test_settings_documented() -> None:
    doc = (ROOT / "docs" / "rendering.md").read_text()
    names = [name for name, spec in table().items() if spec.page == "rendering.md"]
    assert len(names) == 11 and all(name.startswith("WFCRAWL_RENDER_") for name in names)
    assert [name for name in names if f"`{name}`" not in doc] == []
