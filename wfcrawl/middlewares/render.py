"""Downloader middleware: plain-data render blocks in, browser pages out.

A request to render carries its render block in ``meta["wfcrawl_render"]``
(plain data, so it survives Redis). Right before the download this middleware
adds what scrapy-playwright needs (``playwright``, the context, goto options,
and a page init callback and page method, which are Python objects); right
after it, it removes the objects again and records the outcome as plain data in
``meta["wfcrawl_render_result"]``. A page that times out, crashes or fails in
the browser is counted by reason and retried ``WFCRAWL_RENDER_RETRY_TIMES``
times; then the request fails to the spider's errback and the crawl goes on.

Installed by the add-on when rendering is on (see :mod:`wfcrawl.render.setup`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.exceptions import NotConfigured
from scrapy.http import Response

from wfcrawl.context import CrawlContext
from wfcrawl.meta import RENDER, RENDER_RESULT
from wfcrawl.render.actions import PageScript
from wfcrawl.render.setup import CONTEXT, GUARD_PROXY, SLOT, RenderConfig, artifact_dir
from wfcrawl.settings.table import read

logger = logging.getLogger(__name__)

#: Meta keys holding Python objects while the request is in the downloader.
_OBJECT_KEYS = ("playwright_page_methods", "playwright_page_init_callback")


def render_failure_reason(exc: BaseException) -> str | None:
    """``timeout``, ``crash``, ``closed`` or ``browser`` for browser failures; None otherwise."""
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError

    if isinstance(exc, PlaywrightTimeoutError):
        return "timeout"
    if isinstance(exc, PlaywrightError):
        message = str(exc).lower()
        if "crash" in message:
            return "crash"
        if "closed" in message:
            return "closed"
        return "browser"
    return None


class RenderMiddleware:
    """Builds scrapy-playwright meta from ``wfcrawl_render``; counts and retries failures."""

    def __init__(self, crawler: Crawler, config: RenderConfig) -> None:
        self.crawler = crawler
        self.config = config
        self.stats = crawler.stats
        name = CrawlContext.of(crawler).workflow
        self.screenshot_dir = artifact_dir(config.screenshot_dir, name)
        self.html_dir = artifact_dir(config.html_dir, name)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RenderMiddleware:
        config = RenderConfig.from_settings(crawler.settings)
        if not config.enabled:
            raise NotConfigured("rendering is off (WFCRAWL_RENDER_ENABLED)")
        middleware = cls(crawler, config)
        proxy = read(crawler.settings, GUARD_PROXY)
        if proxy is not None:  # the SSRF guard of the browser (wfcrawl.security.proxy)
            proxy.on_refused = middleware._browser_refused
            crawler.signals.connect(proxy.start, signal=signals.engine_started)
            crawler.signals.connect(proxy.close, signal=signals.engine_stopped)
        return middleware

    def _browser_refused(self, refusal: Any) -> None:
        self.stats.inc_value("wfcrawl/ssrf/refused")
        self.stats.inc_value(f"wfcrawl/ssrf/refused/{refusal.reason}")
        self.stats.inc_value("wfcrawl/render/ssrf_refused")

    def process_request(self, request: Request) -> None:
        block = request.meta.get(RENDER)
        if block is None:  # an empty block ({}) renders with the defaults
            return
        from scrapy_playwright.page import PageMethod

        fingerprint = self.crawler.request_fingerprinter.fingerprint(request).hex()
        script = PageScript(
            block,
            timeout=self.config.timeout,
            idle=self.config.idle,
            screenshot=os.path.join(self.screenshot_dir, f"{fingerprint}.png") if block.get("screenshot") else None,
            html=os.path.join(self.html_dir, f"{fingerprint}.html") if block.get("html") else None,
        )
        request.meta.update({
            "playwright": True,
            "playwright_context": CONTEXT,
            "playwright_page_goto_kwargs": {
                "wait_until": block.get("wait_until", "load"),
                "timeout": script.timeout * 1000,
            },
            "playwright_page_init_callback": script.attach,
            "playwright_page_methods": [PageMethod(script.run)],
            # Requests waiting for a browser page wait here, not in a domain's slot.
            "download_slot": SLOT,
        })
        self.stats.inc_value("wfcrawl/render/requests")

    def process_response(self, request: Request, response: Response) -> Response:
        if RENDER not in request.meta:
            return response
        methods = request.meta.get("playwright_page_methods") or ()
        self._strip(request)
        if "playwright" not in response.flags:
            # Something before the browser answered (e.g. a cache): not rendered.
            return response
        result = dict(methods[0].result) if methods and isinstance(methods[0].result, dict) else {}
        request.meta[RENDER_RESULT] = result
        self.stats.inc_value("wfcrawl/render/pages")
        for key in ("clicks", "scrolls"):
            if result.get(key):
                self.stats.inc_value(f"wfcrawl/render/{key}", result[key])
        if "screenshot" in result:
            self.stats.inc_value("wfcrawl/render/screenshots")
        if "html" in result:
            self.stats.inc_value("wfcrawl/render/html")
        return response

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if RENDER not in request.meta:
            return None
        self._strip(request)
        reason = render_failure_reason(exception)
        if reason is None:
            return None  # not the browser's doing: Scrapy's own middlewares decide
        self.stats.inc_value(f"wfcrawl/render/failed/{reason}")
        spider = self.crawler.spider
        if request.meta.get("dont_retry") or spider is None:
            return None
        # Logs the give-up itself; the failure then reaches the spider's errback.
        return get_retry_request(
            request,
            spider=spider,
            reason=reason,
            max_retry_times=self.config.retry_times,
            logger=logger,
            stats_base_key="wfcrawl/render/retry",
        )

    @staticmethod
    def _strip(request: Request) -> None:
        """Remove the Python objects: the request must stay plain data (Redis, retries)."""
        for key in _OBJECT_KEYS:
            request.meta.pop(key, None)
