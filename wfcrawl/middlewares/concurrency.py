"""Per-slot concurrency, enforced before a request reaches Scrapy's downloader.

Scrapy limits the requests in flight per download slot
(``CONCURRENT_REQUESTS_PER_DOMAIN``, ``CONCURRENT_REQUESTS_PER_IP``,
``DOWNLOAD_SLOTS[...]["concurrency"]``; a workflow's ``rate_limit.concurrency``)
in ``Downloader._process_queue``. Since Scrapy 2.14, with the asyncio reactor
(Scrapy's default), that loop starts each download as an asyncio task and
counts it as *transferring* only once the task runs: by then the loop has
already emptied the slot's queue, so every queued request is sent at once. A
plain spider with ``CONCURRENT_REQUESTS_PER_DOMAIN = 2`` had 32 requests in
flight at the server (Scrapy 2.14.2 to 2.19.0; 2 on 2.13.4 or the epoll
reactor).

This middleware holds a request back until its slot has room, counting the
requests of each slot from the moment they are let into the downloader until
Scrapy's public ``request_left_downloader`` signal says their transfer ended.
It uses only public API (``Downloader.get_slot_key``, the signal, the settings),
so it does not depend on how a Scrapy version schedules downloads, and it is
harmless where Scrapy's own limit works: the two limits are the same number.

It must be the last downloader middleware before the download (the highest
order), so that every request it lets through goes to the downloader: a
middleware after it that answers from a cache would otherwise hold a place
until its response passes back through here (handled, but later).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Response
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

from wfcrawl.settings.table import read

logger = logging.getLogger(__name__)

#: Order in DOWNLOADER_MIDDLEWARES: after every middleware of Scrapy's (the highest is 900).
ORDER = 1000


class _Slot:
    __slots__ = ("active", "concurrency", "waiting")

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.active = 0
        self.waiting: deque[tuple[Request, Deferred[None]]] = deque()


class SlotConcurrencyMiddleware:
    """On unless ``WFCRAWL_SLOT_CONCURRENCY_ENABLED`` is false."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        settings = crawler.settings
        self.default = settings.getint("CONCURRENT_REQUESTS_PER_IP") or settings.getint(
            "CONCURRENT_REQUESTS_PER_DOMAIN"
        )
        self.per_slot = {
            key: int(conf["concurrency"])
            for key, conf in settings.getdict("DOWNLOAD_SLOTS").items()
            if isinstance(conf, dict) and "concurrency" in conf
        }
        self.slots: dict[str, _Slot] = {}
        #: Requests let through, and the slot they hold a place in.
        self.holding: dict[Request, _Slot] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SlotConcurrencyMiddleware:
        if not read(crawler.settings, "WFCRAWL_SLOT_CONCURRENCY_ENABLED"):
            raise NotConfigured
        mw = cls(crawler)
        crawler.signals.connect(mw.request_left_downloader, signal=signals.request_left_downloader)
        return mw

    def _slot(self, request: Request) -> _Slot:
        assert self.crawler.engine is not None
        key = self.crawler.engine.downloader.get_slot_key(request)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = _Slot(self.per_slot.get(key, self.default))
        return slot

    async def process_request(self, request: Request) -> None:
        # A coroutine (Scrapy deprecates middlewares that return a Deferred).
        slot = self._slot(request)
        if slot.concurrency <= 0 or (slot.active < slot.concurrency and not slot.waiting):
            self._hold(request, slot)
            return
        entry: tuple[Request, Deferred[None]]

        def cancel(_: Deferred[None]) -> None:  # the engine gave up on the request
            slot.waiting.remove(entry)

        d: Deferred[None] = Deferred(cancel)
        entry = (request, d)
        slot.waiting.append(entry)
        await maybe_deferred_to_future(d)

    def _hold(self, request: Request, slot: _Slot) -> None:
        slot.active += 1
        self.holding[request] = slot

    def _release(self, request: Request) -> None:
        slot = self.holding.pop(request, None)
        if slot is None:
            return
        slot.active -= 1
        while slot.waiting and slot.active < slot.concurrency:
            waiting, d = slot.waiting.popleft()
            self._hold(waiting, slot)
            d.callback(None)

    def request_left_downloader(self, request: Request, **kwargs: Any) -> None:
        self._release(request)

    # A middleware after this one answered (a cache) or failed: the request never
    # reached the downloader, so no signal will release its place.
    def process_response(self, request: Request, response: Response) -> Response:
        self._release(request)
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        self._release(request)
