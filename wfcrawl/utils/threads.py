"""One dedicated thread for a component's blocking calls.

Blocking clients (psycopg2, gcsfs, redis-py) never run on the reactor thread.
Each component that uses one owns a :class:`ThreadWorker`: a thread of its own,
so its calls run one at a time in submission order (a connection is never
shared between threads) and never wait behind DNS lookups in the reactor's
shared pool, nor behind another component.

This is wfcrawl's one module that touches the reactor directly: running a call
in a *dedicated* thread and handing its result back to the reactor thread is
Twisted's ``deferToThreadPool``/``callFromThread``; Scrapy's
``scrapy.utils.asyncio.run_in_thread`` uses the loop's shared pool instead.
Timers and sleeps elsewhere are Scrapy's (``scrapy.utils.asyncio.call_later``,
``sleep``). The reactor is imported when used, never at import time: importing
``twisted.internet.reactor`` installs a reactor, and Scrapy must have installed
its own (asyncio) one first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class ThreadWorker:
    """One thread of a component's own, running calls in submission order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = ThreadPool(minthreads=0, maxthreads=1, name=name)
        self._trigger: Any = None

    def start(self) -> None:
        if self._pool.started:
            return
        self._pool.start()
        # Like the reactor's own pool: a crawl that dies before its close must
        # not leave a non-daemon thread keeping the process alive.
        self._trigger = _reactor().addSystemEventTrigger("during", "shutdown", self._stop_pool)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        """A Deferred firing on the reactor thread with ``fn(*args, **kwargs)`` run in the thread."""
        if not self._pool.started:
            return defer.fail(RuntimeError(f"{self.name}: the worker thread is not running"))
        return threads.deferToThreadPool(_reactor(), self._pool, fn, *args, **kwargs)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``await`` form of :meth:`call`."""
        result: T = await maybe_deferred_to_future(self.call(fn, *args, **kwargs))
        return result

    @staticmethod
    def to_reactor(fn: Callable[..., object], *args: Any) -> None:
        """From the worker thread: run ``fn(*args)`` on the reactor thread (stats, Deferreds)."""
        _reactor().callFromThread(fn, *args)

    def stop(self) -> None:
        """Stop the thread once its current call returns; later calls fail."""
        self._stop_pool()
        if self._trigger is not None:
            try:
                _reactor().removeSystemEventTrigger(self._trigger)
            except (ValueError, KeyError):
                pass
            self._trigger = None

    def _stop_pool(self) -> None:
        if self._pool.started:
            self._pool.stop()
