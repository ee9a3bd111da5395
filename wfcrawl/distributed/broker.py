"""The per-process half of the distributed crawl: local buffers, leases, crawl end.

The engine talks to the queue synchronously (``push``/``pop``/``len``); none of
that touches the network. A looping call on the reactor (every
``WFCRAWL_REDIS_FLUSH_INTERVAL``) checks whether a call is due (see
:mod:`wfcrawl.distributed.pacing`) and batches what happened into one
:meth:`LeaseStore.sync` in a worker thread: new requests, releases of finished
requests, lease renewals, and a request for more work.

When is a leased request done? When the engine no longer has it in progress
(see :mod:`wfcrawl.distributed.engine`): after its callback or errback, every
request it yielded and every item it yielded. Its children are pushed before, or
in the same script as, its release, so a process killed at any moment loses
nothing: its unreleased leases expire and their pages are fetched again. With
storage pipelines, the release also waits until the request's items are
committed or uploaded (:mod:`wfcrawl.distributed.gate`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from scrapy.utils.reactor import CallLaterOnce
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wfcrawl.distributed.config import RedisCrawlConfig
from wfcrawl.distributed.engine import check_engine, in_progress, wake
from wfcrawl.distributed.gate import ReleaseGate
from wfcrawl.distributed.ledger import Ledger
from wfcrawl.distributed.ops import LeaseStore, Push, SyncBatch, SyncResult
from wfcrawl.distributed.pacing import POLL_START, REAP_INTERVAL, Pacer
from wfcrawl.distributed.stalls import StallMonitor
from wfcrawl.durability import DurabilityTracker
from wfcrawl.exceptions import RetryAbortedError
from wfcrawl.utils.retry import RetryPolicy, async_retrying, retrying
from wfcrawl.utils.threads import ThreadWorker

logger = logging.getLogger(__name__)

#: Longest pause between two attempts while Redis is unreachable.
MAX_BACKOFF = 2.0
#: How long a closing instance keeps trying to hand its state back.
CLOSE_DEADLINE = 15.0
#: How a scheduler call is named in ``Slow Redis call:`` warnings.
SYNC_CALL = "EVALSHA (scheduler sync script)"


def _transient(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError, TimeoutError

    return isinstance(exc, (ConnectionError, TimeoutError))  # BusyLoadingError is a ConnectionError


class LeaseBroker:
    """Buffers and leases of one process; see the module docstring.

    Everything but :meth:`LeaseStore.sync` runs on the reactor thread.
    """

    def __init__(self, crawler: Crawler, store: LeaseStore, config: RedisCrawlConfig,
                 decode: Callable[[bytes], Request]) -> None:
        self.crawler = crawler
        self.store = store
        self.config = config
        self.decode = decode
        self.stats = crawler.stats
        self._pacer = Pacer(config)
        self.ledger = Ledger(self._pacer, self.stats)
        self._token = ""
        self._candidate = secrets.token_hex(8)
        self._syncing = False
        self._waiters: list[Deferred[None]] = []
        self._last_sync = -1e9
        self._last_renew = time.monotonic()
        self._last_touch = -1e9
        self._last_reap = -1e9
        self._queued: int | None = None
        self._finished = False
        self._failed: str | None = None
        self._failing_since: float | None = None
        self._kick = CallLaterOnce(self._tick)
        self._renew_now = False  # set after a slow call: renew at once, leases may be near their end
        # Set when an attempt failed (timeout, dropped connection): it may have run in
        # Redis and leased requests whose reply never came. The next call lists this
        # instance's leases, and those it does not know go back to the queue at once
        # (instead of waiting for their lease to expire).
        self._unsure = False
        self._monitor = StallMonitor(self.stats, config.stall_warning, hop=ThreadWorker.to_reactor,
                                     on_stall=self._stalled)
        self._worker = ThreadWorker("wfcrawl-redis")
        # Syncs are retried with backoff in the worker thread while Redis is unreachable
        # (100 ms doubling to 2 s by default), given up after WFCRAWL_REDIS_UNAVAILABLE_TIMEOUT.
        self._abort = threading.Event()
        self._sync = retrying(
            RetryPolicy(config.flush_interval * 2, MAX_BACKOFF, within=config.unavailable_timeout),
            what="Redis is unreachable", log=logger, retry_if=_transient, on_retry=self._retried,
            hop=ThreadWorker.to_reactor, abort=self._abort,
        )
        self._loop = task.LoopingCall(self._tick)
        # Created by the scheduler's open(), when the engine slot exists: a
        # Scrapy without it must fail here, at start, not lose leases later.
        check_engine(crawler.engine)
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)
        self.stats.set_value("wfcrawl/redis/instance", store.instance)

    # ------------------------------------------------------------ engine side

    def push(self, push: Push) -> None:
        self.ledger.push(push)
        if self._running_low():
            self._kick_soon()

    def pop(self) -> Request | None:
        request = self.ledger.pop(self.decode)
        if request is not None and self._running_low():
            self._kick_soon()
        return request

    def _running_low(self) -> bool:
        # The engine may soon wait: check now, not at the next tick, whether to lease more.
        return len(self.ledger.ready) <= self._pacer.low

    def _kick_soon(self) -> None:
        if not self._syncing and self._failed is None:
            self._kick.schedule()  # a kick already scheduled stays the only one

    def ready_count(self) -> int:
        return len(self.ledger.ready)

    def _want(self) -> int:
        gate = self.ledger.gate
        if gate is not None and gate.full:
            return 0  # WFCRAWL_REDIS_RELEASE_MAX_HELD: no new work until releases leave
        return max(0, self.config.concurrency + self.config.prefetch - self.ledger.in_hand())

    def _collect_done(self) -> None:
        self.ledger.collect_done(in_progress(self.crawler.engine))

    # ------------------------------------------------------------ signals

    def spider_opened(self) -> None:
        # Storage pipelines registered when they were built (before the spider opened).
        tracker = DurabilityTracker.of(self.crawler)
        if self.config.durable_release and tracker is not None and tracker.stores:
            self.ledger.gate = ReleaseGate(tracker, self.stats, max_wait=self.config.release_max_wait,
                                     max_held=self.config.release_max_held)
        self._worker.start()
        self._loop.start(self.config.flush_interval, now=True)

    def spider_idle(self) -> None:
        if self._failed is not None:
            return
        self._collect_done()
        if self._finished and self.ledger.empty() and not self._syncing:
            return  # the shared crawl has no queued and no leased request: done
        raise DontCloseSpider

    async def spider_closed(self, reason: str) -> None:
        if self._loop.running:
            self._loop.stop()
        self._kick.cancel()
        self._abort.set()  # a sync still retrying stops: what it carried is handed back below
        await self._wait_for_sync()
        if self._failed != "redis_state_lost":
            await self._hand_back()
        self._worker.stop()

    # ------------------------------------------------------------ sync loop

    def _tick(self) -> None:
        if self._failed is not None:
            return
        self._collect_done()
        now = time.monotonic()
        self.ledger.release_durable(now, idle=not (self.ledger.busy() or self._queued))
        if self._syncing:
            return
        if self._sync_due(now):
            self._start_sync(now)

    def _sync_due(self, now: float) -> bool:
        ledger = self.ledger
        buffered = ledger.buffered()
        if self._pacer.flush_due(now, buffered, queue_empty=self._queued == 0):
            return True
        if ledger.holds() and (self._renew_now or now - self._last_renew >= self.config.renew_interval):
            return True
        if buffered and not ledger.busy():
            return True  # nothing in progress here: what is buffered is all this instance has to give
        if self._want() > 0 and self._running_low():
            if self._queued is None or self._queued > 0:
                return True  # work is known to wait: take it now
            if ledger.pushes and now - self._last_sync >= POLL_START:
                return True  # the shared queue was empty: these new requests are the work
            return self._pacer.poll_due(now)
        return False

    def _batch(self, now: float, want: int) -> tuple[SyncBatch, bool]:
        renew = self._renew_now or now - self._last_renew >= self.config.renew_interval
        batch = SyncBatch(
            token=self._token, want=want, touch=now - self._last_touch >= self.config.renew_interval,
            reap=self._queued == 0 or now - self._last_reap >= REAP_INTERVAL, list_mine=self._unsure,
        )
        self._unsure = False
        self.ledger.take(batch, renew=renew)
        return batch, renew

    def _start_sync(self, now: float) -> None:
        local_empty = self.ledger.empty()
        batch, renew = self._batch(now, self._want())
        self._syncing = True
        d = self._worker.call(self._sync, self._monitor.call, SYNC_CALL, self.store.sync, batch, self._candidate)
        d.addCallbacks(self._synced, self._sync_failed, callbackArgs=(batch, now, renew, local_empty),
                       errbackArgs=(batch,))
        d.addErrback(lambda f: logger.error("Redis sync bookkeeping failed: %s", f.getTraceback()))

    def _synced(self, result: SyncResult, batch: SyncBatch, started: float, renew: bool, local_empty: bool) -> None:
        self._syncing = False
        self._notify()
        self.stats.inc_value("wfcrawl/redis/calls")
        if self._failing_since is not None:
            logger.warning("Redis is reachable again after %.1f s", time.monotonic() - self._failing_since)
        self._failing_since = None
        if result.lost_state:
            self._fail("redis_state_lost", "the crawl's state in Redis is gone (Redis restarted without "
                       "persistence, or the keys were deleted); this instance stops: nothing it did is lost, "
                       "but the crawl cannot complete from this state")
            return
        self._token = result.token
        self._last_sync = time.monotonic()
        if renew:
            self._last_renew = started
            self._renew_now = False
        if batch.touch:
            self._last_touch = started
        if batch.reap:
            self._last_reap = started
        self._queued = result.queued
        self._count(result)
        if result.mine:
            self._give_back_orphans(result.mine)
        if result.lost_leases:
            self.ledger.forget(set(result.lost_leases))
            logger.warning(
                "%d leases of this instance expired before they were renewed (Redis or this process "
                "stalled for about WFCRAWL_REDIS_LEASE_TTL): other instances fetch those pages again",
                len(result.lost_leases))
        self.ledger.leased(result.got)
        if batch.want:
            self._pacer.found(len(result.got))
            if not result.got:
                self._pacer.found_nothing(time.monotonic())
        self._finished = local_empty and not result.got and result.queued == 0 and result.leased == 0
        logger.debug(
            "Redis sync: queued=%d leased=%d pushed=%d released=%d got=%d finished=%s",
            result.queued, result.leased, result.pushed, result.released, len(result.got), self._finished,
        )
        if result.got or self._finished:
            wake(self.crawler.engine)
        if self._running_low() and (self.ledger.pushes or self.ledger.releases):
            self._kick_soon()  # work piled up during the call and the engine may starve

    def _give_back_orphans(self, mine: tuple[bytes, ...]) -> None:
        orphans = self.ledger.orphans(mine)
        if orphans:
            self.stats.inc_value("wfcrawl/scheduler/orphaned", len(orphans))
            logger.warning("%d requests leased by a Redis call whose reply was lost go back to the queue",
                           len(orphans))

    def _stalled(self) -> None:
        self._renew_now = True
        self._kick_soon()

    def _count(self, result: SyncResult) -> None:
        for key, value in (
            ("pushed", result.pushed), ("filtered/shared", result.duplicates), ("released", result.released),
            ("requeued", result.requeued), ("returned", result.returned), ("leased", len(result.got)),
            ("leases_lost", len(result.lost_leases)),
        ):
            if value:
                self.stats.inc_value(f"wfcrawl/scheduler/{key}", value)

    def _retried(self, exc: BaseException, delay: float) -> None:
        self._unsure = True
        self.stats.inc_value("wfcrawl/redis/errors")
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def _sync_failed(self, failure: Failure, batch: SyncBatch) -> None:
        self._syncing = False
        self._notify()
        self.ledger.put_back(batch)
        exc = failure.value
        if isinstance(exc, RetryAbortedError):
            return  # closing: _hand_back sends it
        self.stats.inc_value("wfcrawl/redis/errors")
        if exc is None or not _transient(exc):
            logger.error("Redis call failed: %s", failure.getTraceback())
            self._fail("redis_error", f"Redis answered with an error: {exc}")
            return
        since = time.monotonic() - (self._failing_since or time.monotonic())
        self._fail("redis_unavailable", f"Redis has been unreachable for {since:.0f} s "
                   f"(WFCRAWL_REDIS_UNAVAILABLE_TIMEOUT): {exc}")

    def _fail(self, reason: str, message: str) -> None:
        self._failed = reason
        logger.error("Distributed crawl failed (%s): %s", reason, message)
        engine = self.crawler.engine
        if engine is not None and engine.spider is not None:
            deferred_from_coro(engine.close_spider_async(reason=reason))

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    async def _wait_for_sync(self) -> None:
        if self._syncing:
            d: Deferred[None] = Deferred()
            self._waiters.append(d)
            await maybe_deferred_to_future(d)

    async def _hand_back(self) -> None:
        """Closing: push what is buffered, release what is done, return the rest (:meth:`Ledger.close`)."""
        self._collect_done()
        self.ledger.close()
        deadline = time.monotonic() + min(CLOSE_DEADLINE, self.config.unavailable_timeout)
        retry = async_retrying(RetryPolicy(0.1, MAX_BACKOFF), what="Redis hand-back failed", log=logger,
                               retry_if=_transient, deadline=lambda: deadline)
        while not self.ledger.empty():
            try:
                result: SyncResult = await retry(self._hand_back_once)
            except Exception as exc:
                logger.error(
                    "Could not hand back %d requests and %d leases to Redis (%s): the leases come back "
                    "to the queue after WFCRAWL_REDIS_LEASE_TTL; pages whose children were not pushed "
                    "are fetched again", len(self.ledger.pushes), len(self.ledger.releases) + len(self.ledger.returns),
                    exc,
                )
                return
            self.stats.inc_value("wfcrawl/redis/calls")
            if result.lost_state:
                logger.error("The crawl's state in Redis is gone; nothing was handed back")
                return
            self._count(result)
            self._give_back_orphans(result.mine)

    async def _hand_back_once(self) -> SyncResult:
        batch, _ = self._batch(time.monotonic(), 0)
        batch.renewals = []
        batch.list_mine = True  # whatever is still ours after this call (a lost reply's leases) goes back too
        try:
            return await self._worker.run(self._monitor.call, SYNC_CALL, self.store.sync, batch, self._candidate)
        except Exception:
            self.ledger.put_back(batch)
            raise
