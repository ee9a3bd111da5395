"""Launch keys: what a key stands for, and the execution it names.

A launch key (a Pub/Sub message id, an ``Idempotency-Key``, a caller's
execution id) names one request: :func:`request_digest` is recorded with the
execution, and the same key with another request is a
:class:`~wfcrawl.launcher.checks.LaunchConflictError` (:func:`same_request`).
An execution without a chosen id is named after its key (:func:`execution_id_for`),
so a duplicate finds it with one look-up, even while every slot is busy.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from wfcrawl.launcher.checks import LaunchConflictError, LaunchRequest
from wfcrawl.storage.executions import Execution


def request_digest(request: LaunchRequest) -> str:
    """What a launch key stands for: the request's document (or workflow name), base URL and id."""
    body = json.dumps([request.document, request.workflow, request.base_url, request.execution_id])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def execution_id_for(request: LaunchRequest, base_key: str | None, attempt: int) -> str:
    """The caller's id; else one derived from the launch key (found again by it); else new."""
    if request.execution_id:
        return request.execution_id if attempt == 1 else f"{request.execution_id}-{attempt}"
    if base_key is not None:
        key = base_key if attempt == 1 else f"{base_key}#{attempt}"
        return uuid.uuid5(_KEY_NAMESPACE, key).hex
    return uuid.uuid4().hex


_KEY_NAMESPACE = uuid.UUID("6f1d7a52-3c5e-4b8e-9a57-0d7c1e2b9f40")


def same_request(execution: Execution, digest: str) -> None:
    known = execution.params.get("request_digest")
    if known is not None and known != digest:
        raise LaunchConflictError(
            f"execution {execution.id} was launched with this key for another request"
            " (another document, workflow, base_url or execution_id): use a new key"
        )
