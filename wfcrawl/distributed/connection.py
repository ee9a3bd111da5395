"""One tuned Redis client (and connection pool) per process.

scrapy-redis builds its client with ``REDIS_PARAMS["redis_cls"].from_url(url,
**params)``; the add-on names :class:`SharedRedis` there, so the scheduler, the
queue and the rate limiter of a process all share one pool. The defaults
(:data:`DEFAULT_PARAMS`, merged under the project's ``REDIS_PARAMS``) keep calls
short: a call to an unreachable Redis fails within seconds and the caller's own
loop retries it with backoff, instead of blocking for scrapy-redis's 30 s.
"""

from __future__ import annotations

import threading
from typing import Any

from scrapy.settings import BaseSettings

from wfcrawl.settings.table import read

#: redis-py parameters wfcrawl sets unless ``REDIS_PARAMS`` says otherwise.
DEFAULT_PARAMS: dict[str, Any] = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
    "socket_keepalive": True,
    # A pooled connection unused for this long is PINGed before use: a Redis
    # that restarted is noticed at once, not by a failed script call.
    "health_check_interval": 15,
    # Threads of one process share the pool: the broker and the rate limiter
    # (one call at a time each), a health check. Small and fixed: a fleet of
    # thousands of instances must not open thousands of connections each.
    "max_connections": 4,
}

_lock = threading.Lock()
# One client per (url, parameters) for the whole process: the point of the
# module ("one pool per process"), so it is process-global on purpose.
_clients: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}


class SharedRedis:
    """``redis_cls`` for scrapy-redis: ``from_url`` returns the process's client."""

    @classmethod
    def from_url(cls, url: str, **params: Any) -> Any:
        return shared_client(url, **params)


def shared_client(url: str, **params: Any) -> Any:
    import os
    import socket

    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    # CLIENT LIST tells the instances apart (CLIENT SETNAME on every connection).
    params.setdefault("client_name", f"wfcrawl/{socket.gethostname()}/{os.getpid()}")
    params.pop("redis_cls", None)
    params.pop("encoding", None)  # scrapy-redis's default; payloads are bytes
    params.pop("retry_on_timeout", None)
    if url.startswith("unix:"):
        # TCP keepalive means nothing on a unix socket (and redis-py refuses it).
        params.pop("socket_keepalive", None)
        params.pop("socket_keepalive_options", None)
    key = (url, tuple(sorted((k, repr(v)) for k, v in params.items())))
    with _lock:
        client = _clients.get(key)
        if client is None:
            # A short in-call retry rides over a dropped connection; longer
            # outages are the callers' business (backoff in the broker). Not
            # over a timeout: the command may have run, and a re-sent script
            # call would take more leases while the first one's are unknown;
            # and three 5 s timeouts in a row would stall the crawl for 15 s
            # without a word. The broker retries it, and says so.
            retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2,
                          supported_errors=(redis.exceptions.ConnectionError,))
            pool = redis.BlockingConnectionPool.from_url(
                url, timeout=params.pop("pool_timeout", 10), retry=retry, **params
            )
            client = redis.Redis(connection_pool=pool)
            _clients[key] = client
        return client


def redis_url(settings: BaseSettings) -> str:
    url: str = read(settings, "REDIS_URL")
    return url


def client_from_settings(settings: BaseSettings) -> Any:
    """The client scrapy-redis would build from these settings (the shared one)."""
    from scrapy_redis.connection import get_redis_from_settings

    return get_redis_from_settings(settings)
