"""Launching crawls: the launch path, SSRF guard, HTTP API, Pub/Sub push and pull
(docs/launching.md; production values in docs/deploy.md)."""

from __future__ import annotations

from wfcrawl.settings.table import Setting, register
from wfcrawl.workflow.source import MAX_DOCUMENT_BYTES

PAGE = "launching.md"

SETTINGS = register((
    Setting(
        "WFCRAWL_LAUNCHER_WORKDIR", "", "str", page=PAGE, default_doc='`""` (`<tmp>/wfcrawl-launcher`)',
        doc="Per-execution directories (workflow and stats files).",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_MAX_CRAWLS", 2, "int", minimum=1, page=PAGE,
        doc="Crawls one launcher process runs at once; more are refused as busy. (Cloud Run: = `--concurrency`, "
        "2 per vCPU.)",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_MAX_DOCUMENT_BYTES", 256 * 1024, "int", minimum=1, maximum=MAX_DOCUMENT_BYTES, page=PAGE,
        doc="Largest untrusted document (at most 1,000,000, the parser's own limit).",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_ALLOWED_ENV", [], "list", page=PAGE,
        doc="Environment variables untrusted workflows may read. (Keep empty; list only values meant for every "
        "document author.)",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_CRAWL_ARGS", [], "list", page=PAGE,
        doc="Extra arguments of every launched crawl (list, or a JSON array string on the command line), e.g. "
        "`[\"-s\", \"LOG_LEVEL=INFO\"]`.",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_CRAWL_TIMEOUT", 3600.0, "float", minimum=0, page=PAGE,
        doc="Seconds before a crawl is stopped (recorded failed, finish reason `timeout`); `0` means no limit "
        "(then a stuck crawl holds its slot for good). (Cloud Run push `wait`: below the request timeout.)",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_KILL_TIMEOUT", 10.0, "float", exclusive_minimum=0, page=PAGE,
        doc="Seconds between SIGTERM and SIGKILL of the crawl's process group (a callback stuck in C code never "
        "sees SIGTERM). (Cloud Run: `8`; it kills 10 s after its own SIGTERM.)",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_POLL_INTERVAL", 2.0, "float", exclusive_minimum=0, page=PAGE,
        doc="Seconds between store checks (cancellation, joined crawls).",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_LOG_TAIL_LINES", 40, "int", minimum=0, page=PAGE,
        doc="Log lines kept on the execution.",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_FORWARD_LOGS", True, "bool", page=PAGE,
        doc="Crawl logs into the launcher's log (Cloud Logging).",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_KEEP_FILES", False, "bool", page=PAGE,
        doc="Keep per-execution directories.",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_ITEMS_DIR", "wfcrawl-items", "str", page=PAGE,
        doc="Where launched crawls write their items when no store is configured (no `DATABASE_URL`, "
        "`GCS_BUCKET` or `FEEDS`, no `-o` in `WFCRAWL_LAUNCHER_CRAWL_ARGS`): `<dir>/<execution id>.jsonl`, "
        "named on the execution (`params.items_file`). Relative to the launcher's working directory. Empty: "
        "such a launcher refuses to start (never a crawl whose items go nowhere).",
    ),
    Setting(
        "WFCRAWL_LAUNCHER_WORKFLOWS_DIR", "registered-workflows", "str", required=True, page=PAGE,
        doc="Registered workflows without `DATABASE_URL`.",
    ),
    Setting(
        "WFCRAWL_SQLITE_PATH", "wfcrawl.sqlite3", "str", page=PAGE,
        doc="Executions and the audit log without `DATABASE_URL` (a SQLite file; empty: the process's memory).",
    ),
    Setting(
        "WFCRAWL_SSRF_GUARD_ENABLED", False, "bool", page=PAGE,
        doc="The SSRF guard in this crawl (launchers pass `True`).",
    ),
    Setting(
        "WFCRAWL_SSRF_ALLOWED_NETWORKS", [], "list", page=PAGE,
        doc="Networks allowed anyway. (Production: empty.)",
    ),
    Setting(
        "WFCRAWL_API_KEYS", [], "list", environment=True, page=PAGE,
        doc="`NAME:SHA256HEX[:read]` entries; also read from the environment. Empty: `wfcrawl serve` on loopback "
        "with a one-time key.",
    ),
    Setting(
        "WFCRAWL_API_RATE_LIMIT", 60.0, "float", minimum=0, page=PAGE,
        doc="Requests per key in any minute (0: no limit).",
    ),
    Setting(
        "WFCRAWL_API_RATE_BURST", 20, "int", minimum=1, page=PAGE,
        doc="Requests per key in any second.",
    ),
    Setting(
        "WFCRAWL_API_MAX_BODY_BYTES", 2 * 1024 * 1024, "int", minimum=1, page=PAGE,
        doc="Largest request body (413), declared or chunked.",
    ),
    Setting(
        "WFCRAWL_WEB_BODY_TIMEOUT", 30.0, "float", minimum=0.001, page=PAGE,
        doc="Seconds a whole request body may take after the headers (408).",
    ),
    Setting(
        "WFCRAWL_WEB_HEADER_TIMEOUT", 10.0, "float", minimum=0.001, page=PAGE,
        doc="Seconds the request line and headers may take (idle: closed; partial: 408).",
    ),
    Setting(
        "WFCRAWL_WEB_MAX_HEADER_BYTES", 64 * 1024, "int", minimum=1, page=PAGE,
        doc="Largest request line and headers (431).",
    ),
    Setting(
        "WFCRAWL_WEB_KEEP_ALIVE_TIMEOUT", 5.0, "float", minimum=0.001, page=PAGE,
        doc="Seconds an idle kept-alive connection stays open.",
    ),
    Setting(
        "WFCRAWL_WEB_BACKLOG", 2048, "int", minimum=1, page=PAGE,
        doc="Listen queue (capped by `net.core.somaxconn`).",
    ),
    Setting(
        "WFCRAWL_WEB_LIMIT_CONCURRENCY", 1000, "int", minimum=1, page=PAGE,
        doc="Connections plus requests at once; beyond: 503.",
    ),
    Setting(
        "WFCRAWL_WEB_SHUTDOWN_TIMEOUT", 8.0, "float", minimum=0.001, page=PAGE,
        doc="Seconds from SIGTERM to exit, crawls stopped and recorded. (Cloud Run: below 10.)",
    ),
    Setting(
        "WFCRAWL_WEB_ROOT_PATH", "", "str", page=PAGE,
        doc="Path prefix a reverse proxy serves the app under (`/crawls`).",
    ),
    Setting(
        "WFCRAWL_WEB_FORWARDED_ALLOW_IPS", ["127.0.0.1"], "list", page=PAGE,
        doc="Proxies whose `X-Forwarded-For`/`-Proto` are believed (addresses, networks, `*`). (Cloud Run: `*`.)",
    ),
    Setting(
        "WFCRAWL_WEB_SECRET_KEY", "", "str", environment=True, page=PAGE, default_doc='`""` (random per process)',
        doc="Signs session cookies; also read from the environment. (Production: the same secret on every "
        "instance.)",
    ),
    Setting(
        "WFCRAWL_WEB_SESSION_MAX_AGE", 8 * 3600, "int", minimum=1, page=PAGE,
        doc="Seconds a dashboard session lasts.",
    ),
    Setting(
        "WFCRAWL_PUSH_ENABLED", False, "bool", page=PAGE,
        doc="Serve `POST /pubsub/push`.",
    ),
    Setting(
        "WFCRAWL_PUSH_AUDIENCE", "", "str", page=PAGE,
        doc="OIDC audience (the subscription's).",
    ),
    Setting(
        "WFCRAWL_PUSH_SERVICE_ACCOUNT", "", "str", page=PAGE,
        doc="The account the subscription signs as (set it in production).",
    ),
    Setting(
        "WFCRAWL_PUSH_ISSUERS", ["accounts.google.com", "https://accounts.google.com"], "list", page=PAGE,
        doc="Accepted `iss`.",
    ),
    Setting(
        "WFCRAWL_PUSH_CERTS_URL", "https://www.googleapis.com/oauth2/v1/certs", "str", required=True, page=PAGE,
        doc="Signing certificates.",
    ),
    Setting(
        "WFCRAWL_PUSH_SECRET", "", "str", environment=True, page=PAGE,
        doc="Shared secret (`?token=`); also read from the environment.",
    ),
    Setting(
        "WFCRAWL_PUSH_SUBSCRIPTIONS", [], "list", page=PAGE,
        doc="Accepted subscriptions (set it in production).",
    ),
    Setting(
        "WFCRAWL_PUSH_MODE", "wait", "str", choices=("wait", "accept"), page=PAGE,
        doc="`wait` or `accept` (above).",
    ),
    Setting(
        "WFCRAWL_PUSH_WAIT_TIMEOUT", 540.0, "float", exclusive_minimum=0, page=PAGE,
        doc="`wait` mode: seconds before 503. (Below the ack deadline and Cloud Run's timeout.)",
    ),
    # `wfcrawl pubsub setup` and `wfcrawl listen`; the bounds are Pub/Sub's own limits.
    Setting(
        "WFCRAWL_PUBSUB_PROJECT", "", "str", page=PAGE,
        doc="`wfcrawl pubsub setup`: the project of topic and subscription names that are not full paths "
        "(`--project` wins).",
    ),
    Setting(
        "WFCRAWL_PUBSUB_ACK_DEADLINE", 60, "int", minimum=10, maximum=600, page=PAGE,
        doc="Seconds: the launch subscription's ack deadline (Pub/Sub: 10-600).",
    ),
    Setting(
        "WFCRAWL_PUBSUB_MESSAGE_RETENTION", 7 * 24 * 3600, "int", minimum=600, maximum=7 * 24 * 3600, page=PAGE,
        default_doc="`604800` (7 days)",
        doc="Seconds the launch subscription keeps undelivered messages (Pub/Sub: 600-604800).",
    ),
    Setting(
        "WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS", 5, "int", minimum=5, maximum=100, page=PAGE,
        doc="Deliveries of a message before it moves to the dead-letter topic (Pub/Sub: 5-100).",
    ),
    Setting(
        "WFCRAWL_PUBSUB_DEAD_LETTER_TOPIC", "", "str", page=PAGE, default_doc='`""` (`<topic>-dead-letter`)',
        doc="The dead-letter topic (name or full path).",
    ),
    Setting(
        "WFCRAWL_PUBSUB_MIN_BACKOFF", 10, "int", minimum=0, maximum=600, page=PAGE,
        doc="Seconds before a nacked message is redelivered, at first (Pub/Sub: 0-600).",
    ),
    Setting(
        "WFCRAWL_PUBSUB_MAX_BACKOFF", 600, "int", minimum=0, maximum=600, page=PAGE,
        doc="Seconds before a nacked message is redelivered, at most (Pub/Sub: 0-600; at least the minimum).",
    ),
    Setting(
        "WFCRAWL_PUBSUB_MAX_MESSAGES", 2, "int", minimum=1, page=PAGE,
        doc="`wfcrawl listen`: messages (= crawls) held at once; at most `WFCRAWL_LAUNCHER_MAX_CRAWLS`.",
    ),
    Setting(
        "WFCRAWL_PUBSUB_MAX_LEASE_DURATION", 4 * 3600, "float", exclusive_minimum=0, page=PAGE,
        default_doc="`14400` (4 h)",
        doc="`wfcrawl listen`: seconds a message's lease is extended while its crawl runs.",
    ),
))
