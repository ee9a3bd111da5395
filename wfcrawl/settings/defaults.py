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

#: Parse workers: processes that parse pages (lxml, selectors, link filters) beside
#: the crawl process, so that parsing runs on another core (docs/performance.md).
#: 0: parse in the crawl process. Needs Scrapy's asyncio reactor (its default).
WFCRAWL_PARSE_WORKERS = 0

#: Parse workers started again after one died, over the whole crawl; past this the
#: crawl parses in its own process (logged once).
WFCRAWL_PARSE_WORKER_RESTARTS = 10

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

# Storage: PostgreSQL, Google Cloud Storage, validation, executions (docs/storage.md).
# DATABASE_URL and GCS_BUCKET name the services (also read from the environment);
# each store is on when its service is named.
STORAGE_DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": "",
    "GCS_BUCKET": "",
    # Check items against the JSON Schema of their type (workflow `items:` section).
    "WFCRAWL_VALIDATION_ENABLED": True,
    "WFCRAWL_POSTGRES_ENABLED": True,
    # Schema holding items, quarantine, executions, schema_migrations.
    "WFCRAWL_POSTGRES_SCHEMA": "wfcrawl",
    # Apply pending migrations at start (off: a deploy step runs them).
    "WFCRAWL_POSTGRES_MIGRATE": True,
    # A batch (one transaction) is written at this many rows or this many seconds.
    "WFCRAWL_POSTGRES_BATCH_SIZE": 1000,
    "WFCRAWL_POSTGRES_FLUSH_INTERVAL": 1.0,
    # Rows held in memory (buffered or being written) before process_item waits.
    "WFCRAWL_POSTGRES_MAX_PENDING": 50000,
    # Writer threads (one connection each); rows are routed to them by key.
    "WFCRAWL_POSTGRES_WRITERS": 2,
    "WFCRAWL_POSTGRES_CONNECT_TIMEOUT": 10.0,
    # Applied with SET LOCAL to every write transaction (seconds).
    "WFCRAWL_POSTGRES_STATEMENT_TIMEOUT": 60.0,
    # Keep invalid items in <schema>.quarantine.
    "WFCRAWL_POSTGRES_QUARANTINE": True,
    "WFCRAWL_GCS_ENABLED": True,
    # Objects: gs://<GCS_BUCKET>/<prefix>/<workflow>/<execution>/<item type>/part-<instance>-<seq>.jsonl.gz
    "WFCRAWL_GCS_PREFIX": "wfcrawl",
    # Instance name in object names; empty: <hostname>-<random>, unique per process.
    "WFCRAWL_GCS_INSTANCE": "",
    # API endpoint (emulators); empty: Google's (or STORAGE_EMULATOR_HOST).
    "WFCRAWL_GCS_ENDPOINT": "",
    # gcsfs token: empty = Google default credentials; "anon" for emulators; or a key file path.
    "WFCRAWL_GCS_TOKEN": "",
    "WFCRAWL_GCS_PROJECT": "",
    # An object is closed at this many items, uncompressed bytes, or seconds open.
    "WFCRAWL_GCS_MAX_ITEMS": 10000,
    "WFCRAWL_GCS_MAX_BYTES": 64 * 1024 * 1024,
    "WFCRAWL_GCS_MAX_AGE": 60.0,
    # Uncompressed bytes held in memory (open and unuploaded objects) before process_item waits.
    "WFCRAWL_GCS_MAX_PENDING_BYTES": 256 * 1024 * 1024,
    # Keep invalid items under <execution>/_quarantine/<item type>/.
    "WFCRAWL_GCS_QUARANTINE": True,
    # Archive every workflow response (HTML, headers, crawl meta) under <execution>/_pages/.
    "WFCRAWL_GCS_ARCHIVE_PAGES": False,
    # Failed writes are retried after this delay, doubling up to the maximum (seconds).
    "WFCRAWL_STORAGE_RETRY_DELAY": 0.5,
    "WFCRAWL_STORAGE_RETRY_MAX_DELAY": 30.0,
    # At close, wait this long for unwritten data; then write it to WFCRAWL_STORAGE_SPILL_DIR.
    "WFCRAWL_STORAGE_CLOSE_TIMEOUT": 300.0,
    "WFCRAWL_STORAGE_SPILL_DIR": "wfcrawl-spill",
    # The crawl's execution record in <schema>.executions (when DATABASE_URL is set).
    "WFCRAWL_EXECUTIONS_ENABLED": True,
    # Seconds between stats updates of the execution record.
    "WFCRAWL_EXECUTIONS_INTERVAL": 30.0,
}

# Distributed crawls (docs/distributed.md): used only when REDIS_URL is set.
REDIS_DEFAULTS: dict[str, Any] = {
    "REDIS_URL": "",
    # Keys of a run: <prefix>:{<workflow>:<execution id>}:...
    "WFCRAWL_REDIS_KEY_PREFIX": "wfcrawl",
    # Seconds a leased request stays leased without renewal: how long the pages of
    # a killed instance wait before other instances fetch them again.
    "WFCRAWL_REDIS_LEASE_TTL": 30.0,
    # Seconds between polls for work while this instance has none (and the crawl
    # is not over): how fast an idle instance picks up new work.
    "WFCRAWL_REDIS_IDLE_POLL": 0.5,
    # Seconds between two batched round trips (pushes, releases, leases).
    "WFCRAWL_REDIS_FLUSH_INTERVAL": 0.05,
    # Requests leased beyond CONCURRENT_REQUESTS, so the downloader never waits.
    "WFCRAWL_REDIS_PREFETCH": 8,
    # "set" (exact) or "bloom" (probabilistic, ~35x smaller).
    "WFCRAWL_REDIS_DUPEFILTER": "set",
    "WFCRAWL_REDIS_BLOOM_CAPACITY": 10_000_000,
    "WFCRAWL_REDIS_BLOOM_ERROR_RATE": 0.001,
    # Fingerprints this process remembers having queued (saves round trips).
    "WFCRAWL_REDIS_LOCAL_SEEN_MAX": 100_000,
    # Keys of a run expire this many seconds after its last activity (0: never).
    "WFCRAWL_REDIS_KEY_TTL": 7 * 24 * 3600,
    # Redis unreachable for longer: the instance closes (reason redis_unavailable).
    "WFCRAWL_REDIS_UNAVAILABLE_TIMEOUT": 120.0,
    # The per-domain delay is enforced for all instances together.
    "WFCRAWL_REDIS_RATE_LIMIT_ENABLED": True,
    # With storage pipelines (DATABASE_URL, GCS_BUCKET): release a finished
    # request's lease only once its items are committed/uploaded, so kill -9
    # loses no item (docs/storage.md, "Exactly-once with Redis + storage").
    "WFCRAWL_REDIS_DURABLE_RELEASE": True,
    # Seconds a held release may wait before the stores are asked to write what
    # they buffer (GCS: rotate its open objects early).
    "WFCRAWL_REDIS_RELEASE_MAX_WAIT": 30.0,
    # Held releases at most; at this many the stores are asked to write and no
    # new work is leased until some are released.
    "WFCRAWL_REDIS_RELEASE_MAX_HELD": 10_000,
}

# Operating crawls: metrics, progress, webhooks, schedules (docs/operations.md).
OPS_DEFAULTS: dict[str, Any] = {
    # Serve Prometheus metrics on this port, "FIRST-LAST" range (first free one),
    # or 0 (any free port, logged); None/empty: no endpoint.
    "WFCRAWL_METRICS_PORT": None,
    "WFCRAWL_METRICS_HOST": "127.0.0.1",
    # Push metrics to this Pushgateway URL at the end of the crawl (and every
    # WFCRAWL_METRICS_PUSH_INTERVAL seconds if > 0); empty: no push.
    "WFCRAWL_METRICS_PUSHGATEWAY": "",
    "WFCRAWL_METRICS_PUSH_INTERVAL": 0.0,
    "WFCRAWL_METRICS_PUSH_JOB": "wfcrawl",
    "WFCRAWL_METRICS_PUSH_TIMEOUT": 10.0,
    # After the crawl closes, keep the endpoint up until it is scraped once
    # more (the final values), at most this many seconds; 0: close at once.
    "WFCRAWL_METRICS_FINAL_SCRAPE_TIMEOUT": 0.0,
    "WFCRAWL_METRICS_LATENCY_BUCKETS": [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
    # Series made for wfcrawl/... stats that no mapping rule covers, at most.
    "WFCRAWL_METRICS_MAX_AUTO_SERIES": 200,
    # Export process_* metrics (CPU, memory, open files) too.
    "WFCRAWL_METRICS_PROCESS": True,
    "WFCRAWL_PROGRESS_ENABLED": True,
    # Seconds between progress lines (one per phase) and stall checks.
    "WFCRAWL_PROGRESS_INTERVAL": 60.0,
    # No item for this many seconds (responses arriving or not): stalled; 0: never.
    "WFCRAWL_PROGRESS_STALL_AFTER": 600.0,
    "WFCRAWL_WEBHOOKS_ENABLED": True,
    # HMAC-SHA256 key of webhook signatures (also from the environment).
    "WFCRAWL_WEBHOOKS_SECRET": "",
    # Receivers notified of every crawl's finished/failed events, besides the workflow's.
    "WFCRAWL_WEBHOOKS_URLS": [],
    "WFCRAWL_WEBHOOKS_RETRY_TIMES": 5,
    # First retry after this many seconds, doubling up to the maximum.
    "WFCRAWL_WEBHOOKS_BACKOFF": 1.0,
    "WFCRAWL_WEBHOOKS_BACKOFF_MAX": 30.0,
    # Seconds per HTTP attempt.
    "WFCRAWL_WEBHOOKS_TIMEOUT": 10.0,
    # At close, wait at most this long for deliveries still retrying.
    "WFCRAWL_WEBHOOKS_CLOSE_TIMEOUT": 60.0,
    # `wfcrawl scheduler`: where replicas claim slots (redis://... or postgresql://...);
    # empty: REDIS_URL, else DATABASE_URL.
    "WFCRAWL_SCHEDULE_LOCK_URL": "",
    # Seconds between two looks at the schedules.
    "WFCRAWL_SCHEDULE_TICK": 30.0,
    # A slot at most this many seconds old is on time (launched under every catch-up policy).
    "WFCRAWL_SCHEDULE_GRACE": 300.0,
    # catch_up: all launches at most this many missed slots (the most recent ones).
    "WFCRAWL_SCHEDULE_MAX_CATCH_UP": 10,
    # Empty: launch through wfcrawl's launcher (the API's path). Else a factory
    # "module.path:function" called with the settings, returning the launch callable.
    "WFCRAWL_SCHEDULE_LAUNCHER": "",
}

# Launching crawls: the launch path, SSRF guard, HTTP API, Pub/Sub push and pull
# (docs/launching.md; production values in docs/deploy.md).
LAUNCHER_DEFAULTS: dict[str, Any] = {
    # Per-execution files of launched crawls (workflow, stats); empty: <tmp>/wfcrawl-launcher.
    "WFCRAWL_LAUNCHER_WORKDIR": "",
    # Crawls one launcher process runs at once; more are refused as busy (HTTP 429, nack).
    "WFCRAWL_LAUNCHER_MAX_CRAWLS": 2,
    # Largest untrusted workflow document accepted (UTF-8 bytes).
    "WFCRAWL_LAUNCHER_MAX_DOCUMENT_BYTES": 256 * 1024,
    # Environment variables untrusted workflows may read (form `env:`); others are refused.
    "WFCRAWL_LAUNCHER_ALLOWED_ENV": [],
    # Extra arguments of every launched `scrapy crawl` (operator's: -s NAME=VALUE, -o ...).
    "WFCRAWL_LAUNCHER_CRAWL_ARGS": [],
    # Seconds a launched crawl may run before it is stopped (0: no limit).
    "WFCRAWL_LAUNCHER_CRAWL_TIMEOUT": 0.0,
    # Seconds between SIGTERM (Scrapy's graceful stop) and SIGKILL.
    "WFCRAWL_LAUNCHER_KILL_TIMEOUT": 30.0,
    # Seconds between looks at the store (cancellation by another instance, joined crawls).
    "WFCRAWL_LAUNCHER_POLL_INTERVAL": 2.0,
    # Last log lines of a crawl recorded on its execution.
    "WFCRAWL_LAUNCHER_LOG_TAIL_LINES": 40,
    # Copy crawl log lines into the launcher's log (Cloud Logging reads it).
    "WFCRAWL_LAUNCHER_FORWARD_LOGS": True,
    # Keep each execution's directory after its crawl (debugging).
    "WFCRAWL_LAUNCHER_KEEP_FILES": False,
    # Registered workflows when DATABASE_URL is not set.
    "WFCRAWL_LAUNCHER_WORKFLOWS_DIR": "registered-workflows",
    # Refuse requests to loopback, private, link-local and metadata addresses
    # (launchers turn it on for the crawls they start).
    "WFCRAWL_SSRF_GUARD_ENABLED": False,
    # Networks (CIDR) the guard allows anyway, e.g. ["10.20.0.0/16"].
    "WFCRAWL_SSRF_ALLOWED_NETWORKS": [],
    # API keys: "name:sha256-hex" or "name:sha256-hex:read" (`wfcrawl api-key`).
    "WFCRAWL_API_KEYS": [],
    # Requests per minute per API key, and the burst allowed above that rate.
    "WFCRAWL_API_RATE_LIMIT": 60.0,
    "WFCRAWL_API_RATE_BURST": 20,
    # Largest request body (bytes).
    "WFCRAWL_API_MAX_BODY_BYTES": 2 * 1024 * 1024,
    # The Pub/Sub push endpoint POST /pubsub/push (off: 404).
    "WFCRAWL_PUSH_ENABLED": False,
    # OIDC: the token's audience (the push subscription's --push-auth-token-audience).
    "WFCRAWL_PUSH_AUDIENCE": "",
    # OIDC: the service account the subscription signs as (email claim); empty: any.
    "WFCRAWL_PUSH_SERVICE_ACCOUNT": "",
    "WFCRAWL_PUSH_ISSUERS": ["accounts.google.com", "https://accounts.google.com"],
    # Google's signing certificates (PEM by key id).
    "WFCRAWL_PUSH_CERTS_URL": "https://www.googleapis.com/oauth2/v1/certs",
    # Instead of OIDC: a shared secret in the endpoint URL (?token=...).
    "WFCRAWL_PUSH_SECRET": "",
    # Subscriptions (projects/P/subscriptions/S) accepted; empty: any.
    "WFCRAWL_PUSH_SUBSCRIPTIONS": [],
    # "wait": answer when the crawl ends (2xx acks, 5xx redelivers);
    # "accept": answer 202 once it started (the crawl runs on; no redelivery on failure).
    "WFCRAWL_PUSH_MODE": "wait",
    # wait mode: seconds to wait before answering 503 (Pub/Sub redelivers; the
    # redelivery joins the running crawl). Keep it below the ack deadline.
    "WFCRAWL_PUSH_WAIT_TIMEOUT": 540.0,
    # `wfcrawl pubsub setup` and `wfcrawl listen` (docs/launching.md).
    "WFCRAWL_PUBSUB_PROJECT": "",
    "WFCRAWL_PUBSUB_ACK_DEADLINE": 60,
    "WFCRAWL_PUBSUB_MESSAGE_RETENTION": 7 * 24 * 3600,
    "WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS": 5,
    # Dead-letter topic; empty: <topic>-dead-letter.
    "WFCRAWL_PUBSUB_DEAD_LETTER_TOPIC": "",
    # Redelivery backoff after a nack (seconds).
    "WFCRAWL_PUBSUB_MIN_BACKOFF": 10,
    "WFCRAWL_PUBSUB_MAX_BACKOFF": 600,
    # Listener flow control: messages held at once (= concurrent crawls; at most
    # WFCRAWL_LAUNCHER_MAX_CRAWLS).
    "WFCRAWL_PUBSUB_MAX_MESSAGES": 2,
    # Seconds a message's lease is extended while its crawl runs.
    "WFCRAWL_PUBSUB_MAX_LEASE_DURATION": 4 * 3600,
}

DEFAULTS: dict[str, Any] = {
    **RENDER_DEFAULTS,
    **LAUNCHER_DEFAULTS,
    **OPS_DEFAULTS,
    **STORAGE_DEFAULTS,
    **REDIS_DEFAULTS,
    "WFCRAWL_STATS_FILE": WFCRAWL_STATS_FILE,
    "WFCRAWL_FAST_PROFILE": WFCRAWL_FAST_PROFILE,
    "WFCRAWL_SUMMARY_ENABLED": WFCRAWL_SUMMARY_ENABLED,
    "WFCRAWL_SCRIPT_MODULES": WFCRAWL_SCRIPT_MODULES,
    "WFCRAWL_PARSE_WORKERS": WFCRAWL_PARSE_WORKERS,
    "WFCRAWL_PARSE_WORKER_RESTARTS": WFCRAWL_PARSE_WORKER_RESTARTS,
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
        "http": "wfcrawl.downloader.aiohttp.AiohttpDownloadHandler",
        "https": "wfcrawl.downloader.aiohttp.AiohttpDownloadHandler",
    },
    "ASYNCIO_EVENT_LOOP": "uvloop.Loop",
    "WFCRAWL_PARSE_WORKERS": 1,
}
