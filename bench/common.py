"""Settings shared by every crawler the benchmark runs (stdlib only: also imported
from the Crawlee virtualenv)."""

from __future__ import annotations

import json
from typing import Any

#: Concurrent requests, for every crawler (Scrapy: global and per domain; Crawlee: fixed pool size).
CONCURRENCY = 16

#: Scrapy settings for the wfcrawl run (passed as ``-s`` so they win over the workflow's
#: crawl policy) and for the hand-written spider (passed to ``CrawlerProcess``).
#: Both runs add their feed (``-O items.jsonl`` = jsonlines, overwrite).
SCRAPY_SETTINGS: dict[str, Any] = {
    "LOG_LEVEL": "INFO",
    # wfcrawl's fast profile sets these (wfcrawl/settings/defaults.py); a hand-written
    # spider can set them too.  CONCURRENT_ITEMS matters: with Scrapy's default (100) the
    # hand-written spider crawls this site about 1.4x slower (measured).  bench/run.py
    # compares the settings both Scrapy runs log and flags any other difference.
    "CONCURRENT_ITEMS": 1,
    "DOWNLOAD_MAXSIZE": 32 * 1024 * 1024,
    "DOWNLOAD_WARNSIZE": 8 * 1024 * 1024,
    # The fast profile also switches this spider middleware off (FAST_PROFILE_DISABLED);
    # a hand-written spider that builds its requests' meta itself can do the same.
    # (Its LOG_FORMATTER is wfcrawl's own component: part of what (a) measures.)
    "SPIDER_MIDDLEWARES": {"scrapy.spidermiddlewares.metacopy.MetaCopyDetectionMiddleware": None},
    "CONCURRENT_REQUESTS": CONCURRENCY,
    "CONCURRENT_REQUESTS_PER_DOMAIN": CONCURRENCY,
    "DOWNLOAD_DELAY": 0,
    "ROBOTSTXT_OBEY": False,
    "AUTOTHROTTLE_ENABLED": False,
    "HTTPCACHE_ENABLED": False,
    "TELNETCONSOLE_ENABLED": False,
    "REMOTE_CONTROL_ENABLED": False,  # wfcrawl turns off both consoles
    "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
}


def scrapy_cli_args(settings: dict[str, Any] = SCRAPY_SETTINGS) -> list[str]:
    """``-s NAME=VALUE`` arguments for ``scrapy crawl`` / ``wfcrawl run``."""
    args: list[str] = []
    for name, value in settings.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)  # how Scrapy reads dict and list settings from strings
        args += ["-s", f"{name}={value}"]
    return args
