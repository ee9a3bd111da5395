"""The durability barrier without processes: the tracker, the release gate, the broker's use of them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from scrapy import Request
from scrapy.utils.test import get_crawler

from wfcrawl.addon import WfcrawlAddon
from wfcrawl.distributed.broker import LeaseBroker
from wfcrawl.distributed.config import Keys, RedisCrawlConfig
from wfcrawl.distributed.gate import ReleaseGate
from wfcrawl.distributed.ops import LeaseStore
from wfcrawl.durability import DurabilityTracker
from wfcrawl.settings.defaults import DEFAULTS


class Stats:
    """Scrapy's MemoryStatsCollector API, what the gate uses of it."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def inc_value(self, key: str, count: int = 1) -> None:
        self.values[key] = self.values.get(key, 0) + count

    def set_value(self, key: str, value: Any) -> None:
        self.values[key] = value

    def max_value(self, key: str, value: Any) -> None:
        self.values[key] = max(self.values.get(key, value), value)


class Store:
    """A store as a pipeline drives it: numbered items in units (batches) that complete in order."""

    def __init__(self, tracker: DurabilityTracker, name: str) -> None:
        self.progress = tracker.register(name, self.flush)
        self.buffer: list[int] = []
        self.writing: list[list[int]] = []
        self.flushes = 0

    def accept(self, n: int = 1) -> None:
        for _ in range(n):
            self.buffer.append(self.progress.accept())

    def flush(self) -> None:
        self.flushes += 1
        if self.buffer:
            self.writing.append(self.buffer)
            self.buffer = []

    def commit_oldest(self) -> None:
        self.writing.pop(0)
        self.settle()

    def settle(self) -> None:
        self.progress.settle([u[0] for u in (self.buffer, *self.writing) if u])


def test_the_tracker_is_the_extension_the_add_on_enables() -> None:
    crawler = get_crawler(settings_dict={"ADDONS": {WfcrawlAddon: 0}})
    tracker = crawler.get_extension(DurabilityTracker)
    assert isinstance(tracker, DurabilityTracker) and tracker.stores == []  # no store: nothing waits
    assert DurabilityTracker.of(crawler) is tracker
    # What the stores and the broker see when a project switches it off.
    off = get_crawler(settings_dict={"ADDONS": {WfcrawlAddon: 0}, "EXTENSIONS": {DurabilityTracker: None}})
    assert DurabilityTracker.of(off) is None


def test_settle_counts_only_what_precedes_the_oldest_pending_unit() -> None:
    progress = DurabilityTracker().register("s", lambda: None)
    for _ in range(7):
        progress.accept()
    progress.settle([5, None, 3])  # units complete out of order (two writers): 3 and up still pending
    assert (progress.accepted, progress.durable) == (7, 2)
    progress.settle([5])
    assert progress.durable == 4
    progress.settle([])
    assert progress.durable == 7


def test_a_watermark_is_durable_when_every_store_has_reached_it() -> None:
    tracker = DurabilityTracker()
    pg, gcs = Store(tracker, "postgres"), Store(tracker, "gcs")
    pg.accept(2)
    gcs.accept(1)
    mark = tracker.watermark()
    assert mark == (2, 1) and not tracker.is_durable(mark)
    pg.flush()
    pg.commit_oldest()
    assert not tracker.is_durable(mark)  # GCS still holds its item
    gcs.accept(1)  # later items do not matter for this mark ...
    gcs.flush()
    gcs.commit_oldest()
    assert tracker.is_durable(mark)
    late = Store(tracker, "late")  # ... nor does a store that joined after it
    late.accept(1)
    assert tracker.is_durable(mark)


def test_flush_is_asked_once_per_mark_and_only_of_stores_behind() -> None:
    tracker = DurabilityTracker()
    pg, gcs = Store(tracker, "postgres"), Store(tracker, "gcs")
    assert not tracker.flush(tracker.watermark())  # nothing accepted: nothing to ask
    pg.accept(3)
    mark = tracker.watermark()
    assert tracker.flush(mark)
    assert not tracker.flush(mark)  # being written: asking again would only make small batches
    assert (pg.flushes, gcs.flushes) == (1, 0)
    gcs.accept(1)
    assert tracker.flush(tracker.watermark())
    assert (pg.flushes, gcs.flushes) == (1, 1)


def gate(max_wait: float = 10.0, max_held: int = 100) -> tuple[ReleaseGate, Store, Stats]:
    tracker, stats = DurabilityTracker(), Stats()
    store = Store(tracker, "postgres")
    return ReleaseGate(tracker, stats, max_wait=max_wait, max_held=max_held), store, stats


def test_releases_wait_for_the_items_before_them_and_leave_in_order() -> None:
    g, store, stats = gate()
    assert g.finish([b"a"], now=0.0) == [b"a"]  # nothing buffered: released at once
    store.accept(2)
    assert g.finish([b"b", b"c"], now=1.0) == []
    store.accept(1)
    assert g.finish([b"d"], now=2.0) == []
    assert list(g) == [b"b", b"c", b"d"]  # still leased: renewed with the others
    assert g.ready(3.0, idle=False) == []
    store.flush()  # items 1-3 in one batch
    store.accept(1)  # item 4 buffered after d finished
    assert g.finish([b"e"], now=4.0) == []
    store.commit_oldest()
    assert g.ready(5.0, idle=False) == [b"b", b"c", b"d"]
    assert list(g) == [b"e"]
    assert stats.values == {
        "wfcrawl/scheduler/releases_delayed": 4, "wfcrawl/scheduler/releases_held": 1,
        "wfcrawl/scheduler/releases_held_max": 4, "wfcrawl/scheduler/release_wait_max": 4.0,
    }


def test_stores_are_asked_to_flush_when_releases_wait_too_long_too_many_or_idle() -> None:
    g, store, stats = gate(max_wait=10.0, max_held=3)
    store.accept(1)
    g.finish([b"a"], now=0.0)
    g.ready(9.9, idle=False)
    assert store.flushes == 0  # within WFCRAWL_REDIS_RELEASE_MAX_WAIT: batches fill as configured
    g.ready(10.0, idle=False)
    assert store.flushes == 1
    store.accept(1)
    g.finish([b"b"], now=11.0)
    g.ready(12.0, idle=False)
    assert store.flushes == 1  # the oldest still waits for its write; no flush storm
    g.ready(12.0, idle=True)  # nothing else to do here: write now, do not wait for the batch to fill
    assert store.flushes == 2
    store.accept(1)
    g.finish([b"c"], now=13.0)
    assert g.full
    g.ready(13.0, idle=False)
    assert store.flushes == 3
    assert stats.values["wfcrawl/scheduler/storage_flushes"] == 3


def test_at_close_what_is_not_durable_goes_back_to_the_queue(caplog: pytest.LogCaptureFixture) -> None:
    g, store, _ = gate()
    store.accept(1)
    g.finish([b"a"], now=0.0)
    store.flush()
    store.accept(1)
    g.finish([b"b"], now=0.0)
    store.flush()
    store.commit_oldest()  # a's batch committed; b's given up on (spilled at the close timeout)
    assert g.drain() == ([b"a"], [b"b"])
    assert len(g) == 0
    assert "1 finished requests go back to the queue: their items were not written to storage " \
           "(postgres: 1/2 durable); they are fetched again" in caplog.text


def broker(settings: dict[str, Any], with_store: bool = True) -> tuple[LeaseBroker, set[Request], Store]:
    import redis

    crawler = get_crawler(settings_dict={**DEFAULTS, "EXTENSIONS": {DurabilityTracker: 0}, **settings})
    tracker = DurabilityTracker.of(crawler)
    assert tracker is not None
    inprogress: set[Request] = set()
    # The two engine internals the broker reads (wfcrawl/distributed/engine.py).
    crawler.engine = SimpleNamespace(_slot=SimpleNamespace(  # type: ignore[assignment]
        inprogress=inprogress, nextcall=SimpleNamespace(schedule=lambda: None)), spider=None)
    # What PostgresPipeline does when it is built; without a store the crawl's tracker holds nothing.
    store = Store(tracker if with_store else DurabilityTracker(), "postgres")
    config = RedisCrawlConfig.from_settings(crawler.settings)
    # A client that never connects: these checks make no Redis call.
    lease_store = LeaseStore(redis.Redis(), Keys.for_run("t", "wf", "run"), instance="i", lease_ttl=30)
    b = LeaseBroker(crawler, lease_store, config, lambda payload: Request(payload.decode()))
    # spider_opened without its thread and looping call (no reactor runs here).
    b._worker.start = lambda: None  # type: ignore[method-assign]
    b._loop.start = lambda *a, **k: None  # type: ignore[method-assign,assignment]
    b.spider_opened()
    return b, inprogress, store


def test_the_broker_holds_releases_renews_them_and_stops_leasing_when_full() -> None:
    b, inprogress, store = broker({"WFCRAWL_REDIS_RELEASE_MAX_HELD": 2, "CONCURRENT_REQUESTS": 4,
                                   "WFCRAWL_REDIS_PREFETCH": 0})
    assert b.ledger.gate is not None
    b.ledger.ready.extend([(b"m1", b"http://a/1"), (b"m2", b"http://a/2")])
    r1, r2 = b.pop(), b.pop()
    assert r1 is not None and r2 is not None
    inprogress.update({r1, r2})
    store.accept(1)  # r1's item, buffered
    b._collect_done()
    assert (b.ledger.releases, len(b.ledger.gate)) == ([], 0)  # in progress: not done yet
    inprogress.clear()  # the engine is done with both
    b._collect_done()
    assert (b.ledger.releases, list(b.ledger.gate)) == ([], [b"m1", b"m2"])
    assert not b.ledger.empty()  # the crawl is not over while leases are held
    batch, renewed = b._batch(1e9, 0)
    assert renewed and batch.renewals == [b"m1", b"m2"]
    assert b._want() == 0  # WFCRAWL_REDIS_RELEASE_MAX_HELD reached
    store.flush()
    store.commit_oldest()
    b._syncing = True  # a call in flight: the releases wait in the next batch
    b._tick()
    assert b.ledger.releases == [b"m1", b"m2"] and len(b.ledger.gate) == 0
    assert b._want() == 4


@pytest.mark.parametrize(("settings", "with_store"), [({"WFCRAWL_REDIS_DURABLE_RELEASE": False}, True), ({}, False)],
                         ids=["barrier-off", "no-storage"])
def test_without_storage_or_with_the_barrier_off_nothing_is_held(settings: dict[str, Any], with_store: bool) -> None:
    b, _, store = broker(settings, with_store)
    assert b.ledger.gate is None
    b.ledger.ready.append((b"m1", b"http://a/1"))
    b.pop()
    store.accept(1)
    b._collect_done()
    assert b.ledger.releases == [b"m1"]
