"""Retries with exponential backoff: one policy type, run by tenacity.

Each component builds a :class:`RetryPolicy` from its own settings (storage:
``WFCRAWL_STORAGE_RETRY_*``; webhooks: ``WFCRAWL_WEBHOOKS_RETRY_TIMES``,
``..._BACKOFF``, ``..._BACKOFF_MAX``; Redis: ``WFCRAWL_REDIS_FLUSH_INTERVAL``,
``WFCRAWL_REDIS_UNAVAILABLE_TIMEOUT``) and runs its calls through

- :func:`retrying`: a :class:`tenacity.Retrying` for blocking calls in a worker
  thread (:class:`wfcrawl.utils.threads.ThreadWorker`); an ``abort`` event ends
  a wait at once and makes the call raise :class:`~wfcrawl.exceptions.RetryAbortedError`;
- :func:`async_retrying`: a :class:`tenacity.AsyncRetrying` for coroutines on the
  reactor, whose waits are Scrapy's (:func:`scrapy.utils.asyncio.sleep`).

Every retry is logged once, at WARNING, with the real exception type and
message: ``<what> (<Type>: <first line>); retrying in <s>s<detail>``. The last
failure is raised as it is (no ``RetryError`` wrapper): the caller reports it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import tenacity
from scrapy.utils.asyncio import sleep as reactor_sleep
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from wfcrawl.exceptions import RetryAbortedError, first_line

#: Runs a report on the right thread (``ThreadWorker.to_reactor`` from a worker thread).
Hop = Callable[[Callable[[], None]], None]


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed call again, and when to give up.

    Waits ``delay`` seconds after the first failure, doubling up to ``max_delay``,
    plus up to ``jitter`` seconds at random (instances that failed together then
    do not retry together). Gives up after ``attempts`` attempts, or when the next
    attempt would start more than ``within`` seconds after the first (``None``:
    no such limit; without both it retries until it succeeds or is aborted).
    """

    delay: float
    max_delay: float
    jitter: float = 0.0
    attempts: int | None = None
    within: float | None = None

    def wait(self) -> wait_base:
        wait: wait_base = tenacity.wait_exponential(multiplier=self.delay, max=self.max_delay)
        if self.jitter > 0:
            wait = wait + tenacity.wait_random(0, self.jitter)
        return wait

    def stop(self, deadline: Callable[[], float | None] | None = None) -> stop_base:
        """The stop condition; ``deadline()`` (a ``time.monotonic()`` value, or None) may
        move while the call is retried: no wait that would end after it is started."""
        stops: list[stop_base] = []
        if self.attempts is not None:
            stops.append(tenacity.stop_after_attempt(self.attempts))
        if self.within is not None:
            stops.append(tenacity.stop_before_delay(self.within))
        if deadline is not None:
            stops.append(_PastDeadline(deadline))
        return tenacity.stop_any(*stops) if stops else tenacity.stop_never


class _PastDeadline(stop_base):
    def __init__(self, deadline: Callable[[], float | None]) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        deadline = self.deadline()
        return deadline is not None and time.monotonic() + retry_state.upcoming_sleep > deadline


def _always(exc: BaseException) -> bool:
    return True


def _reporter(
    what: str, log: logging.Logger, on_retry: Callable[[BaseException, float], None] | None,
    detail: Callable[[], str] | None, extra: Mapping[str, Any] | None, hop: Hop | None,
) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        assert state.outcome is not None
        exc = state.outcome.exception()
        assert exc is not None
        delay = state.upcoming_sleep

        def report() -> None:
            log.warning("%s (%s: %s); retrying in %.1fs%s", what, type(exc).__name__, first_line(exc), delay,
                        detail() if detail is not None else "", extra=extra)
            if on_retry is not None:
                on_retry(exc, delay)

        if hop is None:
            report()
        else:
            hop(report)

    return before_sleep


def retrying(
    policy: RetryPolicy, *, what: str, log: logging.Logger,
    retry_if: Callable[[BaseException], bool] = _always,
    on_retry: Callable[[BaseException, float], None] | None = None,
    detail: Callable[[], str] | None = None, extra: Mapping[str, Any] | None = None,
    hop: Hop | None = None, abort: threading.Event | None = None,
) -> tenacity.Retrying:
    """Retries of a blocking call (``retrying(...)(fn, *args)``), for a worker thread.

    ``what`` starts the log line of each retry (``"PostgreSQL write failed"``);
    ``detail()`` is appended to it; ``on_retry(exc, delay)`` counts it. Both run
    through ``hop`` (the reactor thread) when given. Once ``abort`` is set no
    attempt starts and a wait ends at once: the call raises :class:`RetryAbortedError`.
    """
    stopped = abort if abort is not None else threading.Event()

    def before(state: tenacity.RetryCallState) -> None:
        if stopped.is_set():
            raise RetryAbortedError(what)

    def wait(seconds: float) -> None:
        if stopped.wait(seconds):
            raise RetryAbortedError(what)

    return tenacity.Retrying(
        wait=policy.wait(), stop=policy.stop(), retry=tenacity.retry_if_exception(retry_if), before=before,
        before_sleep=_reporter(what, log, on_retry, detail, extra, hop), sleep=wait, reraise=True,
    )


def async_retrying(
    policy: RetryPolicy, *, what: str, log: logging.Logger,
    retry_if: Callable[[BaseException], bool] = _always,
    on_retry: Callable[[BaseException, float], None] | None = None,
    detail: Callable[[], str] | None = None, extra: Mapping[str, Any] | None = None,
    deadline: Callable[[], float | None] | None = None,
) -> tenacity.AsyncRetrying:
    """Retries of a coroutine function (``await async_retrying(...)(fn, *args)``) on the reactor.

    Arguments as :func:`retrying`; ``deadline()`` (monotonic, may change between
    attempts) ends the retries before a wait that would pass it.
    """
    return tenacity.AsyncRetrying(
        wait=policy.wait(), stop=policy.stop(deadline), retry=tenacity.retry_if_exception(retry_if),
        before_sleep=_reporter(what, log, on_retry, detail, extra, None), sleep=reactor_sleep, reraise=True,
    )
