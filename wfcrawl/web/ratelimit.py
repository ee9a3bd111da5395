"""Per-API-key rate limits, with the ``limits`` library (moving windows, in memory).

A key may make ``per_minute`` requests in any minute and ``burst`` in any second
(both moving windows: no reset at the top of the minute lets a client double up).
A refused request is told when to retry (``Retry-After``): when the oldest
request of the full window leaves it. The windows live in the API process:
with N instances behind a load balancer a key gets up to N times the rate
(docs/launching.md says so; a shared limit would need Redis on every request).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


def _per_minute(rate: float) -> RateLimitItem:
    if rate >= 1:
        return RateLimitItemPerMinute(round(rate))
    return RateLimitItemPerMinute(1, max(1, round(1 / rate)))  # e.g. 0.5: 1 per 2 minutes


class RateLimiter:
    def __init__(self, per_minute: float, burst: int) -> None:
        self.enabled = per_minute > 0  # 0 (or less): no limit
        self._items = [_per_minute(per_minute), RateLimitItemPerSecond(max(1, burst))] if self.enabled else []
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def take(self, key: str) -> int | None:
        """None when the request may go (and it is counted); else the seconds to wait."""
        for item in self._items:
            if not self._limiter.test(item, key):
                reset = self._limiter.get_window_stats(item, key).reset_time
                return max(1, math.ceil(reset - time.time()))
        for item in self._items:
            self._limiter.hit(item, key)
        return None
