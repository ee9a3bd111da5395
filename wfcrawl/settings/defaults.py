"""Default values of wfcrawl's settings, and the fast profile.

Each is documented in docs/settings.md (a test checks that every name here is).
"""

from __future__ import annotations

from typing import Any

#: Apply :data:`FAST_PROFILE` (at add-on priority: project settings and ``-s`` win).
WFCRAWL_FAST_PROFILE = True

#: Print a summary table (pages per phase, items per type, drops, failures) at close.
WFCRAWL_SUMMARY_ENABLED = True

#: Script nodes may only name callables in these modules (and their submodules);
#: empty means any importable module (trusted documents only).
WFCRAWL_SCRIPT_MODULES: list[str] = []

#: Write the final stats as JSON to this file when the crawl ends (empty: off).
WFCRAWL_STATS_FILE = ""

DEFAULTS: dict[str, Any] = {
    "WFCRAWL_STATS_FILE": WFCRAWL_STATS_FILE,
    "WFCRAWL_FAST_PROFILE": WFCRAWL_FAST_PROFILE,
    "WFCRAWL_SUMMARY_ENABLED": WFCRAWL_SUMMARY_ENABLED,
    "WFCRAWL_SCRIPT_MODULES": WFCRAWL_SCRIPT_MODULES,
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
    "TELNETCONSOLE_ENABLED": False,
    # Workflows bound their own per-domain concurrency; the global cap must not
    # be the bottleneck when several domains are crawled.
    "CONCURRENT_REQUESTS": 32,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
    # A page larger than this is a broken page, not content (counted as failed).
    "DOWNLOAD_MAXSIZE": 32 * 1024 * 1024,
    "DOWNLOAD_WARNSIZE": 8 * 1024 * 1024,
}
