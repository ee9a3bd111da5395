"""Webhooks: tell receivers how an execution ended (its outcome), or that it stalled.

Receivers come from the workflow's ``webhooks:`` list (and ``WFCRAWL_WEBHOOKS_URLS``
for every crawl). The event is the execution's outcome (:mod:`wfcrawl.outcome`):
``succeeded``, ``degraded``, ``failed`` or ``cancelled``; or ``stalled`` while it
runs. An instance of a fleet that stops while the others go on sends nothing:
the execution has not ended; with ``DATABASE_URL`` the fleet instances that see the
queue drain send it once (the first to record the end, or one that changed it). Each notification is an HTTP POST of a JSON body::

    {"event": "failed", "delivery_id": "...", "execution_id": "...",
     "workflow": "shop", "status": "failed", "finish_reason": "finished",
     "reasons": [{"code": "all_start_requests_failed", "message": "...", "failed": 2}],
     "sent_at": "2024-05-01T12:00:00+00:00", "stats": {...}}

signed with HMAC-SHA256 (``X-Wfcrawl-Signature: sha256=HEX`` over
``TIMESTAMP + "." + body``, ``X-Wfcrawl-Timestamp: TIMESTAMP``); docs/operations.md
shows how a receiver verifies it. Failed attempts (connection errors, timeouts,
408, 429, 5xx) are retried with exponential backoff (``WFCRAWL_WEBHOOKS_BACKOFF``
doubling up to ``WFCRAWL_WEBHOOKS_BACKOFF_MAX``, ``WFCRAWL_WEBHOOKS_RETRY_TIMES``
retries); other 4xx are final.

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
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet import defer, threads

from wfcrawl import __version__
from wfcrawl.context import CrawlContext
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.observability.outcome import OutcomeMonitor
from wfcrawl.observability.progress import crawl_stalled
from wfcrawl.observability.statsfile import _plain
from wfcrawl.security.resolvers import SSRFRefusedError, policy_from_settings
from wfcrawl.security.webhooks import guarded_opener
from wfcrawl.settings.table import Config, read, setting
from wfcrawl.utils.retry import RetryPolicy, async_retrying
from wfcrawl.workflow.plan import DEFAULT_WEBHOOK_EVENTS, Webhook

logger = logging.getLogger(__name__)

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


def post(url: str, body: bytes, headers: dict[str, str], timeout: float,
         opener: urllib.request.OpenerDirector = _OPENER) -> int:
    """POST (blocking; called in a thread); the HTTP status."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, SSRFRefusedError):
            raise exc.reason from None  # the guard's refusal, not a network failure
        raise


def retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


class WebhookStatusError(Exception):
    """A receiver answered with a status other than 2xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _worth_retrying(exc: BaseException) -> bool:
    # Refused, reset, timeout, DNS: all worth a retry; a 4xx answer (not 408/429) is
    # final, and so is the SSRF guard's refusal (it would refuse again).
    if isinstance(exc, SSRFRefusedError):
        return False
    return not isinstance(exc, WebhookStatusError) or retryable(exc.status)


@dataclass(frozen=True)
class WebhooksConfig(Config):
    secret: str = setting("WFCRAWL_WEBHOOKS_SECRET")
    urls: tuple[str, ...] = setting("WFCRAWL_WEBHOOKS_URLS")
    retry_times: int = setting("WFCRAWL_WEBHOOKS_RETRY_TIMES")
    backoff: float = setting("WFCRAWL_WEBHOOKS_BACKOFF")
    backoff_max: float = setting("WFCRAWL_WEBHOOKS_BACKOFF_MAX")
    timeout: float = setting("WFCRAWL_WEBHOOKS_TIMEOUT")
    close_timeout: float = setting("WFCRAWL_WEBHOOKS_CLOSE_TIMEOUT")


class Webhooks:
    """Sends the notifications of one crawl."""

    def __init__(self, crawler: Crawler, config: WebhooksConfig, hooks: list[tuple[Webhook, str]]) -> None:
        self.crawler = crawler
        self.config = config
        self.hooks = hooks  # (hook, its secret)
        self.pending: set[defer.Deferred[None]] = set()
        self.deadline: float | None = None  # monotonic; set at close
        # With the SSRF guard (launched crawls): connections only to allowed addresses.
        policy = policy_from_settings(crawler.settings)
        self.opener = _OPENER if policy is None else guarded_opener(policy, _NoRedirect())

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Webhooks:
        settings = crawler.settings
        if not read(settings, "WFCRAWL_WEBHOOKS_ENABLED"):
            raise NotConfigured
        config = WebhooksConfig.from_settings(settings)
        plan = CrawlContext.of(crawler).plan
        hooks = [Webhook(url, frozenset(DEFAULT_WEBHOOK_EVENTS)) for url in config.urls]
        hooks += list(plan.webhooks if plan is not None else ())
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
        context = CrawlContext.of(self.crawler)
        return {
            "event": event,
            "execution_id": context.execution_id,
            "workflow": context.workflow,
            "status": status,
            **extra,
            "sent_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "stats": stats,
        }

    def notify(self, event: str, payload: dict[str, Any]) -> None:
        for hook, secret in self.hooks:
            if event in hook.events:
                d = deferred_from_coro(self.deliver(hook, secret, {**payload, "delivery_id": uuid.uuid4().hex}))
                self.pending.add(d)
                d.addBoth(self._done, d)

    def _done(self, result: Any, d: defer.Deferred[None]) -> Any:
        self.pending.discard(d)
        return result

    def stalled(self, reason: str, idle_seconds: float) -> None:
        self.notify("stalled", self.payload("stalled", "running", stall_reason=reason, idle_seconds=round(idle_seconds)))

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        monitor = OutcomeMonitor.of(self.crawler)
        end = await monitor.ended() if monitor is not None else None
        if end is not None and end.outcome is not None and end.announce:
            status = end.outcome.status
            self.notify(status, self.payload(status, status, finish_reason=reason,
                                             reasons=end.outcome.reasons_json()))
        self.deadline = time.monotonic() + self.config.close_timeout
        if self.pending:
            # deliver() gives up on its own once the deadline passes (it
            # checks before each wait); this bound covers a hanging attempt.
            waiting = defer.DeferredList(list(self.pending), consumeErrors=True)
            timer = call_later(self.config.close_timeout + self.config.timeout, waiting.cancel)
            try:
                await maybe_deferred_to_future(waiting)
            except defer.CancelledError:
                pass
            timer.cancel()

    # ------------------------------------------------------------ delivery

    async def deliver(self, hook: Webhook, secret: str, payload: dict[str, Any]) -> None:
        stats = self.crawler.stats
        assert stats is not None
        body = json.dumps(payload, sort_keys=True).encode()
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
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
            status = await maybe_deferred_to_future(
                threads.deferToThread(post, hook.url, body, headers, self.config.timeout, self.opener))
            if not 200 <= status < 300:
                raise WebhookStatusError(status)

        config, spider = self.config, self.crawler.spider
        retry = async_retrying(
            RetryPolicy(config.backoff, config.backoff_max, attempts=config.retry_times + 1),
            what=f"Webhook {payload['event']} to {hook.url} failed", log=logger, retry_if=_worth_retrying,
            deadline=lambda: self.deadline, extra={"spider": spider},
        )
        try:
            await retry(attempt)
        except Exception as exc:
            outcome = str(exc) if isinstance(exc, WebhookStatusError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, SSRFRefusedError):
                stats.inc_value("wfcrawl/ssrf/refused")
                stats.inc_value(f"wfcrawl/ssrf/refused/{exc.refusal.reason}")
            stats.inc_value("wfcrawl/webhooks/failed")
            logger.warning("Webhook %s to %s failed after %d attempt(s): %s", payload["event"], hook.url, attempts,
                           outcome, extra={"spider": spider})
            return
        stats.inc_value("wfcrawl/webhooks/delivered")
        logger.info("Webhook %s delivered to %s", payload["event"], hook.url, extra={"spider": spider})
