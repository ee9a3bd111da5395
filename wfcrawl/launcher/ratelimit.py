"""Per-API-key rate limits: a token bucket per key, in this process.

Each key may make ``rate`` requests per minute on average and ``burst`` at
once. Buckets live in the API process: with N instances behind a load
balancer a key gets up to N times the rate (docs/launching.md says so; a
shared limit would need Redis on every request).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = max(1, burst)
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> int | None:
        """None when the request may go; else the seconds to wait (for ``Retry-After``)."""
        if self.rate <= 0:
            return None  # 0 (or less): no limit
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
