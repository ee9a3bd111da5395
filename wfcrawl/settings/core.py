"""Core settings of the workflow spider and the add-on (docs/settings.md)."""

from __future__ import annotations

from wfcrawl.settings.table import Setting, register

PAGE = "settings.md"

SETTINGS = register((
    Setting(
        "WFCRAWL_FAST_PROFILE", True, "bool", page=PAGE,
        doc="Apply the fast profile below (at add-on priority: project settings and `-s` still win).",
    ),
    Setting(
        "WFCRAWL_SLOT_CONCURRENCY_ENABLED", True, "bool", page=PAGE,
        doc="Hold each request back until its download slot has fewer requests in flight than its concurrency "
        "(`rate_limit.concurrency`, `CONCURRENT_REQUESTS_PER_DOMAIN` / `_PER_IP`, `DOWNLOAD_SLOTS`). Scrapy 2.14 "
        "to 2.19 with the asyncio reactor (Scrapy's default) do not enforce that limit themselves: their "
        "downloader sends every queued request of a slot at once. "
        "`wfcrawl.middlewares.concurrency.SlotConcurrencyMiddleware`, order 1000 (after every middleware of "
        "Scrapy's), uses only public API; harmless where Scrapy's own limit works.",
    ),
    Setting(
        "WFCRAWL_SUMMARY_ENABLED", True, "bool", page=PAGE,
        doc="Log a summary table (pages per phase, items per type, drops and failures by reason) when the "
        "crawl closes.",
    ),
    Setting(
        "WFCRAWL_SCRIPT_MODULES", [], "list", page=PAGE,
        doc="Script nodes may only name callables in these modules and their submodules (for an entry-point "
        "name, the module it points to); empty allows any importable module (trusted documents only). "
        "Launchers of untrusted documents set it. See [scripts.md](scripts.md).",
    ),
    Setting(
        "WFCRAWL_STATS_FILE", "", "str", page=PAGE, default_doc='`""` (off)',
        doc="Write the final stats as JSON to this file when the engine stops (atomically: write + rename). "
        "Launchers and tests read it.",
    ),
    Setting(
        "WFCRAWL_STATS_FILE_INTERVAL", 2.0, "float", minimum=0, page=PAGE, default_doc="`2.0`",
        doc="While the crawl runs, also write the stats to `WFCRAWL_STATS_FILE` every this many seconds (`0`: "
        "only the final stats). The launcher shows them live on the dashboard and samples pages/s from them.",
    ),
    Setting(
        "WFCRAWL_PARSE_WORKERS", 0, "int", minimum=0, page=PAGE, default_doc="`0` (off)",
        doc="Parse workers: this many processes parse the pages of phases made only of `extract_links`, "
        "`extract` and `paginate` nodes, so parsing runs on other cores than the crawl (script and form nodes "
        "always run in the crawl process). Same items, stats and warnings as without. Needs Scrapy's asyncio "
        "reactor (its default; the crawl refuses to start otherwise). One per spare core; see "
        "[performance.md](performance.md#parse-workers).",
    ),
    Setting(
        "WFCRAWL_PARSE_WORKER_RESTARTS", 10, "int", minimum=0, page=PAGE,
        doc="Parse workers started again after one died, over the whole crawl. Past that, or when a worker "
        "cannot start, the crawl parses in its own process (logged once, `wfcrawl/parse_workers/fallback`).",
    ),
))
