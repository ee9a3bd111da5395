"""Which accepted items are durable: the barrier between storage and lease releases.

Storage pipelines accept an item into memory (a batch, an open object) in
``process_item`` and make it durable later (a COMMIT, an upload). The
distributed scheduler must not release a request's lease before the items the
request produced are durable: a process killed in between would lose them (the
request is gone from Redis and its fingerprint is in the dupefilter).

Each store registers once per crawl (:meth:`DurabilityTracker.register`) and
numbers what it accepts, 1, 2, 3, ... (:meth:`StoreProgress.accept`); it reports
which of those are still not durable (:meth:`StoreProgress.settle`). A
*watermark* is every store's accepted number at one moment; it is durable once
every store made everything up to that number durable. The Redis broker takes
a watermark when the engine is done with a request and releases the lease when
the watermark is durable (:mod:`wfcrawl.distributed.broker`).

The tracker is an extension (the add-on enables it): the stores and the broker
find it the Scrapy way, ``crawler.get_extension(DurabilityTracker)``
(:meth:`DurabilityTracker.of`). Without stores it holds nothing and nothing
waits. Everything runs on the reactor thread (the pipelines' completion
callbacks do too): no locks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

#: One accepted number per registered store, in registration order.
Watermark = tuple[int, ...]


class StoreProgress:
    """What one store accepted and what of it is durable (see the module docstring)."""

    __slots__ = ("accepted", "durable", "flush", "name")

    def __init__(self, name: str, flush: Callable[[], None]) -> None:
        self.name = name
        self.flush = flush
        self.accepted = 0
        self.durable = 0

    def accept(self) -> int:
        """Number the next accepted item (or quarantine record); call before the item is buffered."""
        self.accepted += 1
        return self.accepted

    def settle(self, pending: Iterable[int | None]) -> None:
        """Everything accepted is durable except the units still held.

        ``pending`` gives, for each unit not durable yet (a buffer, a batch being
        written, an object waiting for upload, one given up on), the number of its
        first item (``None`` for units without items). A store whose units may
        complete out of order passes all of them: only what precedes the oldest is
        durable.
        """
        oldest = min((n for n in pending if n is not None), default=None)
        durable = self.accepted if oldest is None else oldest - 1
        if durable > self.durable:
            self.durable = durable

    def __repr__(self) -> str:
        return f"<StoreProgress {self.name} accepted={self.accepted} durable={self.durable}>"


class DurabilityTracker:
    """The stores of one crawl and their progress (an extension); see the module docstring."""

    def __init__(self) -> None:
        self.stores: list[StoreProgress] = []
        self._flushed: Watermark = ()

    @classmethod
    def of(cls, crawler: Crawler) -> DurabilityTracker | None:
        """The crawl's tracker; ``None`` when the extension is off, or before the
        crawler built its extensions (a component used outside a crawl)."""
        try:
            return crawler.get_extension(cls)
        except RuntimeError:  # "can only be called after the extension manager has been created"
            return None

    def register(self, name: str, flush: Callable[[], None]) -> StoreProgress:
        """A store joins; ``flush()`` must start writing everything it buffers (not wait for it)."""
        store = StoreProgress(name, flush)
        self.stores.append(store)
        return store

    def watermark(self) -> Watermark:
        return tuple(s.accepted for s in self.stores)

    def is_durable(self, mark: Watermark) -> bool:
        # A store registered after the mark was taken accepted nothing before it.
        return all(s.durable >= n for s, n in zip(self.stores, mark, strict=False))

    def flush(self, mark: Watermark) -> bool:
        """Ask the stores holding items up to ``mark`` to write them now.

        Once per mark: a mark covered by an earlier flush asks nothing (what that
        flush started is still being written). Returns whether a flush was asked.
        """
        flushed = self._flushed
        covered = len(flushed) >= len(mark) and all(f >= n for f, n in zip(flushed, mark, strict=False))
        if covered or self.is_durable(mark):
            return False
        self._flushed = self.watermark()
        for i, (store, n) in enumerate(zip(self.stores, mark, strict=False)):
            # Only stores with items accepted since they were last asked.
            if store.durable < n and n > (flushed[i] if i < len(flushed) else 0):
                store.flush()
        return True
