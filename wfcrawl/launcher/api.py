"""The HTTP API: workflows and executions, for people and tools.

Every ``/v1/`` request needs an API key (401 without a valid one; 403 when a
read-only key asks to change something) and is rate limited per key (429 with
``Retry-After``); nothing is validated or started before both pass. The
OpenAPI document is served at ``/openapi.json`` (:mod:`wfcrawl.launcher.openapi`).
``/pubsub/push`` (when enabled) has its own authentication (:mod:`wfcrawl.launcher.push`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from wfcrawl.exceptions import WorkflowError
from wfcrawl.launcher import openapi
from wfcrawl.launcher.auth import ApiKey, ApiKeyAuth, AuthError
from wfcrawl.launcher.http import HttpRequest, Reply, error, execution_json
from wfcrawl.launcher.launch import Launcher, LauncherBusyError, LaunchRejectedError
from wfcrawl.launcher.messages import launch_request
from wfcrawl.launcher.ratelimit import RateLimiter
from wfcrawl.launcher.registry import NAME, WorkflowRegistry
from wfcrawl.storage.executions import STATUSES

logger = logging.getLogger(__name__)

Handler = Callable[[HttpRequest, ApiKey, dict[str, str]], Reply]
_ID = r"(?P<id>[A-Za-z0-9][A-Za-z0-9_-]{0,63})"
_NAME = r"(?P<name>[a-z0-9_-]{1,64})"
MAX_IDEMPOTENCY_KEY = 200


def _problems(exc: WorkflowError) -> list[dict[str, Any]]:
    return [{"line": p.line, "column": p.column, "path": p.path, "message": p.message, "kind": p.kind}
            for p in exc.problems]


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"null")
    except ValueError as exc:
        raise _BadRequestError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _BadRequestError("the body must be a JSON object")
    return body


class _BadRequestError(Exception):
    pass


class ApiApp:
    def __init__(self, launcher: Launcher, registry: WorkflowRegistry, auth: ApiKeyAuth,
                 limiter: RateLimiter, push: Callable[[HttpRequest], Reply] | None = None) -> None:
        self.launcher = launcher
        self.registry = registry
        self.auth = auth
        self.limiter = limiter
        self.push = push
        # (method, pattern, handler, needs a write key)
        self.routes: list[tuple[str, re.Pattern[str], Handler, bool]] = [
            ("POST", re.compile(r"/v1/validate"), self.validate, False),
            ("GET", re.compile(r"/v1/workflows"), self.list_workflows, False),
            ("POST", re.compile(r"/v1/workflows"), self.register, True),
            ("GET", re.compile(rf"/v1/workflows/{_NAME}"), self.get_workflow, False),
            ("GET", re.compile(r"/v1/executions"), self.list_executions, False),
            ("POST", re.compile(r"/v1/executions"), self.start, True),
            ("GET", re.compile(rf"/v1/executions/{_ID}"), self.get_execution, False),
            ("POST", re.compile(rf"/v1/executions/{_ID}/cancel"), self.cancel, True),
        ]

    def __call__(self, request: HttpRequest) -> Reply:
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return Reply(200, {"status": "ok", "running": len(self.launcher.running())})
        if request.path == "/openapi.json" and request.method in ("GET", "HEAD"):
            return Reply(200, openapi.spec())
        if request.path == "/pubsub/push" and self.push is not None:
            return self.push(request)
        if not request.path.startswith("/v1/"):
            return error(404, "not found")
        try:
            key = self.auth.authenticate(request.headers)
        except AuthError as exc:
            return Reply(exc.status, {"error": exc.message}, {"WWW-Authenticate": "Bearer"})
        wait = self.limiter.take(key.name)
        if wait is not None:
            return Reply(429, {"error": "rate limit exceeded"}, {"Retry-After": str(wait)})
        allowed: list[str] = []
        for method, pattern, handler, writes in self.routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            if writes and key.read_only:
                return error(403, f"the API key {key.name!r} is read-only")
            try:
                return handler(request, key, match.groupdict())
            except _BadRequestError as exc:
                return error(400, str(exc))
        if allowed:
            return Reply(405, {"error": "method not allowed"}, {"Allow": ", ".join(allowed)})
        return error(404, "not found")

    # ------------------------------------------------------------ workflows

    def _document(self, request: HttpRequest) -> str:
        body = _json_body(request)
        document = body.get("document")
        if not isinstance(document, str) or set(body) - {"document"}:
            raise _BadRequestError('expected {"document": "<workflow YAML or JSON text>"}')
        return document

    def validate(self, request: HttpRequest, key: ApiKey, _: dict[str, str]) -> Reply:
        try:
            plan = self.launcher.validate(self._document(request))
        except WorkflowError as exc:
            return Reply(200, {"valid": False, "name": None, "problems": _problems(exc)})
        except LaunchRejectedError as exc:
            return Reply(200, {"valid": False, "name": None,
                               "problems": [{"line": 1, "column": 1, "path": "$", "message": exc.message,
                                             "kind": "policy"}]})
        return Reply(200, {"valid": True, "name": plan.name, "problems": []})

    def register(self, request: HttpRequest, key: ApiKey, _: dict[str, str]) -> Reply:
        document = self._document(request)
        try:
            plan = self.launcher.validate(document)
        except WorkflowError as exc:
            return error(422, "invalid workflow", problems=_problems(exc))
        except LaunchRejectedError as exc:
            return error(422, exc.message, problems=[])
        created = self.registry.put(plan.name, document)
        logger.info("Workflow %s %s by API key %s", plan.name, "registered" if created else "replaced", key.name)
        return Reply(201 if created else 200, {"name": plan.name, "created": created})

    def list_workflows(self, request: HttpRequest, key: ApiKey, _: dict[str, str]) -> Reply:
        return Reply(200, {"workflows": self.registry.names()})

    def get_workflow(self, request: HttpRequest, key: ApiKey, match: dict[str, str]) -> Reply:
        document = self.registry.get(match["name"]) if NAME.match(match["name"]) else None
        if document is None:
            return error(404, f"no workflow named {match['name']!r}")
        return Reply(200, {"name": match["name"], "document": document})

    # ------------------------------------------------------------ executions

    def start(self, request: HttpRequest, key: ApiKey, _: dict[str, str]) -> Reply:
        idempotency = request.headers.get("idempotency-key")
        if idempotency is not None and not 0 < len(idempotency) <= MAX_IDEMPOTENCY_KEY:
            raise _BadRequestError(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters")
        # Scoped by key: one client's idempotency keys cannot collide with another's.
        launch_key = f"api:{key.name}:{idempotency}" if idempotency else None
        try:
            launch = launch_request(_json_body(request), origin="api", launch_key=launch_key,
                                    params={"api_key": key.name})
            execution, started = self.launcher.launch(launch)
        except LaunchRejectedError as exc:
            return error(422, exc.message, problems=exc.problems)
        except LauncherBusyError as exc:
            return Reply(429, {"error": str(exc)}, {"Retry-After": str(exc.retry_after)})
        return Reply(201 if started else 200, {"execution": execution_json(execution), "started": started})

    def list_executions(self, request: HttpRequest, key: ApiKey, _: dict[str, str]) -> Reply:
        def one(name: str) -> str | None:
            values = request.query.get(name)
            return values[-1] if values else None

        status = one("status")
        if status is not None and status not in STATUSES:
            raise _BadRequestError(f"status must be one of {', '.join(STATUSES)}")
        raw_limit = one("limit") or "100"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise _BadRequestError("limit must be an integer from 1 to 1000")
        found = self.launcher.store.list(workflow=one("workflow"), status=status, limit=int(raw_limit))
        return Reply(200, {"executions": [execution_json(e) for e in found]})

    def get_execution(self, request: HttpRequest, key: ApiKey, match: dict[str, str]) -> Reply:
        execution = self.launcher.store.get(match["id"])
        if execution is None:
            return error(404, f"no execution {match['id']!r}")
        return Reply(200, {"execution": execution_json(execution)})

    def cancel(self, request: HttpRequest, key: ApiKey, match: dict[str, str]) -> Reply:
        before = self.launcher.store.get(match["id"])
        if before is None:
            return error(404, f"no execution {match['id']!r}")
        if before.status in ("finished", "failed", "cancelled"):
            return error(409, f"execution {before.id} is already {before.status}",
                         execution=execution_json(before))
        after = self.launcher.cancel(match["id"]) or before
        logger.info("Execution %s cancelled by API key %s", after.id, key.name)
        return Reply(202, {"execution": execution_json(after)})
