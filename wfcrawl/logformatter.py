"""A log formatter that does not build per-page DEBUG records nobody sees.

Scrapy logs "Crawled (200) <GET ...>" for every response and "Scraped from
<200 ...>" for every item at DEBUG. Its root handler filters by
``LOG_LEVEL``, but only after the record was built: the loggers themselves
stay at DEBUG, so each page pays for two records (~1 % of the CPU of a fast
crawl, docs/performance.md). The fast profile installs this formatter, which
skips those two messages when ``LOG_LEVEL`` is above DEBUG and behaves like
Scrapy's otherwise. Every other message (dropped items, errors) is unchanged.

A project that sends DEBUG records to a handler of its own while
``LOG_LEVEL`` is higher sets ``LOG_FORMATTER = "scrapy.logformatter.LogFormatter"``.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy.crawler import Crawler
from scrapy.logformatter import LogFormatter, LogFormatterResult


class QuietLogFormatter(LogFormatter):
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> QuietLogFormatter:
        settings = crawler.settings
        level = logging.getLevelName(settings.get("LOG_LEVEL"))
        quiet = not settings.getbool("LOG_ENABLED") or (isinstance(level, int) and level > logging.DEBUG)
        return cls(quiet)

    def crawled(self, *args: Any, **kwargs: Any) -> LogFormatterResult | None:  # type: ignore[override]
        return None if self.quiet else super().crawled(*args, **kwargs)

    def scraped(self, *args: Any, **kwargs: Any) -> LogFormatterResult | None:  # type: ignore[override]
        return None if self.quiet else super().scraped(*args, **kwargs)
