"""Per-phase stats, a progress line per phase while the crawl runs, stall detection.

:class:`PhaseStats` counts, per phase, the requests handed to the scheduler,
those refused as duplicates, those that reached the downloader, and the items
scraped (``wfcrawl/phases/<phase>/...``); the queue of a phase is
``scheduled - duplicates - requests``. Metrics and the summary read these.

:class:`CrawlProgress` logs, every ``WFCRAWL_PROGRESS_INTERVAL`` seconds, one
line for the crawl (pages, items and their rates, requests waiting in the
scheduler and in the downloader) and one per phase whose counts changed
(pages, items, requests in the scheduler), and detects stalls: no item
for ``WFCRAWL_PROGRESS_STALL_AFTER`` seconds while responses still arrive, or
no response and no item at all for that long. A stall is logged, counted
(``wfcrawl/progress/stalls``) and sent as the :data:`crawl_stalled` signal
(webhooks listen to it); once progress resumes a new stall can be detected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from twisted.internet import task

from wfcrawl.context import CrawlContext
from wfcrawl.settings.table import read

logger = logging.getLogger(__name__)

#: Signal sent when a stall is detected: ``crawl_stalled(reason, idle_seconds)``,
#: reason ``no_items`` (responses arrive, items don't) or ``no_progress``.
crawl_stalled = object()

def phase_counts(stats: Mapping[str, Any], phase: str) -> dict[str, int]:
    """pages, items, requests, duplicates and queue of one phase, from stats."""
    def get(key: str) -> int:
        value = stats.get(key, 0)
        return int(value) if isinstance(value, (int, float)) else 0

    base = f"wfcrawl/phases/{phase}/"
    counts = {
        "pages": get(f"wfcrawl/pages/{phase}"),
        "items": get(base + "items"),
        "requests": get(base + "requests"),
        "duplicates": get(base + "duplicates"),
    }
    counts["queue"] = max(0, get(base + "scheduled") - counts["duplicates"] - counts["requests"])
    return counts


def phases_of(stats: Mapping[str, Any], phases: list[str] | None = None) -> list[str]:
    """``phases`` (the workflow's, in document order), or else those seen in stats."""
    if phases:
        return phases
    return sorted({k.split("/")[2] for k in stats if k.startswith("wfcrawl/phases/") and k.count("/") == 3})


def phase_table(stats: Mapping[str, Any], phases: list[str]) -> str:
    """The per-phase table of the end-of-crawl summary."""
    if not phases:
        return ""
    columns = ("pages", "items", "requests", "duplicates", "queue")
    width = max(len("phase"), *(len(p) for p in phases))
    lines = [f"  {'phase':<{width}}" + "".join(f"  {c:>10}" for c in columns)]
    for phase in phases:
        counts = phase_counts(stats, phase)
        lines.append(f"  {phase:<{width}}" + "".join(f"  {counts[c]:>10}" for c in columns))
    return "per phase:\n" + "\n".join(lines)


def queues(engine: Any) -> tuple[int | None, int, int]:
    """Requests waiting in the scheduler (None: unknown), in the downloader (slot queues,
    held by middlewares, downloading), and downloading right now."""
    if engine is None:
        return None, 0, 0
    # Scrapy 2.19's public engine.scheduler; before it, the engine's slot holds it.
    scheduler = getattr(engine, "scheduler", None) or getattr(getattr(engine, "_slot", None), "scheduler", None)
    try:
        queued: int | None = len(scheduler)  # type: ignore[arg-type]
    except TypeError:
        queued = None
    downloader = engine.downloader
    transferring = sum(len(slot.transferring) for slot in downloader.slots.values())
    return queued, len(downloader.active), transferring


class PhaseStats:
    """Counts requests and items per phase (always on; cheap signal handlers).

    The handlers run several times per page, so they are kept lean: stat keys
    are built once per phase, and the handlers take ``**kwargs``, which lets
    pydispatch pass the signal's arguments without filtering them by name.
    """

    def __init__(self, crawler: Crawler) -> None:
        assert crawler.stats is not None
        self.stats = crawler.stats
        self._keys: dict[str, dict[str, str]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PhaseStats:
        ext = cls(crawler)
        crawler.signals.connect(ext.request_scheduled, signal=signals.request_scheduled)
        crawler.signals.connect(ext.request_dropped, signal=signals.request_dropped)
        crawler.signals.connect(ext.request_reached_downloader, signal=signals.request_reached_downloader)
        crawler.signals.connect(ext.item_scraped, signal=signals.item_scraped)
        return ext

    def _key(self, phase: str, what: str) -> str:
        keys = self._keys.get(phase)
        if keys is None:
            base = f"wfcrawl/phases/{phase}/"
            keys = self._keys[phase] = {w: base + w for w in ("scheduled", "duplicates", "requests", "items")}
        return keys[what]

    def _count(self, request: Request, what: str) -> None:
        phase = request.meta.get("wfcrawl_phase")
        if phase:  # robots.txt and other requests of no phase are not counted here
            self.stats.inc_value(self._key(phase, what))

    def request_scheduled(self, request: Request, **kwargs: Any) -> None:
        self._count(request, "scheduled")

    def request_dropped(self, request: Request, **kwargs: Any) -> None:
        self._count(request, "duplicates")

    def request_reached_downloader(self, request: Request, **kwargs: Any) -> None:
        self._count(request, "requests")

    def item_scraped(self, item: Any, **kwargs: Any) -> None:
        meta = item.get("_meta") if isinstance(item, dict) else None
        phase = meta.get("phase") if isinstance(meta, dict) else None
        if phase:
            self.stats.inc_value(self._key(phase, "items"))


class CrawlProgress:
    """The periodic progress line and stall detection."""

    def __init__(self, crawler: Crawler, interval: float, stall_after: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.crawler = crawler
        self.interval = interval
        self.stall_after = stall_after
        self.clock = clock
        self.loop: task.LoopingCall | None = None
        #: Counts at the last progress line, per phase ("": the whole crawl).
        self.last: dict[str, dict[str, int]] = {}
        self.last_time = 0.0
        self.responses = self.items = 0
        self.response_at = self.item_at = 0.0
        self.stalled: str | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlProgress:
        settings = crawler.settings
        if not read(settings, "WFCRAWL_PROGRESS_ENABLED"):
            raise NotConfigured
        ext = cls(crawler, read(settings, "WFCRAWL_PROGRESS_INTERVAL"), read(settings, "WFCRAWL_PROGRESS_STALL_AFTER"))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def spider_opened(self, spider: Spider) -> None:
        self.last_time = self.response_at = self.item_at = self.clock()
        self.loop = task.LoopingCall(self.tick)
        self.loop.start(self.interval, now=False)

    def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()

    def tick(self) -> None:
        assert self.crawler.stats is not None
        stats = self.crawler.stats.get_stats()
        now = self.clock()
        self.log_progress(stats, now)
        self.check_stall(stats, now)
        self.last_time = now

    def log_progress(self, stats: Mapping[str, Any], now: float) -> None:
        """One line for the crawl (with the real queues: scheduler, downloader), one more
        per phase whose counts changed since the last line."""
        minutes = max(now - self.last_time, 1e-9) / 60
        spider = self.crawler.spider
        phases = phases_of(stats, CrawlContext.of(self.crawler).phases)
        pages = sum(phase_counts(stats, p)["pages"] for p in phases)
        items = int(stats.get("item_scraped_count", 0))
        before = self.last.get("", {"pages": 0, "items": 0})
        try:
            engine = self.crawler.engine
        except RuntimeError:  # Scrapy 2.19: not started (a crawler in a test)
            engine = None
        scheduler, downloader, transferring = queues(engine)
        logger.info(
            "Crawled %d pages (%.1f/min), %d items (%.1f/min); waiting: %s in the scheduler, %d in the downloader "
            "(%d downloading)",
            pages, (pages - before["pages"]) / minutes, items, (items - before["items"]) / minutes,
            "?" if scheduler is None else scheduler, downloader, transferring, extra={"spider": spider},
        )
        self.last[""] = {"pages": pages, "items": items}
        for phase in phases:
            counts = phase_counts(stats, phase)
            if counts == self.last.get(phase):
                continue
            logger.info("  phase %s: %d pages, %d items, %d in the scheduler", phase, counts["pages"],
                        counts["items"], counts["queue"], extra={"spider": spider})
            self.last[phase] = counts

    def check_stall(self, stats: Mapping[str, Any], now: float) -> None:
        responses = int(stats.get("response_received_count", 0))
        items = int(stats.get("item_scraped_count", 0))
        if responses != self.responses:
            self.responses, self.response_at = responses, now
            if self.stalled == "no_progress":
                self.stalled = None
        if items != self.items:
            self.items, self.item_at = items, now
            self.stalled = None
        if self.stall_after <= 0 or self.stalled:
            return
        idle_items = now - self.item_at
        if idle_items < self.stall_after:
            return
        reason = "no_progress" if now - self.response_at >= self.stall_after else "no_items"
        self.stalled = reason
        assert self.crawler.stats is not None
        self.crawler.stats.inc_value("wfcrawl/progress/stalls")
        logger.warning("Crawl stalled (%s): no item for %.0f s", reason, idle_items,
                       extra={"spider": self.crawler.spider})
        self.crawler.signals.send_catch_log(crawl_stalled, reason=reason, idle_seconds=idle_items)
