"""A one-thread worker for Redis calls, and reactor helpers.

Redis calls block (redis-py), so they never run on the reactor thread: each
component has one worker thread of its own (a call never waits behind DNS
lookups in the reactor's shared pool, nor behind another component). The
reactor is imported when used, never at import time: importing wfcrawl must
not install a reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from scrapy.utils.defer import maybe_deferred_to_future
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class Worker:
    def __init__(self, name: str) -> None:
        self._pool = ThreadPool(minthreads=0, maxthreads=1, name=name)

    def start(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        self._pool.stop()

    def call(self, fn: Callable[..., T], *args: Any) -> Any:
        """A Deferred firing (on the reactor thread) with ``fn(*args)`` run in the thread."""
        from twisted.internet import threads

        return threads.deferToThreadPool(_reactor(), self._pool, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = await maybe_deferred_to_future(self.call(fn, *args))
        return result


async def sleep(seconds: float) -> None:
    from twisted.internet import task

    await maybe_deferred_to_future(task.deferLater(_reactor(), seconds, lambda: None))


def call_soon(fn: Callable[[], None]) -> Any:
    """Run ``fn`` on the next reactor iteration; returns the IDelayedCall."""
    return _reactor().callLater(0, fn)
