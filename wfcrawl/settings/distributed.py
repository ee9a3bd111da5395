"""Distributed crawls (docs/distributed.md): used only when ``REDIS_URL`` is set."""

from __future__ import annotations

from wfcrawl.settings.table import Setting, register

PAGE = "distributed.md"

SETTINGS = register((
    Setting(
        "REDIS_URL", "", "str", environment=True, page=PAGE,
        doc="also read from the environment; set = distributed crawl",
    ),
    Setting(
        # Keys of a run: <prefix>:{<workflow>:<execution id>}:...
        "WFCRAWL_REDIS_KEY_PREFIX", "wfcrawl", "str", required=True, page=PAGE,
        doc="first part of every key",
    ),
    Setting(
        "WFCRAWL_REDIS_LEASE_TTL", 30.0, "float", minimum=1, page=PAGE,
        doc="seconds a lease lives without renewal (renewed every TTL/3); at least 1",
    ),
    Setting(
        "WFCRAWL_REDIS_IDLE_POLL", 0.5, "float", exclusive_minimum=0, page=PAGE,
        doc="longest wait between polls for work while Redis has none (backoff from 0.1 s, +-25 % jitter)",
    ),
    Setting(
        "WFCRAWL_REDIS_FLUSH_INTERVAL", 0.05, "float", exclusive_minimum=0, page=PAGE,
        doc="seconds between checks whether a call to Redis is due (buffers, leases, renewals)",
    ),
    Setting(
        "WFCRAWL_REDIS_BATCH_DELAY", 1.0, "float", exclusive_minimum=0, page=PAGE,
        doc="seconds new requests and releases may wait locally before a call carries them (at most "
        "`WFCRAWL_REDIS_LEASE_TTL`/6; 0.1 s while the shared queue is empty; at once at 500 or when idle)",
    ),
    Setting(
        "WFCRAWL_REDIS_STALL_WARNING", 2.0, "float", exclusive_minimum=0, page=PAGE,
        doc="a Redis call slower than this many seconds is logged (`Slow Redis call: ...`) and counted",
    ),
    Setting(
        "WFCRAWL_REDIS_PREFETCH", 8, "int", minimum=0, page=PAGE,
        doc="requests leased beyond `CONCURRENT_REQUESTS`",
    ),
    Setting(
        "WFCRAWL_REDIS_DUPEFILTER", "set", "str", choices=("set", "bloom"), page=PAGE,
        doc="`set` or `bloom`",
    ),
    Setting(
        "WFCRAWL_REDIS_BLOOM_CAPACITY", 10_000_000, "int", minimum=1, page=PAGE,
        doc="expected URLs (Bloom mode)",
    ),
    Setting(
        "WFCRAWL_REDIS_BLOOM_ERROR_RATE", 0.001, "float", exclusive_minimum=0, exclusive_maximum=1, page=PAGE,
        doc="false-positive rate at capacity (Bloom mode)",
    ),
    Setting(
        "WFCRAWL_REDIS_LOCAL_SEEN_MAX", 100_000, "int", minimum=0, page=PAGE,
        doc="fingerprints a process remembers having queued (~75 bytes each in the process)",
    ),
    Setting(
        "WFCRAWL_REDIS_KEY_TTL", 7 * 24 * 3600, "int", minimum=0, page=PAGE,
        doc="seconds after the last activity a run's keys expire (0: never)",
    ),
    Setting(
        "WFCRAWL_REDIS_UNAVAILABLE_TIMEOUT", 120.0, "float", exclusive_minimum=0, page=PAGE,
        doc="seconds of unreachable Redis before an instance gives up",
    ),
    Setting(
        "WFCRAWL_REDIS_RATE_LIMIT_ENABLED", True, "bool", page=PAGE,
        doc="fleet-wide per-domain delay",
    ),
    Setting(
        "WFCRAWL_REDIS_DURABLE_RELEASE", True, "bool", page=PAGE,
        doc="with storage pipelines: hold a finished request's release until its items are committed/uploaded",
    ),
    Setting(
        "WFCRAWL_REDIS_RELEASE_MAX_WAIT", 30.0, "float", exclusive_minimum=0, page=PAGE,
        doc="seconds a held release waits before the stores are asked to write now (GCS: rotate early)",
    ),
    Setting(
        "WFCRAWL_REDIS_RELEASE_MAX_HELD", 10_000, "int", minimum=1, page=PAGE,
        doc="held releases at most (~270 bytes each); at the bound the stores are asked to write and no new "
        "work is leased",
    ),
))
