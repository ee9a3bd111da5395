"""The crawl's own execution record in PostgreSQL.

When ``DATABASE_URL`` is set, the crawl marks its execution (``spider.execution_id``)
``running`` when it opens (creating the record if no launcher did), writes its
stats every ``WFCRAWL_EXECUTIONS_INTERVAL`` seconds, and at close records the
final status, finish reason, end time and stats. Finish reasons map to statuses:

- ``finished`` and the configured limits (``closespider_timeout``,
  ``closespider_itemcount``, ``closespider_pagecount``) -> ``finished``;
- ``shutdown`` (SIGINT/SIGTERM) and ``cancelled`` -> ``cancelled``;
- anything else (``closespider_errorcount``, a failed start, ...) -> ``failed``.

All database work runs in the extension's own thread, never on the reactor.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider, NotConfigured
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet.task import LoopingCall

from wfcrawl.pipelines.background import SerialWorker
from wfcrawl.storage.connection import first_line
from wfcrawl.storage.executions import Execution
from wfcrawl.storage.postgres import PostgresExecutionStore, store_from_settings

logger = logging.getLogger(__name__)

_FINISHED_REASONS = frozenset({"finished", "closespider_timeout", "closespider_itemcount", "closespider_pagecount"})
_CANCELLED_REASONS = frozenset({"shutdown", "cancelled"})


def status_for(reason: str) -> str:
    """The final execution status for a Scrapy finish reason."""
    if reason in _FINISHED_REASONS:
        return "finished"
    if reason in _CANCELLED_REASONS:
        return "cancelled"
    return "failed"


def plain_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for k, v in stats.items()}


class ExecutionRecorder:
    def __init__(self, crawler: Crawler, store: PostgresExecutionStore, interval: float) -> None:
        self.crawler = crawler
        self.store = store
        self.interval = interval
        self.execution_id = ""
        self.worker: SerialWorker | None = None
        self.updater = LoopingCall(self._update)
        self._updating = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ExecutionRecorder:
        settings = crawler.settings
        store = store_from_settings(settings)
        if store is None or not settings.getbool("WFCRAWL_EXECUTIONS_ENABLED"):
            raise NotConfigured
        ext = cls(crawler, store, settings.getfloat("WFCRAWL_EXECUTIONS_INTERVAL"))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def _stats(self) -> dict[str, Any]:
        assert self.crawler.stats is not None
        return plain_stats(self.crawler.stats.get_stats())

    def _start(self, execution: Execution) -> None:
        self.store.ensure_schema()
        _, created = self.store.create(execution)
        if not created:  # a launcher created it (queued)
            self.store.update(execution.id, status="running", started_at=execution.started_at)

    async def spider_opened(self, spider: Spider) -> None:
        self.execution_id = str(getattr(spider, "execution_id", "") or "")
        if not self.execution_id:
            return
        plan = getattr(spider, "plan", None)
        execution = Execution(
            id=self.execution_id, workflow=plan.name if plan is not None else spider.name,
            status="running", started_at=datetime.now(timezone.utc),
        )
        self.worker = SerialWorker("wfcrawl-executions", retry_delay=1, retry_max_delay=1, on_retry=lambda e, d: None)
        try:
            await maybe_deferred_to_future(self.worker.call(self._start, execution))
        except Exception as exc:
            logger.error(
                "Cannot record execution %s in PostgreSQL: %s", self.execution_id, first_line(exc),
                extra={"spider": spider},
            )
            raise CloseSpider("wfcrawl_executions_unavailable") from None
        self.updater.start(self.interval, now=False)

    def _update(self) -> None:
        # Skip a tick rather than queue updates behind a slow database.
        if self._updating or self.worker is None:
            return
        self._updating = True
        d = self.worker.call(self.store.update, self.execution_id, status="running", stats=self._stats())
        d.addCallbacks(self._updated, lambda f: logger.warning("Execution stats update failed: %s", first_line(f.value)))
        d.addBoth(lambda _: setattr(self, "_updating", False))

    def _updated(self, execution: Execution | None) -> None:
        # A launcher (API, CLI) cancels a crawl by setting its final status.
        if execution is not None and execution.status == "cancelled" and self.crawler.engine is not None:
            logger.info("Execution %s was cancelled; closing the crawl", self.execution_id,
                        extra={"spider": self.crawler.spider})
            deferred_from_coro(self.crawler.engine.close_spider_async(reason="cancelled"))

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.updater.running:
            self.updater.stop()
        if self.worker is None:
            return
        stats = self._stats()
        stats.setdefault("finish_reason", reason)
        try:
            await maybe_deferred_to_future(self.worker.call(
                self.store.update, self.execution_id, status=status_for(reason), finish_reason=reason,
                finished_at=datetime.now(timezone.utc), stats=stats,
            ))
        except Exception as exc:
            logger.error("Cannot record the end of execution %s: %s", self.execution_id, first_line(exc),
                         extra={"spider": spider})
        finally:
            await maybe_deferred_to_future(self.worker.call(self.store.close))
            self.worker.stop()
