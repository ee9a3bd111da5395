"""Webhooks: tell receivers when an execution finished, failed, was cancelled or stalled.

Receivers come from the workflow's ``webhooks:`` list (and ``WFCRAWL_WEBHOOKS_URLS``
for every crawl). Each notification is an HTTP POST of a JSON body::

    {"event": "finished", "delivery_id": "...", "execution_id": "...",
     "workflow": "shop", "status": "finished", "finish_reason": "finished",
     "sent_at": "2024-05-01T12:00:00+00:00", "stats": {...}}

signed with HMAC-SHA256 (``X-Wfcrawl-Signature: sha256=HEX`` over
``TIMESTAMP + "." + body``, ``X-Wfcrawl-Timestamp: TIMESTAMP``); docs/operations.md
shows how a receiver verifies it. Failed attempts (connection errors, timeouts,
408, 429, 5xx) are retried with exponential backoff; other 4xx are final.

A dead receiver never blocks or fails the crawl: posts run in threads, waits
are reactor timers, and at close the crawl waits at most
``WFCRAWL_WEBHOOKS_CLOSE_TIMEOUT`` seconds for deliveries still retrying.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet import defer, task, threads

from wfcrawl import __version__
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.extensions.executions import status_for
from wfcrawl.extensions.progress import crawl_stalled
from wfcrawl.extensions.statsfile import _plain
from wfcrawl.workflow.plan import Webhook

logger = logging.getLogger(__name__)


def _reactor() -> Any:
    # Imported late: importing twisted.internet.reactor installs a reactor, and
    # Scrapy must have installed its own (asyncio) one first.
    from twisted.internet import reactor

    return reactor

SIGNATURE_HEADER = "X-Wfcrawl-Signature"
TIMESTAMP_HEADER = "X-Wfcrawl-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Wfcrawl-Signature`` value of a body sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected POST would turn into a GET elsewhere: treat 3xx as an answer.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST (blocking; called in a thread); the HTTP status."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


@dataclass(frozen=True)
class WebhooksConfig:
    secret: str
    urls: tuple[str, ...]
    retry_times: int
    backoff: float
    backoff_max: float
    timeout: float
    close_timeout: float

    @classmethod
    def from_settings(cls, settings: Any) -> WebhooksConfig:
        return cls(
            secret=settings.get("WFCRAWL_WEBHOOKS_SECRET") or "",
            urls=tuple(settings.getlist("WFCRAWL_WEBHOOKS_URLS")),
            retry_times=settings.getint("WFCRAWL_WEBHOOKS_RETRY_TIMES"),
            backoff=settings.getfloat("WFCRAWL_WEBHOOKS_BACKOFF"),
            backoff_max=settings.getfloat("WFCRAWL_WEBHOOKS_BACKOFF_MAX"),
            timeout=settings.getfloat("WFCRAWL_WEBHOOKS_TIMEOUT"),
            close_timeout=settings.getfloat("WFCRAWL_WEBHOOKS_CLOSE_TIMEOUT"),
        )


class Webhooks:
    """Sends the notifications of one crawl."""

    def __init__(self, crawler: Crawler, config: WebhooksConfig, hooks: list[tuple[Webhook, str]]) -> None:
        self.crawler = crawler
        self.config = config
        self.hooks = hooks  # (hook, its secret)
        self.pending: set[defer.Deferred[None]] = set()
        self.deadline: float | None = None  # monotonic; set at close

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Webhooks:
        settings = crawler.settings
        if not settings.getbool("WFCRAWL_WEBHOOKS_ENABLED"):
            raise NotConfigured
        config = WebhooksConfig.from_settings(settings)
        plan = getattr(crawler.spider, "plan", None)
        hooks = [Webhook(url, frozenset({"finished", "failed"})) for url in config.urls]
        hooks += list(getattr(plan, "webhooks", ()))
        if not hooks:
            raise NotConfigured
        ext = cls(crawler, config, [(hook, cls._secret(hook, config)) for hook in hooks])
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.stalled, signal=crawl_stalled)
        return ext

    @staticmethod
    def _secret(hook: Webhook, config: WebhooksConfig) -> str:
        # Unsigned notifications would let anyone forge "finished" events:
        # a hook without a secret is a configuration error, found at start.
        if hook.secret_env:
            secret = os.environ.get(hook.secret_env, "")
            if not secret:
                raise ConfigurationError(f"webhook {hook.url}: environment variable {hook.secret_env} (its secret) is not set")
            return secret
        if not config.secret:
            raise ConfigurationError(
                f"webhook {hook.url}: no secret to sign with; set WFCRAWL_WEBHOOKS_SECRET "
                "(setting or environment) or the hook's secret_env"
            )
        return config.secret

    # ------------------------------------------------------------ events

    def payload(self, event: str, status: str, **extra: Any) -> dict[str, Any]:
        assert self.crawler.stats is not None
        stats = {k: _plain(v) for k, v in self.crawler.stats.get_stats().items()}
        spider = self.crawler.spider
        plan = getattr(spider, "plan", None)
        return {
            "event": event,
            "execution_id": getattr(spider, "execution_id", None),
            "workflow": plan.name if plan is not None else getattr(spider, "name", None),
            "status": status,
            **extra,
            "sent_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "stats": stats,
        }

    def notify(self, event: str, payload: dict[str, Any]) -> None:
        for hook, secret in self.hooks:
            if event in hook.events:
                d = defer.ensureDeferred(self.deliver(hook, secret, {**payload, "delivery_id": uuid.uuid4().hex}))
                self.pending.add(d)
                d.addBoth(self._done, d)

    def _done(self, result: Any, d: defer.Deferred[None]) -> Any:
        self.pending.discard(d)
        return result

    def stalled(self, reason: str, idle_seconds: float) -> None:
        self.notify("stalled", self.payload("stalled", "running", stall_reason=reason, idle_seconds=round(idle_seconds)))

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        status = status_for(reason)
        self.notify(status, self.payload(status, status, finish_reason=reason))
        self.deadline = time.monotonic() + self.config.close_timeout
        if self.pending:
            # deliver() gives up on its own once the deadline passes (it
            # checks before each wait); this bound covers a hanging attempt.
            waiting = defer.DeferredList(list(self.pending), consumeErrors=True)
            timer = _reactor().callLater(self.config.close_timeout + self.config.timeout, waiting.cancel)
            try:
                await maybe_deferred_to_future(waiting)
            except defer.CancelledError:
                pass
            if timer.active():
                timer.cancel()

    # ------------------------------------------------------------ delivery

    async def deliver(self, hook: Webhook, secret: str, payload: dict[str, Any]) -> None:
        stats = self.crawler.stats
        assert stats is not None
        body = json.dumps(payload, sort_keys=True).encode()
        delay = self.config.backoff
        attempts = self.config.retry_times + 1
        outcome = "no attempt"
        for attempt in range(1, attempts + 1):
            timestamp = str(int(time.time()))  # signed per attempt: receivers may reject old timestamps
            headers = {
                "Content-Type": "application/json",
                "User-Agent": f"wfcrawl-webhooks/{__version__}",
                "X-Wfcrawl-Event": payload["event"],
                "X-Wfcrawl-Delivery": payload["delivery_id"],
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(secret, timestamp, body),
            }
            stats.inc_value("wfcrawl/webhooks/attempts")
            try:
                status = await threads.deferToThread(post, hook.url, body, headers, self.config.timeout)
            except Exception as exc:  # refused, reset, timeout, DNS: all worth a retry
                outcome = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    stats.inc_value("wfcrawl/webhooks/delivered")
                    logger.info("Webhook %s delivered to %s", payload["event"], hook.url, extra={"spider": self.crawler.spider})
                    return
                outcome = f"HTTP {status}"
                if not retryable(status):
                    break
            if attempt == attempts or (self.deadline is not None and time.monotonic() + delay > self.deadline):
                break
            await task.deferLater(_reactor(), delay)
            delay = min(delay * 2, self.config.backoff_max)
        stats.inc_value("wfcrawl/webhooks/failed")
        logger.warning("Webhook %s to %s failed after %d attempt(s): %s", payload["event"], hook.url, attempt, outcome,
                       extra={"spider": self.crawler.spider})
