"""Operating crawls: metrics, progress, webhooks, schedules (docs/operations.md,
one settings table per section)."""

from __future__ import annotations

from wfcrawl.settings.table import Setting, register

METRICS = "operations.md#metrics"
PROGRESS = "operations.md#progress"
WEBHOOKS = "operations.md#webhooks"
SCHEDULES = "operations.md#schedules"
OUTCOMES = "operations.md#outcomes"

SETTINGS = register((
    Setting(
        "WFCRAWL_OUTCOME_CLOSE_ON_ERROR_RATE", False, "bool", page=OUTCOMES,
        doc="Close the crawl (finish reason `wfcrawl_error_rate`, outcome `failed`) as soon as the running check "
        "finds the error rate over the workflow's `expect.max_error_rate`; off: a warning, and the crawl goes on.",
    ),
    Setting(
        # "FIRST-LAST", a list [first, last], or a port; parsed by wfcrawl.observability.metrics.port_range.
        "WFCRAWL_METRICS_PORT", None, "any", nullable=True, environment=True, page=METRICS,
        doc="port, `FIRST-LAST` range (first free), or `0` (any free port); empty: no endpoint. Also read from "
        "the environment.",
    ),
    Setting(
        # "" listens on every interface (Twisted's default), as 0.0.0.0 does.
        "WFCRAWL_METRICS_HOST", "127.0.0.1", "str", page=METRICS,
        doc="interface of the endpoint (`0.0.0.0` in containers)",
    ),
    Setting(
        "WFCRAWL_METRICS_PUSHGATEWAY", "", "str", environment=True, page=METRICS,
        doc="Pushgateway URL; empty: no push. Also read from the environment.",
    ),
    Setting(
        "WFCRAWL_METRICS_PUSH_INTERVAL", 0.0, "float", minimum=0, page=METRICS,
        doc="seconds between pushes while running; 0: only the final push",
    ),
    Setting(
        "WFCRAWL_METRICS_PUSH_JOB", "wfcrawl", "str", required=True, page=METRICS,
        doc="the `job` of pushed groups",
    ),
    Setting(
        "WFCRAWL_METRICS_PUSH_TIMEOUT", 10.0, "float", exclusive_minimum=0, page=METRICS,
        doc="seconds per push",
    ),
    Setting(
        "WFCRAWL_METRICS_FINAL_SCRAPE_TIMEOUT", 0.0, "float", minimum=0, page=METRICS,
        doc="after closing, keep serving until scraped once more, at most this many seconds",
    ),
    Setting(
        "WFCRAWL_METRICS_LATENCY_BUCKETS", [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0], "list",
        items="float", page=METRICS,
        doc="buckets (seconds) of `wfcrawl_download_latency_seconds`",
    ),
    Setting(
        "WFCRAWL_METRICS_MAX_AUTO_SERIES", 200, "int", minimum=0, page=METRICS,
        doc="at most this many series for `wfcrawl/...` stats no rule maps (see below)",
    ),
    Setting(
        "WFCRAWL_METRICS_PROCESS", True, "bool", page=METRICS,
        doc="also export `process_*` (CPU, resident memory, open files)",
    ),
    Setting(
        "WFCRAWL_PROGRESS_ENABLED", True, "bool", page=PROGRESS,
        doc="progress lines and stall detection (per-phase stats stay on)",
    ),
    Setting(
        "WFCRAWL_PROGRESS_INTERVAL", 60.0, "float", exclusive_minimum=0, page=PROGRESS,
        doc="seconds between progress lines and stall checks",
    ),
    Setting(
        "WFCRAWL_PROGRESS_STALL_AFTER", 600.0, "float", minimum=0, page=PROGRESS,
        doc="seconds without an item that make a stall; 0: never",
    ),
    Setting(
        "WFCRAWL_WEBHOOKS_ENABLED", True, "bool", page=WEBHOOKS,
        doc="False: no notification at all",
    ),
    Setting(
        "WFCRAWL_WEBHOOKS_SECRET", "", "str", environment=True, page=WEBHOOKS,
        doc="HMAC key (also from the environment)",
    ),
    Setting(
        "WFCRAWL_WEBHOOKS_URLS", [], "list", page=WEBHOOKS,
        doc="receivers of every crawl",
    ),
    Setting(
        "WFCRAWL_WEBHOOKS_RETRY_TIMES", 5, "int", minimum=0, page=WEBHOOKS,
        doc="retries after the first attempt",
    ),
    Setting(
        "WFCRAWL_WEBHOOKS_BACKOFF", 1.0, "float", minimum=0, page=WEBHOOKS,
        doc="first wait, seconds (doubles)",
    ),
    Setting(
        "WFCRAWL_WEBHOOKS_BACKOFF_MAX", 30.0, "float", minimum=0, page=WEBHOOKS,
        doc="longest wait, seconds",
    ),
    Setting(
        "WFCRAWL_WEBHOOKS_TIMEOUT", 10.0, "float", exclusive_minimum=0, page=WEBHOOKS,
        doc="seconds per attempt",
    ),
    Setting(
        "WFCRAWL_WEBHOOKS_CLOSE_TIMEOUT", 60.0, "float", minimum=0, page=WEBHOOKS,
        doc="longest wait for deliveries at close",
    ),
    Setting(
        "WFCRAWL_SCHEDULE_LOCK_URL", "", "str", page=SCHEDULES,
        doc="`redis://...`, `postgresql://...` or `memory://` (one replica only); empty: `REDIS_URL`, else "
        "`DATABASE_URL`; none: the scheduler refuses to start",
    ),
    Setting(
        "WFCRAWL_SCHEDULE_TICK", 30.0, "float", exclusive_minimum=0, page=SCHEDULES,
        doc="seconds between ticks",
    ),
    Setting(
        "WFCRAWL_SCHEDULE_GRACE", 300.0, "float", minimum=0, page=SCHEDULES,
        doc="age (seconds) up to which a slot is on time; keep it above the tick",
    ),
    Setting(
        "WFCRAWL_SCHEDULE_MAX_CATCH_UP", 10, "int", minimum=0, page=SCHEDULES,
        doc="`catch_up: all` launches at most this many missed slots",
    ),
    Setting(
        "WFCRAWL_SCHEDULE_LAUNCHER", "", "str", page=SCHEDULES,
        doc="empty: wfcrawl's launcher; else `module:factory`",
    ),
))
