"""The end-of-crawl summary: logged once, when the crawl closes.

Its first line is the outcome (:mod:`wfcrawl.outcome`) and its reasons; then
pages per phase, items per type, links scheduled and dropped by reason, pages
failed by reason (all read from the ``wfcrawl/...`` stats), the per-phase table;
its last line says where the items went (files, PostgreSQL tables, Cloud
Storage), or that they went nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.settings import BaseSettings

from wfcrawl.context import CrawlContext
from wfcrawl.observability.outcome import CrawlEnd, OutcomeMonitor
from wfcrawl.observability.progress import phase_table, phases_of
from wfcrawl.settings.table import read
from wfcrawl.storage.postgres.connection import describe_dsn

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


def _count(stats: Mapping[str, Any], key: str) -> int:
    value = stats.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def summarize(stats: Mapping[str, Any]) -> str:
    """The tables of the summary as text."""
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


def destinations(settings: BaseSettings, item_tables: list[str]) -> list[str]:
    """Where the crawl's items go: feed URIs, PostgreSQL tables, the GCS bucket."""
    out = [f"{uri} ({options.get('format', 'feed') if isinstance(options, dict) else 'feed'})"
           for uri, options in settings.getdict("FEEDS").items()]
    if read(settings, "DATABASE_URL") and read(settings, "WFCRAWL_POSTGRES_ENABLED"):
        schema = read(settings, "WFCRAWL_POSTGRES_SCHEMA")
        tables = ", ".join(f"{schema}.{t}" for t in dict.fromkeys(item_tables or ["items"]))
        out.append(f"PostgreSQL {describe_dsn(read(settings, 'DATABASE_URL'))} (table {tables})")
    if read(settings, "GCS_BUCKET") and read(settings, "WFCRAWL_GCS_ENABLED"):
        bucket = read(settings, "GCS_BUCKET").removeprefix("gs://").rstrip("/")
        out.append(f"gs://{bucket}/{read(settings, 'WFCRAWL_GCS_PREFIX').strip('/')}")
    return out


def headline(context: CrawlContext, stats: Mapping[str, Any], end: CrawlEnd | None) -> str:
    pages = sum(_count(stats, f"wfcrawl/pages/{p}") for p in phases_of(stats, context.phases))
    items = _count(stats, "item_scraped_count")
    counts = f"{pages} pages, {items} items, {_count(stats, 'wfcrawl/pages/failed')} failed pages"
    reason = stats.get("finish_reason", "?")
    if end is None:
        return f"Workflow {context.workflow} closed ({reason}): {counts}"
    if end.outcome is None:
        return (f"Workflow {context.workflow}: this instance stopped ({reason}), {counts}; the execution goes on "
                "in the other instances (its shared queue is not drained)")
    lines = [f"Workflow {context.workflow} {end.outcome.status.upper()} ({reason}): {counts}"]
    lines += [f"  {r.code}: {r.message}" for r in end.outcome.reasons]
    return "\n".join(lines)


class CrawlSummary:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlSummary:
        if not read(crawler.settings, "WFCRAWL_SUMMARY_ENABLED"):
            raise NotConfigured
        ext = cls(crawler)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        monitor = OutcomeMonitor.of(self.crawler)
        end = await monitor.ended() if monitor is not None else None
        assert self.crawler.stats is not None
        stats = self.crawler.stats.get_stats()
        context = CrawlContext.of(self.crawler)
        table = phase_table(stats, phases_of(stats, context.phases))
        tables = [spec.table or "items" for spec in context.item_specs.values()]
        where = destinations(self.crawler.settings, tables)
        if where:
            went = f"{_count(stats, 'item_scraped_count')} items went to: {'; '.join(where)}"
        else:
            went = (f"{_count(stats, 'item_scraped_count')} items went nowhere: no feed (-o FILE), "
                    "DATABASE_URL or GCS_BUCKET")
        parts = (headline(context, stats, end), summarize(stats), table, went)
        logger.info("%s", "\n".join(filter(None, parts)), extra={"spider": spider})
