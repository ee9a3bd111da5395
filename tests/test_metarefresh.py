"""The fast profile's MetaRefreshMiddleware: Scrapy's redirects, exactly, without
decoding pages that cannot hold a meta refresh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from scrapy import Request
from scrapy.downloadermiddlewares.redirect import MetaRefreshMiddleware as ScrapyMetaRefreshMiddleware
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler

from tests.conftest import Crawl
from tests.mockserver import MockServer
from wfcrawl.middlewares.metarefresh import MetaRefreshMiddleware

REFRESH = '<meta http-equiv="refresh" content="0; url=/moved">'
FILLER = "é" * 5000  # 5000 characters, 10,000 bytes in UTF-8

BODIES: dict[str, tuple[bytes, str | None]] = {
    # name: (body, expected redirect path or None)
    "none": (b"<html><head><title>x</title></head><body>hello</body></html>", None),
    "utf8": (f"<html><head>{REFRESH}</head></html>".encode(), "/moved"),
    "upper": (b'<HTML><HEAD><META HTTP-EQUIV="REFRESH" CONTENT="0;URL=/moved"></HEAD></HTML>', "/moved"),
    # METAREFRESH_IGNORE_TAGS is empty by default: a tag in a script counts.
    "in_script": (f"<html><script>var s = '{REFRESH}';</script></html>".encode(), "/moved"),
    "word_only": (b"<html><body>Press F5 to refresh</body></html>", None),
    # Beyond Scrapy's 4096 characters (but within 4 x 4096 bytes): not a redirect.
    "late": (f"<html><body>{FILLER}{REFRESH}</body></html>".encode(), None),
    "early_after_multibyte": (f"<html><head>{'é' * 1000}{REFRESH}</head></html>".encode(), "/moved"),
    "cp1252": (f'<html><head><meta charset="windows-1252">{"ü" * 10}{REFRESH}</head></html>'.encode("cp1252"), "/moved"),
    "utf16": (f"<html><head>{REFRESH}</head></html>".encode("utf-16"), "/moved"),
    "utf16_none": ("<html><body>hello</body></html>".encode("utf-16"), None),
}


class CountingResponse(HtmlResponse):
    """Counts decodings of the whole body."""

    decoded = 0

    @property
    def text(self) -> str:
        CountingResponse.decoded += 1
        return super().text


def _middleware(cls: Any) -> Any:
    return cls.from_crawler(get_crawler())


def _run(middleware: Any, body: bytes) -> Any:
    request = Request("http://example.com/page")
    response = CountingResponse("http://example.com/page", body=body, request=request)
    return middleware.process_response(request, response)


@pytest.mark.parametrize("name", sorted(BODIES))
def test_same_redirects_as_scrapy(name: str) -> None:
    body, expected = BODIES[name]
    ours = _run(_middleware(MetaRefreshMiddleware), body)
    scrapys = _run(_middleware(ScrapyMetaRefreshMiddleware), body)
    assert type(ours) is type(scrapys)
    if expected is None:
        assert isinstance(ours, HtmlResponse)
    else:
        assert isinstance(ours, Request)
        assert ours.url == scrapys.url == f"http://example.com{expected}"
        assert ours.meta["redirect_reasons"] == scrapys.meta["redirect_reasons"] == ["meta refresh"]


def test_pages_without_refresh_are_not_decoded() -> None:
    CountingResponse.decoded = 0
    for name in ("none", "late"):
        assert isinstance(_run(_middleware(MetaRefreshMiddleware), BODIES[name][0].replace(b"refresh", b"xx")), HtmlResponse)
    assert CountingResponse.decoded == 0
    _run(_middleware(ScrapyMetaRefreshMiddleware), BODIES["none"][0])
    assert CountingResponse.decoded > 0  # Scrapy's decodes the page it passes on


def test_fast_profile_puts_it_in_place_of_scrapys(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    workflow = """\
    name: refresh
    base_url: http://localhost
    start_urls: [/refresh/index.html]
    obey_robots: false
    phases:
      page:
        nodes:
          - {type: extract, item: page, fields: {title: title}}
          - {type: extract_links, css: a, marker: next}
        transitions:
          - {marker: next, to: page}
    """
    result = crawl(workflow, "-s", "LOG_LEVEL=DEBUG", base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("page") == [{"title": "Plain"}, {"title": "Target"}]
    assert result.stats["downloader/response_count"] == 3
    enabled = result.stderr.split("Enabled downloader middlewares:", 1)[1].split("]", 1)[0]
    assert "'wfcrawl.middlewares.metarefresh.MetaRefreshMiddleware'" in enabled
    assert "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware" not in enabled
    # A project that names Scrapy's middleware keeps it.
    kept = crawl(workflow, "-s", "LOG_LEVEL=DEBUG", "-s",
                 'DOWNLOADER_MIDDLEWARES={"scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": 580}',
                 base_url=server.url)
    assert kept.fields("page") == [{"title": "Plain"}, {"title": "Target"}]
    enabled = kept.stderr.split("Enabled downloader middlewares:", 1)[1].split("]", 1)[0]
    assert "'scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware'" in enabled
    assert "wfcrawl.middlewares.metarefresh" not in enabled
