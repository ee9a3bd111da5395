"""Progress lines per phase and stall detection, over a simulated clock; the end-of-crawl table."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from scrapy.utils.test import get_crawler

from tests.conftest import run_crawl
from tests.mockserver import MockServer
from wfcrawl.observability.progress import CrawlProgress, crawl_stalled


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_progress() -> tuple[CrawlProgress, Clock, list[tuple[float, str, float]]]:
    crawler = get_crawler()
    clock = Clock()
    progress = CrawlProgress(crawler, interval=60, stall_after=600, clock=clock)
    events: list[tuple[float, str, float]] = []

    def on_stall(reason: str, idle_seconds: float) -> None:
        events.append((clock.now, reason, idle_seconds))

    crawler.signals.connect(on_stall, signal=crawl_stalled, weak=False)
    return progress, clock, events


def test_stall_detected_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    progress, clock, events = make_progress()
    stats = progress.crawler.stats
    assert stats is not None
    responses = items = 0

    def minute(new_responses: int, new_items: int) -> None:
        nonlocal responses, items
        responses, items = responses + new_responses, items + new_items
        clock.now += 60
        stats.set_value("response_received_count", responses)
        stats.set_value("item_scraped_count", items)
        progress.tick()

    for _ in range(5):  # minutes 1-5: pages and items
        minute(10, 10)
    for _ in range(9):  # minutes 6-14: pages, no item (9 minutes: not yet)
        minute(10, 0)
    assert events == []
    minute(10, 0)  # minute 15: 10 minutes without an item while pages arrive
    assert events == [(900.0, "no_items", 600.0)]
    for _ in range(3):  # still stalled: not reported again
        minute(10, 0)
    minute(10, 5)  # minute 19: items again, re-armed
    for _ in range(9):
        minute(0, 0)
    assert len(events) == 1
    minute(0, 0)  # minute 29: nothing at all for 10 minutes
    assert events == [(900.0, "no_items", 600.0), (1740.0, "no_progress", 600.0)]
    assert stats.get_value("wfcrawl/progress/stalls") == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Crawl stalled (no_items): no item for 600 s", "Crawl stalled (no_progress): no item for 600 s"]


def test_progress_line_per_phase(caplog: pytest.LogCaptureFixture) -> None:
    progress, clock, _ = make_progress()
    stats = progress.crawler.stats
    assert stats is not None
    caplog.set_level(logging.INFO, logger="wfcrawl.observability.progress")
    for key, value in {
        "wfcrawl/pages/listing": 3, "wfcrawl/phases/listing/scheduled": 3, "wfcrawl/phases/listing/requests": 3,
        "wfcrawl/pages/product": 20, "wfcrawl/phases/product/scheduled": 50,
        "wfcrawl/phases/product/duplicates": 5, "wfcrawl/phases/product/requests": 21,
        "wfcrawl/phases/product/items": 18,
    }.items():
        stats.set_value(key, value)
    clock.now = 120.0  # two minutes since the (simulated) start
    progress.tick()
    stats.set_value("wfcrawl/pages/product", 26)
    stats.set_value("wfcrawl/phases/product/requests", 27)
    stats.set_value("wfcrawl/phases/product/items", 24)
    clock.now = 180.0
    progress.tick()
    stats.set_value("item_scraped_count", 24)
    clock.now = 240.0
    progress.tick()  # no phase changed: the crawl's line only
    lines = [r.getMessage() for r in caplog.records if r.name == "wfcrawl.observability.progress"]
    # No engine here (a crawler that did not start): the scheduler's length is unknown.
    assert lines == [
        "Crawled 23 pages (11.5/min), 0 items (0.0/min); waiting: ? in the scheduler, 0 in the downloader (0 downloading)",
        "  phase listing: 3 pages, 0 items, 0 in the scheduler",
        "  phase product: 20 pages, 18 items, 24 in the scheduler",
        "Crawled 29 pages (6.0/min), 0 items (0.0/min); waiting: ? in the scheduler, 0 in the downloader (0 downloading)",
        "  phase product: 26 pages, 24 items, 18 in the scheduler",
        "Crawled 29 pages (0.0/min), 24 items (24.0/min); waiting: ? in the scheduler, 0 in the downloader (0 downloading)",
    ]


def test_real_crawl_logs_progress_and_summary_table(tmp_path: Path, server: MockServer) -> None:
    crawl = run_crawl(
        "name: slow\nstart_urls: [/slow/index.html]\nrate_limit: {delay: 0.2, concurrency: 1}\n"
        "phases:\n  index:\n    nodes:\n      - {type: extract_links, css: ul.links a, marker: page}\n"
        "    transitions: [{marker: page, to: page}]\n"
        "  page:\n    nodes:\n      - {type: extract, item: slow_page, fields: {n: p.n::text}}\n",
        "-s", "WFCRAWL_PROGRESS_INTERVAL=0.5", tmp_path=tmp_path, base_url=server.url,
    )
    assert crawl.returncode == 0
    # At least one periodic line while it ran, with the real queues; the index phase once only.
    assert re.search(r"Crawled \d+ pages \([\d.]+/min\), \d+ items \([\d.]+/min\); waiting: \d+ in the scheduler, "
                     r"\d+ in the downloader \(\d+ downloading\)", crawl.stderr)
    assert crawl.stderr.count("  phase index: 1 pages, 0 items, 0 in the scheduler") == 1
    assert "  phase page: " in crawl.stderr
    table = crawl.stderr[crawl.stderr.index("\nper phase:\n") + 1:].splitlines()[:4]
    assert [line.split() for line in table] == [
        ["per", "phase:"],
        ["phase", "pages", "items", "requests", "duplicates", "queue"],
        ["index", "1", "0", "1", "0", "0"],
        ["page", "10", "10", "10", "0", "0"],
    ]
    assert crawl.stats["wfcrawl/phases/page/items"] == 10
