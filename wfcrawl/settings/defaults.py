"""Default values of wfcrawl's settings, and the fast profile.

The defaults come from the settings table (:mod:`wfcrawl.settings.table`, one
section module per docs page), where each setting's type, bounds and docs live
too; the Scrapy settings below are the add-on's, not wfcrawl's own.
"""

from __future__ import annotations

from typing import Any

from wfcrawl.settings.table import table

#: Every wfcrawl setting's default (the add-on applies them at ``default`` priority).
DEFAULTS: dict[str, Any] = {name: spec.default for name, spec in table().items()}

#: Scrapy settings wfcrawl always applies, above project settings (only ``-s`` on
#: the command line can change them): a crawl that may run untrusted workflows
#: must not open consoles that execute code.
SAFE_DEFAULTS: dict[str, Any] = {
    "TELNETCONSOLE_ENABLED": False,
    "REMOTE_CONTROL_ENABLED": False,
}

#: Scrapy settings of a readable console (at add-on priority: project settings
#: and ``-s`` win). The end-of-crawl summary says what the stats dump said, in
#: a dozen lines instead of a hundred; ``wfcrawl run --stats`` or
#: ``-s STATS_DUMP=True`` brings the dump back.
CONSOLE_DEFAULTS: dict[str, Any] = {
    "STATS_DUMP": False,
}

#: Scrapy settings that cost nothing in correctness for workflow crawls and
#: save per-request work (see docs/performance.md for the measurements).
FAST_PROFILE: dict[str, Any] = {
    # Per-request DEBUG lines ("Crawled (200)", "Scraped from") dominate the
    # cost of a fast crawl; counts are in the stats and the summary.
    "LOG_LEVEL": "INFO",
    # Items are yielded by one synchronous generator per response; running up
    # to 100 of them "in parallel" only adds Deferred bookkeeping.
    "CONCURRENT_ITEMS": 1,
    # Workflows bound their own per-domain concurrency; the global cap must not
    # be the bottleneck when several domains are crawled.
    "CONCURRENT_REQUESTS": 32,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
    # A page larger than this is a broken page, not content (counted as failed).
    "DOWNLOAD_MAXSIZE": 32 * 1024 * 1024,
    "DOWNLOAD_WARNSIZE": 8 * 1024 * 1024,
    # LOG_LEVEL above DEBUG: the two DEBUG lines per page are not even built
    # (Scrapy builds them, then its handler drops them).
    "LOG_FORMATTER": "wfcrawl.logformatter.QuietLogFormatter",
}

#: Components the fast profile switches off (component priority dict, path),
#: unless the project names them itself. Each is a layer every request or
#: every callback output goes through; docs/performance.md says why each one
#: is not needed by workflow crawls, and why the others stay.
FAST_PROFILE_DISABLED: tuple[tuple[str, str], ...] = (
    # Warns when a spider copies internal keys of response.meta into new
    # requests: the WorkflowSpider builds every request's meta from scratch.
    ("SPIDER_MIDDLEWARES", "scrapy.spidermiddlewares.metacopy.MetaCopyDetectionMiddleware"),
)

#: Scrapy components the fast profile replaces with wfcrawl's equivalent, at the
#: same order, unless the project names Scrapy's: (setting, Scrapy's, wfcrawl's).
FAST_PROFILE_REPLACED: tuple[tuple[str, str, str], ...] = (
    # Same redirects; pages that cannot hold a meta refresh are not decoded.
    ("DOWNLOADER_MIDDLEWARES", "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware",
     "wfcrawl.middlewares.metarefresh.MetaRefreshMiddleware"),
)

#: The opt-in fast options (docs/performance.md): what ``wfcrawl run --fast`` adds
#: (and the benchmark's (f) run). Not in the fast profile because they change the
#: HTTP client, the event loop and the process count under every crawl; the aiohttp
#: handler and uvloop need the ``fast`` extra. ``--fast`` sets the parse workers to
#: the usable cores minus one, and leaves the handler and uvloop out when the
#: workflow renders (scrapy-playwright downloads those pages).
FAST_OPTIONS: dict[str, Any] = {
    "DOWNLOAD_HANDLERS": {
        "http": "wfcrawl.handlers.aiohttp.AiohttpDownloadHandler",
        "https": "wfcrawl.handlers.aiohttp.AiohttpDownloadHandler",
    },
    "ASYNCIO_EVENT_LOOP": "uvloop.Loop",
    "WFCRAWL_PARSE_WORKERS": 1,
}
