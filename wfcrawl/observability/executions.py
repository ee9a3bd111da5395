"""The crawl's own execution record in PostgreSQL.

When ``DATABASE_URL`` is set, the crawl marks its execution (``spider.execution_id``)
``running`` when it opens (creating the record if no launcher did) and records
itself as one *instance* of it (table ``execution_instances``: every crawl
process of the execution, one or a fleet's). Every
``WFCRAWL_EXECUTIONS_INTERVAL`` seconds it writes its stats on its instance
record (its heartbeat: ``updated_at``), and the execution's stats (the sum of its
instances' in a fleet); the first write comes at a random point of the first
interval, so a fleet started at once does not write in step.

At close it records its own end on its instance record and, when its end is
the execution's (:func:`wfcrawl.outcome.ends_execution`: always for a single
process; in a fleet when the shared queue drained, the time-out, or an
operator's cancel, a lost Redis state; or when no other instance is alive to end
it: every other one closed or silent for :func:`wfcrawl.outcome.instance_dead_after`
seconds, a SIGTERM scale-in aside), the execution's outcome, decided by
:func:`wfcrawl.outcome.decide` from the stats of *every* instance, in the same
transaction that locks the execution (the last instance to close sees the
others' final stats). That end is given ``WFCRAWL_STORAGE_CLOSE_TIMEOUT`` seconds
(``WFCRAWL_POSTGRES_CONNECT_TIMEOUT`` once the storage pipelines have spilled: PostgreSQL
has just stayed away that long); past it, or when PostgreSQL cannot be reached, the end
goes to ``executions-<workflow>-<execution>-<pid>.json`` in ``WFCRAWL_STORAGE_SPILL_DIR``
and ``wfcrawl spill load`` records it (:mod:`wfcrawl.storage.postgres.ending`). An
instance stopped by SIGTERM (a scale-in) while the others go on changes nothing on the
execution. Only an explicit cancel
(``wfcrawl cancel``, the API) writes ``cancelled``; the crawls read it at their
next stats update and close.

All database work runs in the extension's own thread, never on the reactor.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
from datetime import datetime, timezone
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider, NotConfigured
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet.task import LoopingCall

from wfcrawl.context import CrawlContext
from wfcrawl.exceptions import first_line
from wfcrawl.observability.outcome import OutcomeMonitor
from wfcrawl.outcome import (
    CANCELLED,
    RESUMABLE_REASONS,
    SPILL_STATS,
    Ending,
    Outcome,
    Reason,
    aggregate,
    decide,
    last_live,
)
from wfcrawl.settings.table import read
from wfcrawl.storage.executions import FINAL_STATUSES, Execution, InstanceRecord
from wfcrawl.storage.postgres.ending import end_path, write_end
from wfcrawl.storage.postgres.executions import PostgresExecutionStore, store_from_settings
from wfcrawl.utils.threads import ThreadWorker

logger = logging.getLogger(__name__)


def plain_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for k, v in stats.items()}


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ExecutionRecorder:
    def __init__(self, crawler: Crawler, store: PostgresExecutionStore, interval: float) -> None:
        self.crawler = crawler
        self.store = store
        self.interval = interval
        self.close_timeout: float = read(crawler.settings, "WFCRAWL_STORAGE_CLOSE_TIMEOUT")
        self.spill_dir: str = read(crawler.settings, "WFCRAWL_STORAGE_SPILL_DIR")
        self.execution_id = ""
        self.instance = ""
        self.worker: ThreadWorker | None = None
        self.updater = LoopingCall(self._update)
        self._updating = False
        self._started_at = _now()
        self._first_update: Any = None  # the call that starts the updates (jittered)
        self._closing = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ExecutionRecorder:
        settings = crawler.settings
        store = store_from_settings(settings)
        if store is None or not read(settings, "WFCRAWL_EXECUTIONS_ENABLED"):
            raise NotConfigured
        ext = cls(crawler, store, read(settings, "WFCRAWL_EXECUTIONS_INTERVAL"))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    @property
    def distributed(self) -> bool:
        monitor = OutcomeMonitor.of(self.crawler)
        return monitor is not None and monitor.distributed

    def _stats(self) -> dict[str, Any]:
        assert self.crawler.stats is not None
        return plain_stats(self.crawler.stats.get_stats())

    def _start(self, execution: Execution, instance: InstanceRecord) -> None:
        self.store.ensure_schema()
        _, created = self.store.create(execution)
        if not created:  # a launcher created it (queued), or another instance of the fleet
            self.store.update(execution.id, status="running", started_at=execution.started_at)
        self.store.record_instance(instance)

    async def spider_opened(self, spider: Spider) -> None:
        context = CrawlContext.of(self.crawler)
        if not context.execution_id:
            return
        self.execution_id = context.execution_id
        assert self.crawler.stats is not None
        # A fleet instance is named as in its Redis leases; a single process after its host and pid.
        self.instance = str(self.crawler.stats.get_value("wfcrawl/redis/instance")
                            or f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}")
        self._started_at = _now()
        execution = Execution(id=self.execution_id, workflow=context.workflow, status="running",
                              started_at=self._started_at)
        self.worker = ThreadWorker("wfcrawl-executions")
        self.worker.start()
        try:
            await maybe_deferred_to_future(self.worker.call(self._start, execution, self._record("running")))
        except Exception as exc:
            logger.error(
                "Cannot record execution %s in PostgreSQL: %s", self.execution_id, first_line(exc),
                extra={"spider": spider},
            )
            raise CloseSpider("wfcrawl_executions_unavailable") from None
        monitor = OutcomeMonitor.of(self.crawler)
        if monitor is not None:
            monitor.judge = self.judge
        # The first update at a random point of the first interval: a fleet started at once
        # (a hundred instances) spreads its updates instead of writing all together, forever.
        self._first_update = call_later(random.uniform(0, self.interval), self._start_updates)

    def _start_updates(self) -> None:
        self._first_update = None
        if not self._closing:
            self.updater.start(self.interval, now=True)

    def _record(self, status: str, finish_reason: str | None = None) -> InstanceRecord:
        return InstanceRecord(
            self.execution_id, self.instance, status, finish_reason, self._started_at,
            _now() if status == "closed" else None, self._stats(),
        )

    def _execution_stats(self, instances: list[InstanceRecord]) -> dict[str, Any]:
        if not self.distributed:
            return next((i.stats for i in instances if i.instance == self.instance), {})
        return plain_stats(aggregate(i.stats for i in instances))

    def _update(self) -> None:
        # Skip a tick rather than queue updates behind a slow database.
        if self._updating or self.worker is None:
            return
        self._updating = True

        def running(execution: Execution, instances: list[InstanceRecord]) -> dict[str, Any]:
            return {"status": "running", "stats": self._execution_stats(instances)}

        d = self.worker.call(self.store.record_instance, self._record("running"), running)
        d.addCallbacks(self._updated, lambda f: logger.warning("Execution stats update failed: %s", first_line(f.value)))
        d.addBoth(lambda _: setattr(self, "_updating", False))

    def _updated(self, execution: Execution | None) -> None:
        # An operator (API, `wfcrawl cancel`) cancels a crawl by setting its status.
        if execution is not None and execution.status == CANCELLED and self.crawler.engine is not None:
            logger.info("Execution %s was cancelled; closing the crawl", self.execution_id,
                        extra={"spider": self.crawler.spider})
            deferred_from_coro(self.crawler.engine.close_spider_async(reason="cancelled"))

    async def judge(self, ending: Ending, local: Outcome | None) -> tuple[Outcome | None, bool]:
        """This instance's end, recorded; the execution's outcome when its end is the
        execution's (decided from every instance's stats in a fleet), else None; and
        whether this instance announces it (it ended the execution, or changed its outcome)."""
        self._stop_updates()
        assert self.worker is not None
        context = CrawlContext.of(self.crawler)
        expect = context.plan.expect if context.plan is not None else None
        decided: list[tuple[Outcome, bool]] = []

        def conclude(execution: Execution, instances: list[InstanceRecord]) -> dict[str, Any]:
            stats = self._execution_stats(instances)
            if execution.status == CANCELLED:
                decided.append((Outcome(CANCELLED, (Reason("cancelled", "cancelled by an operator"),)), True))
                if local is None:
                    return {"stats": stats}
                return {"stats": stats, "finish_reason": ending.finish_reason,
                        "finished_at": execution.finished_at or _now()}
            if local is None:
                # Only this instance stopped: the execution goes on, unless no other instance
                # is alive to end it (the others closed, or died without a word).
                if (execution.status in FINAL_STATUSES or ending.finish_reason in RESUMABLE_REASONS
                        or not last_live(self.instance, instances, self.interval)):
                    return {"stats": stats}
                logger.warning("Execution %s: this instance (%s) is the last live one; its end is the "
                               "execution's", self.execution_id, ending.finish_reason,
                               extra={"spider": self.crawler.spider})
            outcome = decide(stats, expect, ending) if self.distributed else local
            assert outcome is not None
            # Fleet instances that close together each conclude; only news is announced.
            news = execution.status != outcome.status or execution.reasons != outcome.reasons_json()
            decided.append((outcome, news))
            return {"status": outcome.status, "reasons": outcome.reasons_json(), "stats": stats,
                    "finish_reason": ending.finish_reason, "finished_at": _now(),
                    "error": outcome.describe() if outcome.status != "succeeded" else None}

        record = self._record("closed", ending.finish_reason)
        timer = call_later(self._end_timeout(), self.store.interrupt)
        try:
            await maybe_deferred_to_future(self.worker.call(self.store.record_instance, record, conclude))
        except Exception as exc:
            path = end_path(self.spill_dir, context.workflow, self.execution_id)
            try:
                await self.worker.run(write_end, path, record, local, distributed=self.distributed)
            except OSError as error:
                logger.error("Cannot record the end of execution %s (%s: %s), nor write it to %s: %s",
                             self.execution_id, type(exc).__name__, first_line(exc), path, error,
                             extra={"spider": self.crawler.spider})
            else:
                logger.error("Cannot record the end of execution %s (%s: %s): written to %s instead "
                             "(once PostgreSQL is back: wfcrawl spill load %s)", self.execution_id,
                             type(exc).__name__, first_line(exc), path, path, extra={"spider": self.crawler.spider})
            return local, local is not None
        finally:
            timer.cancel()
        return decided[0] if decided else (local, False)

    def _end_timeout(self) -> float:
        # Items already spilled: PostgreSQL just stayed away for the whole close timeout;
        # the end gets one short chance instead of a second timeout.
        assert self.crawler.stats is not None
        if any(self.crawler.stats.get_value(key) for key in SPILL_STATS):
            return min(self.close_timeout, self.store.connect_timeout)
        return self.close_timeout

    def _stop_updates(self) -> None:
        self._closing = True
        if self._first_update is not None:
            self._first_update.cancel()
            self._first_update = None
        if self.updater.running:
            self.updater.stop()

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        self._stop_updates()
        if self.worker is None:
            return
        monitor = OutcomeMonitor.of(self.crawler)
        try:
            if monitor is not None:
                await monitor.ended()  # it calls judge(): the end is recorded by then
            else:  # a project that switched the monitor off: judged here, the same way
                plan = CrawlContext.of(self.crawler).plan
                ending = Ending(reason)
                await self.judge(ending, decide(self._stats(), plan.expect if plan else None, ending))
        except Exception:  # logged where it happened
            pass
        finally:
            await maybe_deferred_to_future(self.worker.call(self.store.close))
            self.worker.stop()
