"""When the broker calls Redis: batched pushes and releases, leases on need, idle backoff.

A call to Redis runs one Lua script of about 8 to 20 commands, whatever it
carries; what it costs per page depends on how many pages one call serves.
Calling whenever something happened (a page finished, a link was found) costs
about one call every two pages when pages are slow, and slow pages (a latency-bound
crawl) are the common case. So:

- New requests, releases and returns wait in local buffers for at most
  ``WFCRAWL_REDIS_BATCH_DELAY`` (capped at a sixth of the lease TTL, so a
  finished request's lease never expires while its release waits) or until
  :data:`MAX_BATCH` entries, and go out with the next call made for another
  reason. While the shared queue is empty, other instances may be waiting for
  the new requests: they wait :data:`POLL_START` at most.
- More work is leased when the local queue is down to its last request
  (:attr:`Pacer.low`; none with a prefetch under 4), up to
  ``CONCURRENT_REQUESTS + WFCRAWL_REDIS_PREFETCH``: one call per
  ``WFCRAWL_REDIS_PREFETCH`` pages or so, and the engine rarely waits (the
  call takes a millisecond or two; a page, tens or hundreds).
- Expired leases are looked for once per :data:`REAP_INTERVAL` while busy,
  at every poll while the shared queue is empty.
- When Redis had nothing to lease, polls back off from :data:`POLL_START` to
  ``WFCRAWL_REDIS_IDLE_POLL``, each wait times a random factor in
  [0.75, 1.25], so idle instances do not all call at the same moment.

Nothing is lost by waiting: at a graceful close the buffers are handed back
(:meth:`LeaseBroker._hand_back`); after a kill, the unsent releases are leases
that expire and are fetched again, and unsent new requests are found again by
those pages.
"""

from __future__ import annotations

import random

from wfcrawl.distributed.config import RedisCrawlConfig

#: Buffered entries (requests, releases, returns) that make a call due at once.
MAX_BATCH = 500
#: First wait of the idle backoff; also the longest wait of new requests while
#: the shared queue is empty.
POLL_START = 0.1
#: A busy instance puts expired leases (of dead instances) back in the queue
#: this often; an idle one at every poll.
REAP_INTERVAL = 1.0


class Pacer:
    """The timing decisions of one broker (reactor thread only)."""

    def __init__(self, config: RedisCrawlConfig, rng: random.Random | None = None) -> None:
        self.batch_delay = config.batch_delay
        self.idle_poll = config.idle_poll
        self.poll_start = min(POLL_START, config.idle_poll)
        #: Lease more when the local queue is down to this many requests.
        self.low = min(1, config.prefetch // 4)
        self._rng = rng or random.Random()
        self._since: float | None = None
        self._wait = self.poll_start
        self._next_poll = 0.0

    def buffered(self, now: float) -> None:
        """Something was added to the buffers."""
        if self._since is None:
            self._since = now

    def sent(self) -> None:
        """The buffers went out (or were emptied)."""
        self._since = None

    def flush_due(self, now: float, size: int, *, queue_empty: bool) -> bool:
        if not size:
            return False
        if size >= MAX_BATCH:
            return True
        waited = now - self._since if self._since is not None else 0.0
        return waited >= (self.poll_start if queue_empty else self.batch_delay)

    def found(self, got: int) -> None:
        """A call leased ``got`` requests: back to polling fast if any."""
        if got:
            self._wait = self.poll_start

    def found_nothing(self, now: float) -> None:
        """A call found the shared queue empty: the next poll waits longer."""
        self._next_poll = now + self._wait * self._rng.uniform(0.75, 1.25)
        self._wait = min(self._wait * 2, self.idle_poll)

    def poll_due(self, now: float) -> bool:
        return now >= self._next_poll
