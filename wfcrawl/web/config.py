"""Settings of ``wfcrawl serve``'s web application and server, read once (docs/launching.md).

Types, bounds and defaults are the settings table's (:mod:`wfcrawl.settings.launcher`).
"""

from __future__ import annotations

from dataclasses import dataclass

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.settings.table import Config, setting


def _root_path(value: str) -> str:
    root = value.rstrip("/")
    if root and not root.startswith("/"):
        raise ConfigurationError(f"WFCRAWL_WEB_ROOT_PATH must start with '/', not {value!r}")
    return root


@dataclass(frozen=True)
class WebConfig(Config):
    #: API: requests per key in any minute (0: no limit) and in any second (the burst).
    rate_limit: float = setting("WFCRAWL_API_RATE_LIMIT")
    rate_burst: int = setting("WFCRAWL_API_RATE_BURST")
    #: Largest request body (bytes) and the seconds a whole body may take to arrive.
    max_body_bytes: int = setting("WFCRAWL_API_MAX_BODY_BYTES")
    body_timeout: float = setting("WFCRAWL_WEB_BODY_TIMEOUT")
    #: Seconds the request line and headers may take, and their largest size (bytes).
    header_timeout: float = setting("WFCRAWL_WEB_HEADER_TIMEOUT")
    max_header_bytes: int = setting("WFCRAWL_WEB_MAX_HEADER_BYTES")
    #: Seconds an idle keep-alive connection is kept.
    keep_alive_timeout: float = setting("WFCRAWL_WEB_KEEP_ALIVE_TIMEOUT")
    #: Listen queue length, and connections plus requests at once (beyond: 503).
    backlog: int = setting("WFCRAWL_WEB_BACKLOG")
    limit_concurrency: int = setting("WFCRAWL_WEB_LIMIT_CONCURRENCY")
    #: Seconds from SIGTERM until everything (crawls included) is stopped and recorded.
    shutdown_timeout: float = setting("WFCRAWL_WEB_SHUTDOWN_TIMEOUT")
    #: The path prefix a reverse proxy serves the app under ("" or "/prefix").
    root_path: str = setting("WFCRAWL_WEB_ROOT_PATH", _root_path)
    #: Addresses (or networks) whose X-Forwarded-For/-Proto headers are trusted.
    forwarded_allow_ips: tuple[str, ...] = setting("WFCRAWL_WEB_FORWARDED_ALLOW_IPS")
    #: Signs session cookies; empty: a random key of this process (sessions end at restart).
    secret_key: str = setting("WFCRAWL_WEB_SECRET_KEY")
    session_max_age: int = setting("WFCRAWL_WEB_SESSION_MAX_AGE")
