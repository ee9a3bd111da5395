"""wfcrawl.handlers.aiohttp: the same crawls as with Scrapy's default handler, the same outcomes.

Every test runs once with Scrapy's HTTP/1.1 handler and once with the aiohttp
handler, and asserts the exact outcome for both: the handler only fetches,
Scrapy's downloader middlewares (retries, redirects, cookies, robots.txt,
compression, proxies, size limits) sit above it.
"""

from __future__ import annotations

import gzip
import importlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import SCRAPY_HAS_AIOHTTP, Crawl, needs_scrapy_aiohttp, stat_items
from tests.mockserver import MockServer
from tests.test_crawl_robustness import BROKEN, COMMON, matches

AIOHTTP = "wfcrawl.handlers.aiohttp.AiohttpDownloadHandler"
HANDLERS = {
    "scrapy": (),
    "aiohttp": ("-s", "DOWNLOAD_HANDLERS=" + json.dumps({"http": AIOHTTP, "https": AIOHTTP})),
}


@pytest.fixture(params=[
    pytest.param(name, marks=needs_scrapy_aiohttp if name == "aiohttp" else ()) for name in sorted(HANDLERS)
])
def handler(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return HANDLERS[request.param]


def wfcrawl_stats(crawl: Crawl) -> dict[str, Any]:
    stats = stat_items(crawl.stats, "wfcrawl/")
    return {k: v for k, v in stats.items() if k not in ("workflow", "execution_id") and not k.startswith("phases/")}


@needs_scrapy_aiohttp
def test_handler_is_used(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl(BROKEN, *HANDLERS["aiohttp"], base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    # Scrapy's own warning when its aiohttp handler is built, once per scheme (http, https).
    assert result.stderr.count("AiohttpDownloadHandler is experimental") == 2


def test_bad_pages_retries_and_redirect_loop(
    server: MockServer, crawl: Callable[..., Crawl], handler: tuple[str, ...]
) -> None:
    # binary, empty, bad markup, 3 MB page, 404, 500 (2 retries), endless redirect.
    result = crawl(BROKEN, *handler, base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("page") == [{"name": "Huge page"}, {"name": "OK page"}, {"name": "Still here"}]
    assert wfcrawl_stats(result) == {**COMMON, **matches(3, 2), "pages/failed": 3, "pages/page": 5, "items/page": 3}
    assert (result.stats["retry/count"], result.stats["retry/max_reached"]) == (2, 1)
    # Scrapy's RedirectMiddleware: REDIRECT_MAX_TIMES (20) redirects, then it gives up.
    assert result.stats["downloader/response_status_count/302"] == 21
    assert result.stats["downloader/response_status_count/500"] == 3


def test_download_maxsize(server: MockServer, crawl: Callable[..., Crawl], handler: tuple[str, ...]) -> None:
    result = crawl(BROKEN, *handler, "-s", "DOWNLOAD_MAXSIZE=1000000", base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("page") == [{"name": "OK page"}, {"name": "Still here"}]
    assert wfcrawl_stats(result) == {
        **COMMON, **matches(2, 1), "pages/failed": 4, "pages/failed/DownloadCancelledError": 1, "pages/page": 4,
        "items/page": 2,
    }


SLOW = """\
name: slow
base_url: http://localhost
start_urls: ["/slow/1?delay=3", /slow/2]
obey_robots: false
phases:
  page:
    nodes:
      - type: extract
        item: page
        fields:
          n: {css: p.n, type: int}
"""


def test_download_timeout_is_retried_then_counted(
    fresh_server: MockServer, crawl: Callable[..., Crawl], handler: tuple[str, ...]
) -> None:
    result = crawl(SLOW, *handler, "-s", "DOWNLOAD_TIMEOUT=1", "-s", "RETRY_TIMES=1", base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("page") == [{"n": 2}]
    assert wfcrawl_stats(result) == {
        "pages/page": 1, "items/page": 1, "pages/failed": 1, "pages/failed/DownloadTimeoutError": 1,
        "start_requests/fetched": 1, "start_requests/failed": 1, "nodes/matched/page/extract#0": 1,
        "outcome": "succeeded",
    }
    assert result.stats["retry/reason_count/scrapy.exceptions.DownloadTimeoutError"] == 1
    assert sorted(r.path for r in fresh_server.requests) == ["/slow/1?delay=3", "/slow/1?delay=3", "/slow/2"]


def test_cookies_and_forms(fresh_server: MockServer, crawl: Callable[..., Crawl], handler: tuple[str, ...]) -> None:
    # The login flow: CSRF token and __VIEWSTATE carried over, session cookie set and sent back.
    result = crawl(
        "workflows/login.yaml", *handler, base_url=fresh_server.url,
        env={"SHOP_USER": "demo", "SHOP_PASSWORD": "s3cret"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("user") == [{"name": "demo"}]
    assert result.fields("order") == [{"id": "A-1", "total": 10.0}, {"id": "A-2", "total": 25.5}]
    requests = [(r.method, r.path) for r in fresh_server.requests]
    assert requests[:3] == [("GET", "/login"), ("POST", "/login"), ("GET", "/account")]
    assert sorted(requests[3:]) == [("GET", "/account/order/A-1"), ("GET", "/account/order/A-2")]
    assert all("session=" in r.headers.get("Cookie", "") for r in fresh_server.requests[2:])


ROBOTS = """\
name: robots
base_url: http://localhost
start_urls: [/shop/index.html]
obey_robots: true
phases:
  page:
    nodes:
      - type: extract
        item: page
        fields:
          title: title
"""


def test_robots_txt_is_fetched_through_the_handler(
    fresh_server: MockServer, crawl: Callable[..., Crawl], handler: tuple[str, ...]
) -> None:
    result = crawl(ROBOTS, *handler, base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [r.path for r in fresh_server.requests] == ["/robots.txt", "/shop/index.html"]
    assert (result.stats["robotstxt/request_count"], result.stats["robotstxt/response_status_count/404"]) == (1, 1)
    assert result.fields("page") == [{"title": "Home | Demo Shop"}]


ECHO = """\
name: echo
base_url: http://localhost
start_urls: [/echo]
obey_robots: false
phases:
  page:
    nodes:
      - type: extract
        item: request
        fields:
          path: {jmespath: path}
          proxy_auth: {jmespath: 'headers."Proxy-Authorization"'}
          user_agent: {jmespath: 'headers."User-Agent"'}
"""


def test_http_proxy_with_credentials(
    fresh_server: MockServer, crawl: Callable[..., Crawl], handler: tuple[str, ...]
) -> None:
    # The fixture server answers absolute-form requests too: it is the proxy here.
    # HttpProxyMiddleware reads http_proxy and moves the credentials into a header.
    proxy = fresh_server.url.replace("http://", "http://user:pa%20ss@")
    env = {"http_proxy": proxy, "no_proxy": "", "NO_PROXY": ""}
    result = crawl(ECHO, *handler, "-s", "USER_AGENT=wfcrawl-test", base_url="http://example.invalid", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("request") == [
        {"path": "http://example.invalid/echo", "proxy_auth": "Basic dXNlcjpwYSBzcw==", "user_agent": "wfcrawl-test"}
    ]
    assert [r.path for r in fresh_server.requests] == ["http://example.invalid/echo"]


class _CompressedHandler(BaseHTTPRequestHandler):
    """gzip bodies, sent whole or chunked: what the fixture server does not serve."""

    protocol_version = "HTTP/1.1"
    PAGE = b"<html><head><title>Zipped</title></head><body><h1 class='name'>gzip ok</h1></body></html>"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = gzip.compress(self.PAGE, mtime=0)
        chunked = self.path.startswith("/chunked")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Encoding", "gzip")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if chunked:
            for i in range(0, len(body), 16):
                part = body[i : i + 16]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)


@pytest.fixture
def gzip_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _CompressedHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


ZIPPED = """\
name: zipped
base_url: http://localhost
start_urls: [/whole, /chunked]
obey_robots: false
phases:
  page:
    nodes:
      - type: extract
        item: page
        fields:
          name: h1.name
          url: {const: x}
"""


def test_gzip_and_chunked_bodies(gzip_server: str, crawl: Callable[..., Crawl], handler: tuple[str, ...]) -> None:
    result = crawl(ZIPPED, *handler, base_url=gzip_server)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(i["_meta"]["url"] for i in result.of_type("page")) == [gzip_server + "/chunked", gzip_server + "/whole"]
    assert result.fields("page") == [{"name": "gzip ok", "url": "x"}, {"name": "gzip ok", "url": "x"}]
    assert result.stats["httpcompression/response_count"] == 2


@pytest.mark.skipif(SCRAPY_HAS_AIOHTTP, reason="this Scrapy ships the aiohttp handler")
def test_older_scrapy_gets_a_clear_error() -> None:
    with pytest.raises(ImportError, match=re.escape("needs Scrapy >= 2.19 and aiohttp")):
        importlib.import_module("wfcrawl.handlers.aiohttp")
