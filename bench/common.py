"""Settings shared by every crawler the benchmark runs (stdlib only: also imported
from the Crawlee virtualenv)."""

from __future__ import annotations

from typing import Any

#: Concurrent requests, for every crawler (Scrapy: global and per domain; Crawlee: fixed pool size).
CONCURRENCY = 16

#: Scrapy settings for the wfcrawl run (passed as ``-s`` so they win over the workflow's
#: crawl policy) and for the hand-written spider (passed to ``CrawlerProcess``).
#: Both runs add their feed (``-O items.jsonl`` = jsonlines, overwrite).
SCRAPY_SETTINGS: dict[str, Any] = {
    "LOG_LEVEL": "INFO",
    "CONCURRENT_REQUESTS": CONCURRENCY,
    "CONCURRENT_REQUESTS_PER_DOMAIN": CONCURRENCY,
    "DOWNLOAD_DELAY": 0,
    "ROBOTSTXT_OBEY": False,
    "AUTOTHROTTLE_ENABLED": False,
    "HTTPCACHE_ENABLED": False,
    "TELNETCONSOLE_ENABLED": False,
    "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
}


def scrapy_cli_args(settings: dict[str, Any] = SCRAPY_SETTINGS) -> list[str]:
    """``-s NAME=VALUE`` arguments for ``scrapy crawl`` / ``wfcrawl run``."""
    args: list[str] = []
    for name, value in settings.items():
        args += ["-s", f"{name}={value}"]
    return args
