"""Write the crawl's stats as JSON to ``WFCRAWL_STATS_FILE``.

For launchers and tests that run ``scrapy crawl`` as a child process and need
its outcome as data (finish reason, counts) rather than log text. The final
stats are written when the engine stops; while the crawl runs, every
``WFCRAWL_STATS_FILE_INTERVAL`` seconds too (the launcher shows them live and
samples pages/s from them). Each write is atomic (write + rename).
"""

from __future__ import annotations

import json
import os
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from twisted.internet.task import LoopingCall

from wfcrawl.settings.table import read


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # datetimes and the like


class StatsFile:
    def __init__(self, crawler: Crawler, path: str, interval: float = 0.0) -> None:
        self.crawler = crawler
        self.path = path
        self.interval = interval
        self.writer = LoopingCall(self.write)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StatsFile:
        path = read(crawler.settings, "WFCRAWL_STATS_FILE")
        if not path:
            raise NotConfigured
        ext = cls(crawler, path, read(crawler.settings, "WFCRAWL_STATS_FILE_INTERVAL"))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        # After the core stats (finish_reason, elapsed time) are set.
        crawler.signals.connect(ext.engine_stopped, signal=signals.engine_stopped)
        return ext

    def spider_opened(self) -> None:
        if self.interval > 0:
            self.writer.start(self.interval, now=False)

    def write(self) -> None:
        assert self.crawler.stats is not None
        stats = {k: _plain(v) for k, v in self.crawler.stats.get_stats().items()}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)  # readers never see half a file

    def engine_stopped(self) -> None:
        if self.writer.running:
            self.writer.stop()
        self.write()
