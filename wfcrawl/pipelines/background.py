"""Off-reactor writes with retries, and back-pressure: shared by the storage pipelines.

:class:`SerialWorker` runs blocking work (psycopg2, gcsfs) in one dedicated
thread, in submission order, so the reactor never blocks and one connection is
never shared between threads. Batches submitted with :meth:`SerialWorker.submit`
are retried with exponential backoff until they succeed: a database restart or
a failed upload delays them, never drops them. :class:`Pressure` counts what is
held in memory and makes ``process_item`` wait while it is over its limit.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _reactor() -> Any:
    # Imported late: importing twisted.internet.reactor installs a reactor, and
    # Scrapy must have installed its own (asyncio) one first.
    from twisted.internet import reactor

    return reactor


class AbortedError(Exception):
    """A batch was given up on (close timeout expired); its data is spilled, not dropped."""


class SerialWorker:
    """One dedicated thread running jobs in submission order."""

    def __init__(
        self, name: str, *, retry_delay: float, retry_max_delay: float,
        on_retry: Callable[[BaseException, float], None],
    ) -> None:
        self.name = name
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.on_retry = on_retry
        self._abort = threading.Event()
        self._inflight: set[defer.Deferred[Any]] = set()
        self._pool = ThreadPool(1, 1, name=name)
        self._pool.start()
        # Like the reactor's own pool: a crawl that dies before close_spider
        # must not leave a non-daemon thread keeping the process alive.
        self._trigger = _reactor().addSystemEventTrigger("during", "shutdown", self._stop_pool)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        """Run ``fn(*args, **kwargs)`` once in the worker thread."""
        if not self._pool.started:
            return defer.fail(RuntimeError(f"{self.name}: the worker thread is stopped"))
        return threads.deferToThreadPool(_reactor(), self._pool, fn, *args, **kwargs)

    def submit(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """Run ``fn(*args)`` in the worker thread until it returns; errors are retried."""
        d = self.call(self._retrying, fn, args)
        self._inflight.add(d)
        d.addBoth(self._done, d)
        return d

    def _done(self, result: Any, d: defer.Deferred[Any]) -> Any:
        self._inflight.discard(d)
        return result

    def _retrying(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        delay = self.retry_delay
        while True:
            if self._abort.is_set():
                raise AbortedError(self.name)
            try:
                return fn(*args)
            except Exception as exc:
                _reactor().callFromThread(self._report, exc, delay)
                if self._abort.wait(delay):
                    raise AbortedError(self.name) from exc
                delay = min(delay * 2, self.retry_max_delay)

    def _report(self, exc: BaseException, delay: float) -> None:
        try:
            self.on_retry(exc, delay)
        except Exception:
            logger.exception("%s: retry callback failed", self.name)

    @property
    def busy(self) -> int:
        return len(self._inflight)

    async def drain(self, timeout: float) -> None:
        """Wait until every submitted job is done; after ``timeout`` seconds the
        jobs still retrying are aborted (their Deferreds fail with :class:`AbortedError`)."""
        from scrapy.utils.defer import maybe_deferred_to_future

        if not self._inflight:
            return
        timer = _reactor().callLater(max(0.0, timeout), self._abort.set)
        try:
            waiting = defer.DeferredList(list(self._inflight), consumeErrors=True)
            await maybe_deferred_to_future(waiting)
        finally:
            if timer.active():
                timer.cancel()

    def stop(self) -> None:
        """Stop the thread (after :meth:`drain`; a job still running is aborted)."""
        self._abort.set()
        self._stop_pool()
        try:
            _reactor().removeSystemEventTrigger(self._trigger)
        except (ValueError, KeyError):
            pass

    def _stop_pool(self) -> None:
        if self._pool.started:
            self._pool.stop()


class Pressure:
    """Units (items, bytes) held in memory, with FIFO waiters for room below ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiters: deque[defer.Deferred[None]] = deque()

    @property
    def full(self) -> bool:
        return self.held >= self.limit

    def add(self, units: int) -> None:
        self.held += units

    def release(self, units: int) -> None:
        self.held -= units
        while self._waiters and not self.full:
            self._waiters.popleft().callback(None)

    def wait(self) -> defer.Deferred[None]:
        """Fires when there is room (in arrival order)."""
        d: defer.Deferred[None] = defer.Deferred()
        if self.full:
            self._waiters.append(d)
        else:
            d.callback(None)
        return d

    def release_all(self) -> None:
        while self._waiters:
            self._waiters.popleft().callback(None)

