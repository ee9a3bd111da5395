"""The crawl's outcome, decided once when it closes, and the checks made while it runs.

:class:`OutcomeMonitor` (an extension the add-on always enables) decides the
outcome with :func:`wfcrawl.outcome.decide` when the spider closes, and every
other component reads it from here (:meth:`OutcomeMonitor.ended`): the summary,
webhooks, metrics, the execution record, the exit status of ``scrapy crawl``.
Stats: ``wfcrawl/outcome`` (the status), ``wfcrawl/outcome/reasons/<code>``.

In a distributed crawl (``REDIS_URL``) one instance's end is not the
execution's: only an instance that closes because the shared queue drained
(``finished``), the time-out (``closespider_timeout``), an operator's cancel or
a lost Redis state (``redis_state_lost``) decides the outcome; an instance that
stops otherwise (SIGTERM on scale-in, Redis unreachable, its own item or page
limit) records only itself (``wfcrawl/outcome/instance``). With ``DATABASE_URL``
the execution recorder judges the whole fleet from every instance's stats
(:attr:`judge`), and also decides when the stopping instance is the last live one.

While the crawl runs, the workflow's ``expect.max_error_rate`` is checked every
second once ``expect.error_rate_after`` pages were fetched or failed: a warning,
and with ``WFCRAWL_OUTCOME_CLOSE_ON_ERROR_RATE`` the crawl closes
(``wfcrawl_error_rate``).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet import defer, task

from wfcrawl.context import CrawlContext
from wfcrawl.distributed.connection import redis_url
from wfcrawl.outcome import (
    ERROR_RATE_REASON,
    Ending,
    Outcome,
    decide,
    ends_execution,
    error_rate,
)
from wfcrawl.settings.table import read

logger = logging.getLogger(__name__)

#: Seconds between two checks of the error rate while the crawl runs.
CHECK_INTERVAL = 1.0

#: What a crawl's end means: the execution's outcome (None when only this instance of a
#: fleet stopped: the execution goes on), and whether this instance is the one to announce
#: it (webhooks): the first to record it, or one that changed it.
Judge = Callable[[Ending, Outcome | None], Awaitable[tuple[Outcome | None, bool]]]


@dataclass(frozen=True)
class CrawlEnd:
    ending: Ending
    #: The execution's outcome; None when this instance's end is not the execution's.
    outcome: Outcome | None
    signal_number: int | None = None
    #: Whether this process announces the outcome (webhooks): False for a fleet instance
    #: that found the execution already ended as it would say.
    announce: bool = True

    def exit_code(self) -> int:
        """The exit status of the crawl process (docs/operations.md#outcomes)."""
        if self.outcome is not None:
            return self.outcome.exit_code(self.signal_number)
        if self.signal_number is not None:
            return 128 + self.signal_number  # an instance stopped by a signal
        return 1  # an instance that failed on its own (Redis)


class OutcomeMonitor:
    def __init__(self, crawler: Crawler, close_on_error_rate: bool) -> None:
        self.crawler = crawler
        self.close_on_error_rate = close_on_error_rate
        self.distributed = bool(redis_url(crawler.settings))
        #: Set by the execution recorder (DATABASE_URL): decides with the whole fleet's stats.
        self.judge: Judge | None = None
        self.end: CrawlEnd | None = None
        self._waiters: list[defer.Deferred[CrawlEnd]] = []
        self._signal: int | None = None
        self._handlers: dict[int, Any] = {}
        self._checker: task.LoopingCall | None = None
        self._warned = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> OutcomeMonitor:
        ext = cls(crawler, read(crawler.settings, "WFCRAWL_OUTCOME_CLOSE_ON_ERROR_RATE"))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    @classmethod
    def of(cls, crawler: Crawler) -> OutcomeMonitor | None:
        """The crawl's monitor (None when the add-on is not used, or outside a crawl)."""
        try:
            return crawler.get_extension(cls)
        except RuntimeError:  # before the extension manager exists
            return None

    async def ended(self) -> CrawlEnd:
        """The crawl's end, once decided (spider_closed handlers may await it)."""
        if self.end is not None:
            return self.end
        d: defer.Deferred[CrawlEnd] = defer.Deferred()
        self._waiters.append(d)
        return await maybe_deferred_to_future(d)

    # ------------------------------------------------------------ running

    def spider_opened(self, spider: Spider) -> None:
        self._watch_signals()
        plan = CrawlContext.of(self.crawler).plan
        if plan is not None and plan.expect.max_error_rate is not None:
            self._checker = task.LoopingCall(self.check_error_rate)
            self._checker.start(CHECK_INTERVAL, now=False)

    def _watch_signals(self) -> None:
        """Note which signal stops the crawl (its exit status is 128 + its number); the
        handler Scrapy installed still does the stopping."""
        if threading.current_thread() is not threading.main_thread():
            return
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(number)
            if not callable(previous):
                continue

            def noted(signum: int, frame: Any, previous: Any = previous) -> None:
                if self._signal is None:
                    self._signal = signum
                previous(signum, frame)

            self._handlers[number] = previous
            signal.signal(number, noted)

    def check_error_rate(self) -> None:
        plan = CrawlContext.of(self.crawler).plan
        assert plan is not None and plan.expect.max_error_rate is not None and self.crawler.stats is not None
        rate, failed, total = error_rate(self.crawler.stats.get_stats(), plan.phases)
        if total < plan.expect.error_rate_after or rate <= plan.expect.max_error_rate or self._warned:
            return
        self._warned = True
        self.crawler.stats.set_value("wfcrawl/outcome/error_rate_exceeded", total)
        closing = self.close_on_error_rate and self.crawler.engine is not None
        logger.warning("%.1f%% of pages failed (%d of %d), over expect.max_error_rate (%g)%s",
                       rate * 100, failed, total, plan.expect.max_error_rate,
                       ": closing the crawl (WFCRAWL_OUTCOME_CLOSE_ON_ERROR_RATE)" if closing else "",
                       extra={"spider": self.crawler.spider})
        if closing:
            assert self.crawler.engine is not None
            deferred_from_coro(self.crawler.engine.close_spider_async(reason=ERROR_RATE_REASON))

    # ------------------------------------------------------------ the end

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        if self._checker is not None and self._checker.running:
            self._checker.stop()
        for number, previous in self._handlers.items():
            if threading.current_thread() is threading.main_thread():
                signal.signal(number, previous)
        name = signal.Signals(self._signal).name if self._signal is not None else None
        ending = Ending(reason, signal=name if reason == "shutdown" else None)
        try:
            outcome, announce = await self._decide(ending)
            end = CrawlEnd(ending, outcome, self._signal if reason == "shutdown" else None, announce)
        except Exception as exc:  # never leave the other components waiting
            logger.exception("Deciding the crawl's outcome failed", extra={"spider": spider})
            for d in self._waiters:
                d.errback(exc)
            raise
        self.end = end
        self._publish(end)
        for d in self._waiters:
            d.callback(end)

    async def _decide(self, ending: Ending) -> tuple[Outcome | None, bool]:
        assert self.crawler.stats is not None
        context = CrawlContext.of(self.crawler)
        expect = context.plan.expect if context.plan is not None else None
        concludes = ends_execution(ending, distributed=self.distributed)
        local = (decide(self.crawler.stats.get_stats(), expect, ending, share=self.distributed)
                 if concludes else None)
        if self.judge is not None:
            return await self.judge(ending, local)
        return local, local is not None

    def _publish(self, end: CrawlEnd) -> None:
        stats = self.crawler.stats
        assert stats is not None
        if end.outcome is None:
            stats.set_value("wfcrawl/outcome/instance", "stopped")
            return
        stats.set_value("wfcrawl/outcome", end.outcome.status)
        for code in end.outcome.codes:
            stats.inc_value(f"wfcrawl/outcome/reasons/{code}")
