"""Pub/Sub push: ``POST /pubsub/push`` runs the crawl a message asks for.

Pub/Sub acks a push message when the endpoint answers 102, 200, 201, 202 or
204 in time, and redelivers it (with backoff, then to the dead-letter topic
after the subscription's max delivery attempts) on anything else. So:

=====  ==========================================================  ===========
code   when                                                        Pub/Sub
=====  ==========================================================  ===========
200    the crawl succeeded, degraded or was cancelled, now or      acks
       before (wfcrawl.outcome.push_status)
202    mode ``accept``: the crawl started                          acks
400    malformed envelope or launch message, invalid workflow,     redelivers,
       refused start URL                                           dead-letters
401    no/invalid token or secret                                  redelivers
403    token for another audience/issuer/account, other subscription  redelivers
429    this instance runs WFCRAWL_LAUNCHER_MAX_CRAWLS crawls       redelivers
500    the crawl failed (the redelivery starts attempt 2)          redelivers,
                                                                   dead-letters
503    still running after WFCRAWL_PUSH_WAIT_TIMEOUT, store down   redelivers
=====  ==========================================================  ===========

A redelivery of a message whose crawl is still running joins it (waits for
the same execution) instead of starting another; the launch key is the
message id, so a message delivered twice never starts two crawls. Every
answer but 200 and 202 is a problem (:mod:`wfcrawl.web.problems`); the 500 of a
failed crawl carries the ``execution`` (:func:`ended` decides it). The wait
holds no thread: the handler polls the launcher from the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from wfcrawl.launcher.launch import Launcher, LauncherBusyError, LaunchRejectedError
from wfcrawl.launcher.messages import pubsub_request
from wfcrawl.outcome import push_status
from wfcrawl.settings.table import Config, setting
from wfcrawl.storage.executions import FINAL_STATUSES, Execution
from wfcrawl.web.auth import AuthError
from wfcrawl.web.models import ExecutionOut
from wfcrawl.web.problems import ProblemError, responses
from wfcrawl.web.pushauth import PushVerifier
from wfcrawl.web.services import services_of

logger = logging.getLogger(__name__)

PATH = "/pubsub/push"


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
    except (ValueError, RecursionError) as exc:  # RecursionError: [[[[... nested past Python's stack
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
class PushConfig(Config):
    #: ``wait`` or ``accept`` (the table's choices).
    mode: str = setting("WFCRAWL_PUSH_MODE")
    wait_timeout: float = setting("WFCRAWL_PUSH_WAIT_TIMEOUT")
    #: Accepted subscriptions; empty: any.
    subscriptions: frozenset[str] = setting("WFCRAWL_PUSH_SUBSCRIPTIONS", frozenset)


def _execution(execution: Execution) -> dict[str, Any]:
    return ExecutionOut.of(execution).model_dump(mode="json")


def ended(execution: Execution, started: bool) -> Response:
    """What Pub/Sub is told about a crawl that has ended: 200 acks, a problem (500) redelivers.

    The one place that maps a crawl's outcome to the push answer
    (:func:`wfcrawl.outcome.push_status`): ``failed`` is a 500 (redelivered, then
    dead-lettered), ``succeeded``, ``degraded`` and ``cancelled`` a 200.
    """
    if push_status(execution.status) == 500:
        why = (execution.error or execution.finish_reason or "").split("\n", 1)[0]
        raise ProblemError(500, f"execution {execution.id} failed: {why}", kind="crawl-failed",
                           execution=_execution(execution), started=started)
    return JSONResponse({"execution": _execution(execution), "started": started})


class PushEndpoint:
    def __init__(self, launcher: Launcher, verifier: PushVerifier, config: PushConfig) -> None:
        self.launcher = launcher
        self.verifier = verifier
        self.config = config

    async def __call__(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.verifier.verify, request.headers, request.query_params)
        except AuthError as exc:
            logger.warning("Push request refused (%d): %s", exc.status, exc.message)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            raise ProblemError(exc.status, exc.message, headers=headers) from None
        try:
            envelope = parse_envelope(await request.body())
        except EnvelopeError as exc:
            raise ProblemError(400, f"malformed push envelope: {exc}", kind="invalid-request") from None
        if self.config.subscriptions and envelope.subscription not in self.config.subscriptions:
            raise ProblemError(403, f"subscription {envelope.subscription} is not accepted here")
        try:
            launch = pubsub_request(envelope.data, envelope.message_id, origin="pubsub-push",
                                    subscription=envelope.subscription)
            execution, started = await run_in_threadpool(self.launcher.launch, launch, retry_failed=True)
        except LaunchRejectedError as exc:
            # Not acked: after max delivery attempts it waits in the dead-letter
            # topic, where an operator can read why (the log says it too).
            logger.warning("Message %s refused: %s", envelope.message_id, exc)
            raise ProblemError(400, exc.message, kind="launch-rejected", problems=exc.problems) from None
        except LauncherBusyError as exc:
            raise ProblemError(429, str(exc), kind="busy", headers={"Retry-After": str(exc.retry_after)}) from None
        except Exception as exc:  # the execution store is unreachable, ...
            logger.exception("Cannot launch message %s", envelope.message_id)
            raise ProblemError(503, f"cannot launch now: {type(exc).__name__}") from None
        if started:
            await run_in_threadpool(
                services_of(request).record, f"pubsub:{envelope.subscription}", "execution.launched",
                execution.id, workflow=execution.workflow, origin="pubsub-push", message_id=envelope.message_id)
        if self.config.mode == "accept":
            return JSONResponse({"execution": _execution(execution), "started": started}, 202)
        final = await self._wait(execution.id)
        if final is None:
            raise ProblemError(503, f"the crawl of execution {execution.id} is still running", kind="still-running",
                               headers={"Retry-After": "60"}, execution_id=execution.id)
        return ended(final, started)

    async def _wait(self, execution_id: str) -> Execution | None:
        """The execution once final, or None after the wait timeout; no thread is held while waiting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.wait_timeout
        while True:
            # wait(…, 0): this launcher's crawls are looked at in memory, others in the store.
            execution = await run_in_threadpool(self.launcher.wait, execution_id, 0)
            if execution is not None and execution.status in FINAL_STATUSES:
                return execution
            if loop.time() >= deadline:
                return None
            # A crawl of this launcher ends in memory: look often. Another's is read from the store.
            interval = 0.2 if execution_id in self.launcher.running() else self.launcher.config.poll_interval
            await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))


def route(endpoint: PushEndpoint) -> APIRouter:
    """The router of ``POST /pubsub/push`` (only when push is enabled: else 404)."""
    router = APIRouter()
    router.add_api_route(
        PATH, endpoint.__call__, methods=["POST"], summary="Pub/Sub push: run the crawl a message asks for",
        response_class=JSONResponse, status_code=200,
        responses={202: {"description": "Mode accept: the crawl started."},
                   **responses(400, 401, 403, 429, 500, 503)},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "description": "Pub/Sub's push envelope (docs/launching.md)."}}}}},
    )
    return router
