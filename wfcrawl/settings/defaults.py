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

# Rendering in a browser (docs/rendering.md). The add-on installs scrapy-playwright
# only when a workflow renders or WFCRAWL_RENDER_ENABLED is true.
RENDER_DEFAULTS: dict[str, Any] = {
    # None: on when the workflow has a render block; True: always; False: never
    # (a workflow with a render block then fails at start).
    "WFCRAWL_RENDER_ENABLED": None,
    # Chromium executable; empty: the first of chromium, chromium-browser,
    # google-chrome on PATH (Debian: `apt-get install chromium`).
    "WFCRAWL_RENDER_BROWSER_PATH": "",
    # Without the networking flags Chromium calls home at start; on closed
    # networks those connections fail (and cost time). --no-sandbox is added by
    # Playwright (needed as root).
    "WFCRAWL_RENDER_BROWSER_ARGS": [
        "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
    ],
    # Browser pages open at once (its own limit, apart from HTTP concurrency).
    "WFCRAWL_RENDER_CONCURRENCY": 4,
    # Seconds for navigation and for each wait of a render block.
    "WFCRAWL_RENDER_TIMEOUT": 30.0,
    # Network quiet period (seconds) after a scroll or click.
    "WFCRAWL_RENDER_IDLE": 0.5,
    # Retries of a rendered page that timed out, crashed or failed in the browser.
    "WFCRAWL_RENDER_RETRY_TIMES": 1,
    # Screenshots and rendered HTML: <dir>/<workflow>/<request fingerprint>.png|.html
    "WFCRAWL_RENDER_SCREENSHOT_DIR": "screenshots",
    "WFCRAWL_RENDER_HTML_DIR": "rendered",
    # The fingerprinter that wfcrawl's render-aware fingerprinter wraps (the
    # add-on sets it to the REQUEST_FINGERPRINTER_CLASS it replaces).
    "WFCRAWL_RENDER_FINGERPRINTER_BASE": "scrapy.utils.request.RequestFingerprinter",
}

DEFAULTS: dict[str, Any] = {
    **RENDER_DEFAULTS,
    "WFCRAWL_STATS_FILE": WFCRAWL_STATS_FILE,
    "WFCRAWL_FAST_PROFILE": WFCRAWL_FAST_PROFILE,
    "WFCRAWL_SUMMARY_ENABLED": WFCRAWL_SUMMARY_ENABLED,
    "WFCRAWL_SCRIPT_MODULES": WFCRAWL_SCRIPT_MODULES,
}

#: Scrapy settings wfcrawl always applies (at add-on priority): a crawl that
#: may run untrusted workflows must not open consoles that execute code.
SAFE_DEFAULTS: dict[str, Any] = {
    "TELNETCONSOLE_ENABLED": False,
    "REMOTE_CONTROL_ENABLED": False,
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
}
