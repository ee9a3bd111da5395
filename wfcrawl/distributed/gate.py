"""Lease releases held until the items of their requests are durable.

With storage pipelines, "the engine is done with a request" means its items
went through ``process_item``: buffered in a batch or an open object, not yet
committed or uploaded. Releasing its lease then would let ``kill -9`` lose those
items for good (the request is gone from Redis, its fingerprint is in the
dupefilter). So the broker records a watermark of the
:class:`~wfcrawl.durability.DurabilityTracker` when the engine drops a request
and releases the lease, in its normal batched call, once the watermark is
durable. Until then the lease is still this instance's: it is renewed with the
others, and a killed instance's held leases expire and are fetched again.

Watermarks are taken in time order and never decrease, and durability only
grows, so held releases leave in the order they came: checking the oldest is
enough. Bounded by ``WFCRAWL_REDIS_RELEASE_MAX_HELD``; the stores are asked to
write what they buffer (:meth:`DurabilityTracker.flush`) when the oldest held
release waited ``WFCRAWL_REDIS_RELEASE_MAX_WAIT`` seconds, when the bound is
reached, or when this instance has nothing else to do.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from typing import Any

from wfcrawl.durability import DurabilityTracker, Watermark

logger = logging.getLogger(__name__)
PREFIX = "wfcrawl/scheduler"


class ReleaseGate:
    """Finished requests whose leases wait for durability (reactor thread only)."""

    def __init__(self, tracker: DurabilityTracker, stats: Any, *, max_wait: float, max_held: int) -> None:
        self.tracker = tracker
        self.stats = stats
        self.max_wait = max_wait
        self.max_held = max_held
        self._held: deque[tuple[bytes, Watermark, float]] = deque()
        self._last_flush = -1e9
        self._reported = 0

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[bytes]:
        """The held lease members (they are renewed like any other lease)."""
        return (member for member, _, _ in self._held)

    @property
    def full(self) -> bool:
        return len(self._held) >= self.max_held

    def finish(self, members: list[bytes], now: float) -> list[bytes]:
        """The engine is done with ``members``: those releasable at once, the rest are held."""
        if not members:
            return members
        mark = self.tracker.watermark()
        if not self._held and self.tracker.is_durable(mark):
            return members  # nothing buffered: no wait, no cost
        self._held.extend((member, mark, now) for member in members)
        self.stats.inc_value(f"{PREFIX}/releases_delayed", len(members))
        self._report()
        return []

    def ready(self, now: float, *, idle: bool) -> list[bytes]:
        """Held releases that became durable; asks for a flush when the rest wait too long.

        ``idle``: this instance has no request in progress and the shared queue
        looked empty, so no more items are coming soon; waiting for a batch to
        fill (or an object to age) would only delay the release, and the crawl's end.
        """
        held = self._held
        out: list[bytes] = []
        if held and self.tracker.is_durable(held[0][1]):
            # The oldest waited longest.
            self.stats.max_value(f"{PREFIX}/release_wait_max", round(now - held[0][2], 3))
            while held and self.tracker.is_durable(held[0][1]):
                out.append(held.popleft()[0])
        if held and (idle or self.full or (
                now - held[0][2] >= self.max_wait and now - self._last_flush >= self.max_wait)):
            if self.tracker.flush(held[-1][1]):
                self._last_flush = now
                self.stats.inc_value(f"{PREFIX}/storage_flushes")
        if out:
            self._report()
        return out

    def forget(self, members: set[bytes]) -> None:
        """Held leases that were lost (expired, taken back): nothing left to release."""
        if any(member in members for member, _, _ in self._held):
            self._held = deque(entry for entry in self._held if entry[0] not in members)
            self._report()

    def drain(self) -> tuple[list[bytes], list[bytes]]:
        """Closing: (releasable, not durable). What is not durable must go back to the queue."""
        durable: list[bytes] = []
        pending: list[bytes] = []
        for member, mark, _ in self._held:
            (durable if self.tracker.is_durable(mark) else pending).append(member)
        self._held.clear()
        self._report()
        if pending:
            logger.warning(
                "%d finished requests go back to the queue: their items were not written to storage "
                "(%s); they are fetched again", len(pending),
                ", ".join(f"{s.name}: {s.durable}/{s.accepted} durable" for s in self.tracker.stores),
            )
        return durable, pending

    def _report(self) -> None:
        n = len(self._held)
        if n != self._reported:
            self._reported = n
            self.stats.set_value(f"{PREFIX}/releases_held", n)
            self.stats.max_value(f"{PREFIX}/releases_held_max", n)
