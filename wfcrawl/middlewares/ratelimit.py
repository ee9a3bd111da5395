"""Per-domain delay for the whole fleet: a downloader middleware with a Redis-side limiter.

Scrapy's ``DOWNLOAD_DELAY`` is per process: N instances would hit a site N times
as often as the workflow's ``rate_limit.delay`` promises. Before a request goes
to its download slot, this middleware reserves the slot's next send time in
Redis (one atomic script: ``at = max(now, next)``, ``next = at + delay``) and
waits until then: until that moment, not for the wait Redis reported (the answer
may reach the event loop late). Reservations of all instances of a crawl run are
spaced by the delay, so the site sees the delay between any two requests, give or
take the jitter between the end of the wait and the request reaching the site (event
loop, connection setup; docs/distributed.md has the measured tolerance). A request
woken more than ``LATE_AFTER`` after its moment (a busy loop, a stopped process)
reserves again rather than go out on another's turn.

The slot's own per-process delay is set to 0 for the slots it governs: it would
only add that jitter a second time. If Redis cannot be reached, the middleware
falls back to the same delay per process (counted as ``wfcrawl/ratelimit/errors``):
politeness degrades to one instance's, the crawl does not stop.
"""

from __future__ import annotations

import logging
import time

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import sleep

from wfcrawl.distributed.config import RedisCrawlConfig, keys_for_spider
from wfcrawl.distributed.connection import client_from_settings, redis_url
from wfcrawl.distributed.ops import LeaseStore
from wfcrawl.settings.table import read
from wfcrawl.utils.threads import ThreadWorker

logger = logging.getLogger(__name__)

#: Seconds after its reserved send time a request may still go out; woken later, it
#: reserves again (``wfcrawl/ratelimit/late``). Half the documented 50 ms tolerance: the
#: other half is the jitter between the end of the wait and the request reaching the site.
LATE_AFTER = 0.025


class SharedRateLimitMiddleware:
    """On when ``REDIS_URL`` is set and ``WFCRAWL_REDIS_RATE_LIMIT_ENABLED`` is true."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        settings = crawler.settings
        self.default_delay = settings.getfloat("DOWNLOAD_DELAY")
        self.slot_delays = {
            name: float(conf["delay"]) for name, conf in settings.getdict("DOWNLOAD_SLOTS").items()
            if isinstance(conf, dict) and "delay" in conf
        }
        self.store: LeaseStore | None = None
        # Its own thread: reservations never wait behind the broker's batches.
        self._worker = ThreadWorker("wfcrawl-ratelimit")
        self._warned = False
        self._governed: set[str] = set()
        self._local_next: dict[str, float] = {}  # fallback: per-process send times

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SharedRateLimitMiddleware:
        if not redis_url(crawler.settings) or not read(crawler.settings, "WFCRAWL_REDIS_RATE_LIMIT_ENABLED"):
            raise NotConfigured
        mw = cls(crawler)
        crawler.signals.connect(mw.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(mw.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(mw.request_reached_downloader, signal=signals.request_reached_downloader)
        return mw

    def spider_opened(self, spider: Spider) -> None:
        config = RedisCrawlConfig.from_settings(self.crawler.settings)
        self.store = LeaseStore(
            client_from_settings(self.crawler.settings), keys_for_spider(spider, config),
            instance="", lease_ttl=config.lease_ttl,
        )
        self._worker.start()

    def spider_closed(self) -> None:
        self._worker.stop()

    def request_reached_downloader(self, request: Request) -> None:
        # The download slot exists now (Scrapy creates it on the first request);
        # AutoThrottle adjusts slot.delay the same way.
        slot_key = request.meta.get("download_slot")
        if slot_key in self._governed:
            slot = self.crawler.engine.downloader.slots.get(slot_key)
            if slot is not None and slot.delay:
                slot.delay = 0

    def delay_for(self, slot: str) -> float:
        return self.slot_delays.get(slot, self.default_delay)

    async def process_request(self, request: Request) -> None:
        store = self.store
        if store is None:
            return
        slot = self.crawler.engine.downloader.get_slot_key(request)
        delay = self.delay_for(slot)
        if delay <= 0:
            return
        self._governed.add(slot)
        stats = self.crawler.stats
        while True:
            try:
                at = await self._worker.run(self._reserve, store, slot, delay)
            except Exception as exc:
                stats.inc_value("wfcrawl/ratelimit/errors")
                if not self._warned:
                    self._warned = True
                    logger.warning("Shared rate limit unavailable (%s): per-process delay only", exc)
                wait = self._local_wait(slot, delay)
                if wait > 0:
                    stats.inc_value("wfcrawl/ratelimit/waited")
                    await sleep(wait)
                return
            stats.inc_value("wfcrawl/redis/calls")
            stats.inc_value("wfcrawl/ratelimit/reservations")
            wait = at - time.monotonic()
            if wait <= 0:
                return
            stats.inc_value("wfcrawl/ratelimit/waited")
            await sleep(wait)
            # The reservation is a moment, not a duration: woken later than it (a busy event
            # loop, a stopped process), the request would go out close to the next
            # reservation, maybe another instance's. Reserve again instead.
            if time.monotonic() - at <= LATE_AFTER:
                return
            stats.inc_value("wfcrawl/ratelimit/late")

    @staticmethod
    def _reserve(store: LeaseStore, slot: str, delay: float) -> float:
        """The reserved send time on this process's monotonic clock. Taken in the worker
        thread as the answer arrives: the reactor may resume the caller later."""
        wait = store.reserve(slot, delay)
        return time.monotonic() + wait

    def _local_wait(self, slot: str, delay: float) -> float:
        now = time.monotonic()
        at = max(now, self._local_next.get(slot, 0.0))
        self._local_next[slot] = at + delay
        return at - now
