"""Slow Redis calls: logged, counted, and followed by a renewal of this instance's leases.

A Redis that stalls (a fork for a snapshot on a big dataset, a slow script, a
paused VM, a network hiccup) delays every call of every instance. Under
``socket_timeout`` (5 s by default) the call just returns late, and nothing
else would say so; meanwhile the leases of this instance came closer to their
deadline, and past it other instances take them and fetch those pages again.
So every scheduler call is timed in the thread that makes it: one slower than
``WFCRAWL_REDIS_STALL_WARNING``, or that timed out, is logged (``Slow Redis call: ...``), counted
(``wfcrawl/redis/stalls``, ``wfcrawl/redis/stall_max``), and the broker renews its
leases with its next call instead of waiting for the renewal interval. Leases
that expired anyway are reported by that renewal (``wfcrawl/scheduler/leases_lost``).

A call that timed out is not re-sent by redis-py (see
:mod:`wfcrawl.distributed.connection`): the broker's own retry does it, logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _timed_out(error: BaseException | None) -> bool:
    # A timeout is a stall at least as long as socket_timeout, whatever the threshold.
    if error is None:
        return False
    from redis.exceptions import TimeoutError

    return isinstance(error, TimeoutError)


class StallMonitor:
    """Times calls made in a worker thread; reports slow ones on the reactor thread."""

    def __init__(self, stats: Any, threshold: float, *, hop: Callable[..., None],
                 on_stall: Callable[[], None] | None = None) -> None:
        self.stats = stats
        self.threshold = threshold
        self.hop = hop
        self.on_stall = on_stall

    def call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, timed (from the worker thread)."""
        start = time.monotonic()
        error: BaseException | None = None
        try:
            return fn(*args)
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = time.monotonic() - start
            if seconds >= self.threshold or _timed_out(error):
                self.hop(self.stalled, what, seconds, error)

    def stalled(self, what: str, seconds: float, error: BaseException | None = None) -> None:
        """A call took ``seconds`` (on the reactor thread)."""
        outcome = f"failed after {seconds:.1f} s ({type(error).__name__}: {error})" if error else f"took {seconds:.1f} s"
        logger.warning("Slow Redis call: %s %s (WFCRAWL_REDIS_STALL_WARNING is %.1f s); renewing this "
                       "instance's leases now", what, outcome, self.threshold)
        self.stats.inc_value("wfcrawl/redis/stalls")
        self.stats.max_value("wfcrawl/redis/stall_max", round(seconds, 3))
        if self.on_stall is not None:
            self.on_stall()
