"""A human-readable summary of a workflow crawl, logged when it closes.

Pages per phase, items per type, links scheduled and dropped by reason, pages
failed by reason: all read from the ``wfcrawl/...`` stats.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

logger = logging.getLogger(__name__)

_SECTIONS = (
    ("pages per phase", "wfcrawl/pages/", ("error/", "failed", "skipped/")),
    ("items per type", "wfcrawl/items/", ("dropped",)),
    ("items dropped", "wfcrawl/items/dropped/", ()),
    ("links dropped", "wfcrawl/links/dropped/", ()),
    ("pages failed", "wfcrawl/pages/failed/", ()),
    ("page errors", "wfcrawl/pages/error/", ()),
    ("node errors", "wfcrawl/nodes/error/", ()),
)


def summarize(stats: dict[str, Any]) -> str:
    """The summary table as text (also used by ``wfcrawl run`` and the demo)."""
    lines = []
    for title, prefix, exclude in _SECTIONS:
        rows = sorted(
            (key[len(prefix):], value)
            for key, value in stats.items()
            if key.startswith(prefix) and isinstance(value, int)
            and not key[len(prefix):].startswith(exclude) and key[len(prefix):]
        )
        if not rows:
            continue
        lines.append(f"{title}:")
        width = max(len(name) for name, _ in rows)
        lines.extend(f"  {name:<{width}}  {value:>8}" for name, value in rows)
    for key in ("wfcrawl/links/scheduled", "wfcrawl/links/extracted"):
        if key in stats:
            lines.append(f"{key.rsplit('/', 1)[-1]} links: {stats[key]}")
    return "\n".join(lines)


class CrawlSummary:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlSummary:
        if not crawler.settings.getbool("WFCRAWL_SUMMARY_ENABLED"):
            raise NotConfigured
        ext = cls(crawler)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def spider_closed(self, spider: Spider, reason: str) -> None:
        assert self.crawler.stats is not None
        stats = self.crawler.stats.get_stats()
        from wfcrawl.extensions.progress import phase_table, phases_of  # per phase: requests, items, queue

        table = phase_table(stats, phases_of(stats, spider))
        logger.info(
            "Workflow %s finished (%s)\n%s",
            stats.get("wfcrawl/workflow", "?"), reason, "\n".join(filter(None, (summarize(stats), table))),
            extra={"spider": spider},
        )
