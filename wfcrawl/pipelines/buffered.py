"""What the storage pipelines share: buffer items, write them off the reactor, lose nothing.

:class:`BufferedSink` is the item pipeline of a store written in *units* (a
PostgreSQL batch, a GCS object); a subclass says how an item goes into a unit and
how a unit is written. Here, the same for every store: every item (any type
``itemadapter`` reads; a non-item is passed on, counted in
``wfcrawl/<store>/items/unsupported``, logged once per type) and every quarantined
item (``item_dropped`` with :class:`~wfcrawl.pipelines.validation.InvalidItem`) goes
into an open unit, numbered for the crawl's :class:`~wfcrawl.durability.DurabilityTracker`.
What is held is bounded (:class:`~wfcrawl.utils.pressure.Pressure`): above the bound
``process_item`` seals every unit and waits. A unit is sealed when full, when due (a
looping call) or when the durability barrier asks (:meth:`BufferedSink.flush`), then
written by its lane's :class:`~wfcrawl.utils.threads.ThreadWorker`, retried with backoff
(``WFCRAWL_STORAGE_RETRY_*``) until written. At close every unit is sealed and the crawl
waits for them at most ``WFCRAWL_STORAGE_CLOSE_TIMEOUT`` seconds; then the retries are
aborted, a write still waiting on the store is interrupted (:meth:`BufferedSink.interrupt`)
and the unwritten units go to a spill file under ``WFCRAWL_STORAGE_SPILL_DIR``.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import maybe_deferred_to_future
from tenacity import Retrying
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from wfcrawl.context import CrawlContext
from wfcrawl.durability import DurabilityTracker
from wfcrawl.exceptions import ConfigurationError, RetryAbortedError, WfcrawlError, first_line
from wfcrawl.items import UnsupportedItems, adapt
from wfcrawl.pipelines.validation import InvalidItem
from wfcrawl.settings.table import read
from wfcrawl.storage.config import RetryConfig
from wfcrawl.storage.serialize import dumps
from wfcrawl.storage.units import SinkKind, Unit, spill_path
from wfcrawl.utils.pressure import Pressure
from wfcrawl.utils.retry import RetryPolicy, retrying
from wfcrawl.utils.threads import ThreadWorker

logger = logging.getLogger(__name__)

P = TypeVar("P")  # a unit's payload
S = TypeVar("S", bound="BufferedSink[Any]")


class BufferedSink(ABC, Generic[P]):
    """A storage pipeline; see the module docstring. Subclasses set ``kind`` and
    implement the abstract methods."""

    kind: ClassVar[SinkKind]

    def __init__(self, crawler: Crawler, retry: RetryConfig, *, limit: int, quarantine: bool, lanes: int = 1) -> None:
        """``limit``: the :class:`Pressure` bound; ``quarantine``: store invalid items;
        ``lanes``: writer threads (each with its own client)."""
        self.crawler = crawler
        assert crawler.stats is not None
        self.stats = crawler.stats
        self.prefix = f"wfcrawl/{self.kind.name}"
        self.retry = retry
        self.quarantine = quarantine
        self.pressure = Pressure(limit)
        self.lane_count = lanes
        self.lanes: list[ThreadWorker] = []  # empty: not open (or closed)
        self.open: dict[Hashable, Unit[P]] = {}
        self.writing: dict[Unit[P], defer.Deferred[None]] = {}
        self.unwritten: list[Unit[P]] = []
        self.context: CrawlContext
        tracker = DurabilityTracker.of(crawler) or DurabilityTracker()  # without the extension nothing waits
        self.durability = tracker.register(self.kind.name, self.flush)
        self.unsupported = UnsupportedItems(self.stats, f"{self.prefix}/items/unsupported", "not stored", logger)
        self._given_up: list[int | None] = []  # first numbers of the units spilled, never durable
        self._abort = threading.Event()
        self._retrying: Retrying
        self._ticker = LoopingCall(self._tick)
        self._waiting = False

    @classmethod
    def from_crawler(cls: type[S], crawler: Crawler) -> S:
        if not read(crawler.settings, cls.kind.enabled) or not read(crawler.settings, cls.kind.address):
            raise NotConfigured
        sink = cls.create(crawler)
        crawler.signals.connect(sink.item_dropped, signal=signals.item_dropped)
        return sink

    # ------------------------------------------------------------ what a store implements

    @classmethod
    @abstractmethod
    def create(cls: type[S], crawler: Crawler) -> S:
        """The pipeline, with its settings read (a :class:`ConfigurationError` if they are wrong)."""

    @property
    @abstractmethod
    def tick_interval(self) -> float:
        """Seconds between two looks at the open units (:meth:`due`)."""

    @abstractmethod
    def opening(self) -> None:
        """At open, on the reactor thread (``self.context`` is set): build the clients."""

    @abstractmethod
    def start(self) -> None:
        """At open, in lane 0's thread: check that the store can be used (or raise)."""

    @abstractmethod
    def accept(self, item: Mapping[str, Any]) -> None:
        """Put an item into a unit (:meth:`_unit`, :meth:`_hold`, :meth:`_seal` when full)."""

    @abstractmethod
    def quarantined(self, item: Mapping[str, Any], errors: list[dict[str, str]]) -> None:
        """Put an invalid item (and its validation errors) into a unit."""

    @abstractmethod
    def due(self, unit: Unit[P], now: float) -> bool:
        """Whether the looping call seals this open unit now."""

    @abstractmethod
    def job(self, unit: Unit[P]) -> Callable[[], Any]:
        """At sealing (reactor thread): the write to run, retried, in the unit's lane."""

    @abstractmethod
    def written(self, unit: Unit[P], result: Any) -> None:
        """A unit's write returned ``result``: count it."""

    @abstractmethod
    def spill(self, path: Path, units: list[Unit[P]]) -> int:
        """Write the unwritten units under ``path`` (a worker thread); how many ``kind.spilled``."""

    @abstractmethod
    def spill_advice(self, path: Path) -> str:
        """How to get a spill into the store once it is back."""

    def unusable(self, exc: Exception) -> str:
        """The message of a start failure that is not a :class:`WfcrawlError`."""
        return f"cannot use {self.kind.label}: {first_line(exc)}"

    def close_lane(self, lane: int) -> None:
        """At close, in the lane's thread: release its client."""

    def interrupt(self) -> None:
        """At the close timeout, on the reactor thread: make the writes still waiting on
        the store fail now (a unit whose write fails then is spilled). A write that may
        have reached the store anyway is spilled too: loading a spill must be idempotent."""

    # ------------------------------------------------------------ open

    async def open_spider(self) -> None:
        self.context = CrawlContext.of(self.crawler)
        self.opening()
        lanes = [ThreadWorker(f"wfcrawl-{self.kind.name}-{i}") for i in range(self.lane_count)]
        for lane in lanes:
            lane.start()
        try:
            await lanes[0].run(self.start)
        except Exception as exc:
            for lane in lanes:
                lane.stop()
            if isinstance(exc, WfcrawlError):
                raise
            raise ConfigurationError(self.unusable(exc)) from None
        self.lanes = lanes
        policy = RetryPolicy(self.retry.retry_delay, self.retry.retry_max_delay)
        self._retrying = retrying(
            policy, what=f"{self.kind.write} failed", log=logger, on_retry=self._retried, abort=self._abort,
            detail=lambda: f", {self.pressure.held} {self.kind.held} held in memory",
            extra={"spider": self.crawler.spider}, hop=ThreadWorker.to_reactor,
        )
        self._ticker.start(self.tick_interval, now=False)

    # ------------------------------------------------------------ items

    async def process_item(self, item: Any) -> Any:
        adapter = adapt(item)
        if adapter is None:
            self.unsupported.refuse(item, self.crawler.spider)
            return item
        self.accept(adapter)
        if self.pressure.full:
            self.stats.inc_value(f"{self.prefix}/backpressure")
            if not self._waiting:
                self._waiting = True  # once per episode, until the next unit is written
                logger.info("%s writes are behind: %d %s held (%s); the crawl waits", self.kind.label,
                            self.pressure.held, self.kind.held, self.kind.limit,
                            extra={"spider": self.crawler.spider})
            for key in list(self.open):  # partial units too: they are what holds the room
                self._seal(key)
            await maybe_deferred_to_future(self.pressure.wait())
        return item

    def item_dropped(self, item: Any, response: Any, exception: BaseException, spider: Spider) -> None:
        adapter = adapt(item)
        if self.quarantine and isinstance(exception, InvalidItem) and adapter is not None and self.lanes:
            self.quarantined(adapter, exception.errors)

    def _json(self, value: Any) -> str:
        text, sanitized = dumps(value)
        if sanitized:
            self.stats.inc_value(f"{self.prefix}/items/sanitized")
        return text

    def _unit(self, key: Hashable, payload: Callable[[], P], *, lane: int = 0, item: bool = True) -> Unit[P]:
        """The open unit ``key`` (created with ``payload()``); an item is numbered for durability."""
        unit = self.open.get(key)
        if unit is None:
            unit = self.open[key] = Unit(payload(), key, lane)
        if item:
            number = self.durability.accept()
            if unit.first is None:
                unit.first = number
        return unit

    def _hold(self, unit: Unit[P], size: int) -> None:
        unit.size += size
        self.pressure.add(size)

    # ------------------------------------------------------------ units

    def flush(self) -> None:
        """Start writing every open unit holding items (the durability barrier asks when leases wait)."""
        if self.lanes:
            for key in [k for k, u in self.open.items() if u.first is not None]:
                self._seal(key)

    def _tick(self) -> None:
        now = time.monotonic()
        for key in [k for k, u in self.open.items() if self.due(u, now)]:
            self._seal(key)

    def _busy(self, lane: int) -> bool:
        return any(u.lane == lane for u in self.writing)

    def _settle(self) -> None:
        units = (*self.open.values(), *self.writing)
        self.durability.settle([*self._given_up, *(u.first for u in units)])

    def _seal(self, key: Hashable) -> None:
        unit = self.open.pop(key)
        d = self.lanes[unit.lane].call(self._retrying, self.job(unit))
        d.addCallbacks(self._written, self._failed, callbackArgs=(unit,), errbackArgs=(unit,))
        self.writing[unit] = d

    def _written(self, result: Any, unit: Unit[P]) -> None:
        del self.writing[unit]
        self._settle()
        self.written(unit, result)
        self._waiting = False
        self.pressure.release(unit.size)

    def _failed(self, failure: Failure, unit: Unit[P]) -> None:
        # Spilled at close, not written: the leases of its requests go back to the queue.
        del self.writing[unit]
        self._given_up.append(unit.first)
        if not isinstance(failure.value, RetryAbortedError):
            logger.error("%s of %s failed unexpectedly", self.kind.write, unit.name or "a batch",
                         exc_info=failure.value, extra={"spider": self.crawler.spider})
        self.unwritten.append(unit)
        self.pressure.release(unit.size)

    def _retried(self, exc: BaseException, delay: float) -> None:
        self.stats.inc_value(f"{self.prefix}/retries")
        self.stats.inc_value(f"{self.prefix}/errors/{type(exc).__name__}")

    # ------------------------------------------------------------ close

    def _give_up(self) -> None:
        self._abort.set()  # no new attempt, no more waiting between attempts
        self.interrupt()  # and the attempts in progress end now

    async def close_spider(self) -> None:
        if not self.lanes:
            return
        if self._ticker.running:
            self._ticker.stop()
        for key in list(self.open):
            self._seal(key)
        if self.writing:
            timer = call_later(self.retry.close_timeout, self._give_up)
            await maybe_deferred_to_future(defer.DeferredList(list(self.writing.values()), consumeErrors=True))
            timer.cancel()
        if self.unwritten:
            path = spill_path(self.retry.spill_dir, self.kind, self.context.workflow, self.context.execution_id)
            count = await self.lanes[0].run(self.spill, path, self.unwritten)
            self.stats.inc_value(f"{self.prefix}/{self.kind.spilled_stat}", count)
            logger.error(
                "%s stayed unavailable for WFCRAWL_STORAGE_CLOSE_TIMEOUT=%ss: %d %s written to %s instead (%s)",
                self.kind.label, self.retry.close_timeout, count, self.kind.spilled, path, self.spill_advice(path),
                extra={"spider": self.crawler.spider},
            )
        self.pressure.release_all()
        for i, lane in enumerate(self.lanes):
            await lane.run(self.close_lane, i)
            lane.stop()
        self.lanes = []  # closed: a late flush() finds nothing to do
