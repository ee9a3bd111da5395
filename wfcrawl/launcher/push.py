"""Pub/Sub push: ``POST /pubsub/push`` runs the crawl a message asks for.

Pub/Sub acks a push message when the endpoint answers 102, 200, 201, 202 or
204 in time, and redelivers it (with backoff, then to the dead-letter topic
after the subscription's max delivery attempts) on anything else. So:

=====  ==========================================================  ===========
code   when                                                        Pub/Sub
=====  ==========================================================  ===========
200    the crawl finished (or was cancelled), now or before        acks
202    mode ``accept``: the crawl started                          acks
400    malformed envelope or launch message, invalid workflow,     redelivers,
       refused start URL                                           dead-letters
401    no/invalid token or secret                                  redelivers
403    token for another audience/issuer/account, other subscription  redelivers
429    this instance runs WFCRAWL_LAUNCHER_MAX_CRAWLS crawls       redelivers
500    the crawl failed (the redelivery starts attempt 2)          redelivers
503    still running after WFCRAWL_PUSH_WAIT_TIMEOUT, store down   redelivers
=====  ==========================================================  ===========

A redelivery of a message whose crawl is still running joins it (waits for
the same execution) instead of starting another; the launch key is the
message id, so a message delivered twice never starts two crawls.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any

from scrapy.settings import BaseSettings

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.auth import AuthError, OIDCVerifier, PushVerifier, SharedSecretVerifier
from wfcrawl.launcher.http import HttpRequest, Reply, error, execution_json
from wfcrawl.launcher.launch import Launcher, LauncherBusyError, LaunchRejectedError
from wfcrawl.launcher.messages import pubsub_request

logger = logging.getLogger(__name__)

PATH = "/pubsub/push"
MODES = ("wait", "accept")


class EnvelopeError(ValueError):
    pass


@dataclass(frozen=True)
class Envelope:
    """Pub/Sub's push request body (the JSON "wrapper")."""

    message_id: str
    data: bytes
    attributes: dict[str, str]
    subscription: str
    delivery_attempt: int | None


def parse_envelope(body: bytes) -> Envelope:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise EnvelopeError(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("message"), dict):
        raise EnvelopeError("expected {\"message\": {...}, \"subscription\": ...}")
    message = doc["message"]
    message_id = message.get("messageId", message.get("message_id"))
    if not isinstance(message_id, str) or not message_id:
        raise EnvelopeError("message.messageId is missing")
    subscription = doc.get("subscription")
    if not isinstance(subscription, str) or not subscription:
        raise EnvelopeError("subscription is missing")
    raw = message.get("data")
    if not isinstance(raw, str) or not raw:
        raise EnvelopeError("message.data is missing (base64 of the launch message)")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError("message.data is not base64") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise EnvelopeError("message.attributes must be an object of strings")
    attempt = doc.get("deliveryAttempt")
    if attempt is not None and (not isinstance(attempt, int) or isinstance(attempt, bool)):
        raise EnvelopeError("deliveryAttempt must be an integer")
    return Envelope(message_id, data, dict(attributes), subscription, attempt)


@dataclass(frozen=True)
class PushConfig:
    mode: str
    wait_timeout: float
    subscriptions: frozenset[str]

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> PushConfig:
        mode = settings.get("WFCRAWL_PUSH_MODE")
        if mode not in MODES:
            raise ConfigurationError(f"WFCRAWL_PUSH_MODE must be one of {', '.join(MODES)}, not {mode!r}")
        return cls(mode, settings.getfloat("WFCRAWL_PUSH_WAIT_TIMEOUT"),
                   frozenset(settings.getlist("WFCRAWL_PUSH_SUBSCRIPTIONS")))


def push_verifier(settings: BaseSettings) -> PushVerifier:
    """OIDC (``WFCRAWL_PUSH_AUDIENCE``) or a shared secret (``WFCRAWL_PUSH_SECRET``); both: both."""
    verifiers: list[PushVerifier] = []
    if settings.get("WFCRAWL_PUSH_AUDIENCE"):
        verifiers.append(OIDCVerifier(
            audience=settings["WFCRAWL_PUSH_AUDIENCE"], certs_url=settings["WFCRAWL_PUSH_CERTS_URL"],
            issuers=settings.getlist("WFCRAWL_PUSH_ISSUERS"),
            service_account=settings.get("WFCRAWL_PUSH_SERVICE_ACCOUNT") or "",
        ))
    if settings.get("WFCRAWL_PUSH_SECRET"):
        verifiers.append(SharedSecretVerifier(settings["WFCRAWL_PUSH_SECRET"]))
    if not verifiers:
        raise ConfigurationError(
            "WFCRAWL_PUSH_ENABLED needs WFCRAWL_PUSH_AUDIENCE (OIDC) or WFCRAWL_PUSH_SECRET: "
            "an unauthenticated push endpoint would start crawls for anyone"
        )
    return verifiers[0] if len(verifiers) == 1 else _All(verifiers)


class _All:
    def __init__(self, verifiers: list[PushVerifier]) -> None:
        self.verifiers = verifiers

    def verify(self, headers: Any, query: Any) -> None:
        for verifier in self.verifiers:
            verifier.verify(headers, query)


class PushEndpoint:
    def __init__(self, launcher: Launcher, verifier: PushVerifier, config: PushConfig) -> None:
        self.launcher = launcher
        self.verifier = verifier
        self.config = config

    def __call__(self, request: HttpRequest) -> Reply:
        if request.method != "POST":
            return Reply(405, {"error": "POST only"}, {"Allow": "POST"})
        try:
            self.verifier.verify(request.headers, request.query)
        except AuthError as exc:
            logger.warning("Push request refused (%d): %s", exc.status, exc.message)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            return Reply(exc.status, {"error": exc.message}, headers)
        try:
            envelope = parse_envelope(request.body)
        except EnvelopeError as exc:
            return error(400, f"malformed push envelope: {exc}")
        if self.config.subscriptions and envelope.subscription not in self.config.subscriptions:
            return error(403, f"subscription {envelope.subscription} is not accepted here")
        try:
            launch = pubsub_request(envelope.data, envelope.message_id, origin="pubsub-push",
                                    subscription=envelope.subscription)
            execution, started = self.launcher.launch(launch, retry_failed=True)
        except LaunchRejectedError as exc:
            # Not acked: after max delivery attempts it waits in the dead-letter
            # topic, where an operator can read why (the log says it too).
            logger.warning("Message %s refused: %s", envelope.message_id, exc)
            return error(400, exc.message, problems=exc.problems)
        except LauncherBusyError as exc:
            return Reply(429, {"error": str(exc)}, {"Retry-After": str(exc.retry_after)})
        except Exception as exc:  # the execution store is unreachable, ...
            logger.exception("Cannot launch message %s", envelope.message_id)
            return error(503, f"cannot launch now: {type(exc).__name__}")
        if self.config.mode == "accept":
            return Reply(202, {"execution": execution_json(execution), "started": started})
        final = self.launcher.wait(execution.id, self.config.wait_timeout)
        if final is None:
            return Reply(503, {"error": "the crawl is still running", "execution_id": execution.id},
                         {"Retry-After": "60"})
        status = 500 if final.status == "failed" else 200
        return Reply(status, {"execution": execution_json(final), "started": started})
