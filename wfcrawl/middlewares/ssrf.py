"""SSRF guard for crawl requests: refuse, before download, URLs the policy forbids.

Every request of a crawl goes through this downloader middleware (it is the
first, order 10): start URLs, links, every redirect and meta refresh (Scrapy
sends them through the downloader middlewares again), robots.txt, form
submissions. The URL's host is resolved (in a thread, cached per crawl) and
checked with :class:`~wfcrawl.security.ssrf.AddressPolicy`; the address the
connection is then made to is checked again by the resolver
(:mod:`wfcrawl.security.resolvers`). Enabled by ``WFCRAWL_SSRF_GUARD_ENABLED``
(launchers turn it on for the crawls they start); docs/launching.md says what
else is covered (browser, webhooks, aiohttp, item schemas).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.threads import deferToThread

# The policy and the resolver lived here; they are importable from here still.
from wfcrawl.security.resolvers import GuardedResolver, SSRFResolutionRefused, policy_from_settings
from wfcrawl.security.ssrf import AddressPolicy, Refusal, classify, url_port

__all__ = [
    "AddressPolicy", "GuardedResolver", "Refusal", "SSRFBlocked", "SSRFGuardMiddleware", "SSRFResolutionRefused",
    "classify", "url_port",
]

logger = logging.getLogger(__name__)


class SSRFBlocked(IgnoreRequest):
    """A request the SSRF guard refused (the request's errback receives it)."""


class SSRFGuardMiddleware:
    """Refuses requests to internal addresses (``WFCRAWL_SSRF_GUARD_ENABLED``).

    Counts ``wfcrawl/ssrf/refused`` and ``wfcrawl/ssrf/refused/<reason>``; logs
    the reason once per host; the request fails with :class:`SSRFBlocked`.
    """

    #: Host verdicts kept per crawl (DNS is resolved once per host, in a thread).
    CACHE_SIZE = 4096

    def __init__(self, crawler: Crawler, policy: AddressPolicy) -> None:
        self.crawler = crawler
        self.policy = policy
        self._verdicts: dict[tuple[str, int], Refusal | None] = {}
        self._logged: set[tuple[str, str]] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SSRFGuardMiddleware:
        policy = policy_from_settings(crawler.settings)
        if policy is None:
            raise NotConfigured
        return cls(crawler, policy)

    async def process_request(self, request: Request) -> None:
        refusal, host = self.policy.static_refusal(request.url)
        if refusal is None and host is not None:
            key = (host, url_port(request.url))
            if key not in self._verdicts:
                if len(self._verdicts) >= self.CACHE_SIZE:
                    self._verdicts.clear()
                self._verdicts[key] = await maybe_deferred_to_future(
                    deferToThread(self.policy.host_refusal, *key)
                )
            refusal = self._verdicts[key]
        if refusal is not None:
            self._refuse(request, refusal)

    def _refuse(self, request: Request, refusal: Refusal) -> Any:
        stats = self.crawler.stats
        assert stats is not None
        stats.inc_value("wfcrawl/ssrf/refused")
        stats.inc_value(f"wfcrawl/ssrf/refused/{refusal.reason}")
        host = urlsplit(request.url).hostname or ""
        if (host, refusal.reason) not in self._logged:
            self._logged.add((host, refusal.reason))
            logger.warning("SSRF guard refused %s: %s", request.url, refusal.message,
                           extra={"spider": self.crawler.spider})
        raise SSRFBlocked(f"SSRF guard: {refusal.message}")
