"""What one process holds of the shared crawl, and what it owes Redis.

A leased request goes ``ready`` (leased, not handed out yet) -> ``handed`` (the
engine has it) -> a release: buffered at once, or held by the
:class:`~wfcrawl.distributed.gate.ReleaseGate` until its items are durable. New
requests (``pushes``), releases and ``returns`` (leases given back unfetched)
wait in buffers until the broker's next call carries them
(:mod:`wfcrawl.distributed.pacing` decides when). Everything here runs on the
reactor thread; the broker (:mod:`wfcrawl.distributed.broker`) owns the calls.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Container, Iterable

from scrapy import Request
from scrapy.statscollectors import StatsCollector

from wfcrawl.distributed.gate import ReleaseGate
from wfcrawl.distributed.ops import Push, SyncBatch
from wfcrawl.distributed.pacing import Pacer

logger = logging.getLogger(__name__)


class Ledger:
    """The local buffers and leases of one broker; see the module docstring."""

    def __init__(self, pacer: Pacer, stats: StatsCollector | None) -> None:
        self.ready: deque[tuple[bytes, bytes]] = deque()
        self.handed: dict[bytes, Request] = {}
        self.pushes: list[Push] = []
        self.releases: list[bytes] = []
        self.returns: list[bytes] = []
        #: Set at spider_opened when storage pipelines report durability.
        self.gate: ReleaseGate | None = None
        self._pacer = pacer
        self._stats = stats

    def _buffered(self) -> None:
        self._pacer.buffered(time.monotonic())

    # ------------------------------------------------------------ engine side

    def push(self, push: Push) -> None:
        self.pushes.append(push)
        self._buffered()

    def pop(self, decode: Callable[[bytes], Request]) -> Request | None:
        while self.ready:
            member, payload = self.ready.popleft()
            try:
                request = decode(payload)
            except Exception:
                # Not ours to guess: the request is dropped, loudly, and counted.
                if self._stats is not None:
                    self._stats.inc_value("wfcrawl/scheduler/invalid")
                logger.exception("Dropping a request from Redis that cannot be decoded: %r", payload[:200])
                self.releases.append(member)
                self._buffered()
                continue
            self.handed[member] = request
            return request
        return None

    def collect_done(self, inprogress: Container[Request] | None) -> None:
        """Requests the engine is done with are released (or held by the gate)."""
        if inprogress is None or not self.handed:
            return
        done = [m for m, r in self.handed.items() if r not in inprogress]
        for member in done:
            del self.handed[member]
        if self.gate is not None:
            done = self.gate.finish(done, time.monotonic())
        if done:
            self.releases.extend(done)
            self._buffered()

    def release_durable(self, now: float, *, idle: bool) -> None:
        """Held releases whose items are durable now join the buffer."""
        if self.gate is not None and self.gate:
            ready = self.gate.ready(now, idle=idle)
            if ready:
                self.releases.extend(ready)
                self._buffered()

    # ------------------------------------------------------------ state

    def busy(self) -> bool:
        """Requests leased here and not done yet."""
        return bool(self.ready or self.handed)

    def holds(self) -> bool:
        """Leases to renew: leased, handed out, or held releases."""
        return bool(self.ready or self.handed or self.gate)

    def buffered(self) -> int:
        return len(self.pushes) + len(self.releases) + len(self.returns)

    def empty(self) -> bool:
        return not (self.buffered() or self.holds())

    def in_hand(self) -> int:
        return len(self.ready) + len(self.handed)

    # ------------------------------------------------------------ calls

    def take(self, batch: SyncBatch, *, renew: bool) -> None:
        """Move the buffers into ``batch`` (and the leases to renew, if ``renew``)."""
        batch.pushes, batch.releases, batch.returns = self.pushes, self.releases, self.returns
        self.pushes, self.releases, self.returns = [], [], []
        if renew:
            batch.renewals = [m for m, _ in self.ready] + list(self.handed)
            if self.gate is not None:
                batch.renewals.extend(self.gate)  # held releases: still ours until released
        self._pacer.sent()

    def put_back(self, batch: SyncBatch) -> None:
        """A call failed: what it carried goes in front (children before their parents' release)."""
        self.pushes[:0] = batch.pushes
        self.releases[:0] = batch.releases
        self.returns[:0] = batch.returns
        if not batch.is_empty():
            self._buffered()

    def leased(self, got: Iterable[tuple[bytes, bytes]]) -> None:
        self.ready.extend(got)

    def orphans(self, mine: Iterable[bytes]) -> list[bytes]:
        """Leases Redis says are ours that we do not know (a lost reply's): returned."""
        known = {m for m, _ in self.ready}
        known.update(self.handed, self.releases, self.returns, self.gate or ())
        orphans = [m for m in mine if m not in known]
        if orphans:
            self.returns.extend(orphans)
            self._buffered()
        return orphans

    def forget(self, lost: set[bytes]) -> None:
        """Leases that expired and went back to the queue: someone else has them now.

        Not started yet: dropped. Started ones run to the end (their page may be
        fetched twice), but they are neither renewed nor released any more: a
        lost lease is reported, and counted, once.
        """
        self.ready = deque(item for item in self.ready if item[0] not in lost)
        for member in lost:
            self.handed.pop(member, None)
        if self.gate is not None:
            self.gate.forget(lost)

    def close(self) -> None:
        """Closing: durable held releases are released; everything else goes back to the queue.

        The item pipelines closed before (Scrapy closes the scraper before it
        sends ``spider_closed``), so held releases are durable unless a store gave
        up on some writes: those requests go back to the queue, not released.
        """
        if self.gate is not None:
            durable, pending = self.gate.drain()
            self.releases.extend(durable)
            self.returns.extend(pending)
        self.returns.extend(m for m, _ in self.ready)
        self.returns.extend(self.handed)  # not done (forced shutdown): back to the queue
        self.ready.clear()
        self.handed.clear()
