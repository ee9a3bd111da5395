"""What the web application serves from: the launcher, the registry, keys, limits, audit log.

One :class:`Services` per application (``app.state.services``); handlers reach it
through the dependencies below. The audit log is the execution store when it keeps
one (all of wfcrawl's do), so that the dashboard shows it next to the executions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, cast

from fastapi import Request

from wfcrawl.launcher.launch import Launcher, LaunchRequest
from wfcrawl.launcher.registry import WorkflowRegistry
from wfcrawl.storage.audit import AuditEntry, AuditLog
from wfcrawl.storage.executions import FINAL_STATUSES, Execution, MemoryExecutionStore
from wfcrawl.web.auth import ApiKey, ApiKeyAuth
from wfcrawl.web.config import WebConfig
from wfcrawl.web.problems import ProblemError
from wfcrawl.web.ratelimit import RateLimiter

logger = logging.getLogger(__name__)


@dataclass
class Services:
    launcher: Launcher
    registry: WorkflowRegistry
    auth: ApiKeyAuth
    config: WebConfig
    push: Any = None  # a wfcrawl.web.push.PushEndpoint, when WFCRAWL_PUSH_ENABLED
    #: ``GET /login?token=KEY`` signs in (only for the one-time key of a run without keys).
    token_login: bool = False
    #: A Redis client when ``REDIS_URL`` is set (the fleet page reads it), and the key prefix.
    redis: Any = None
    redis_prefix: str = "wfcrawl"
    limiter: RateLimiter = field(init=False)
    audit: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.config.rate_limit, self.config.rate_burst)
        store = self.launcher.store
        self.audit = store if isinstance(store, AuditLog) else MemoryExecutionStore()

    def record(self, actor: str, action: str, target: str, **details: Any) -> None:
        """Append to the audit log; a failure is logged, never the caller's failure (the change is made)."""
        try:
            self.audit.record_audit(AuditEntry(actor, action, target, details))
        except Exception:
            logger.exception("Cannot record %s of %s by %s in the audit log", action, target, actor)


    # The changes the API and the dashboard make, the same way (launcher, then audit log).
    # A refused launch raises the launcher's error (the caller answers it as a problem).

    def launch(self, key: ApiKey, request: LaunchRequest, via: str) -> tuple[Execution, bool]:
        execution, started = self.launcher.launch(request)
        if started:
            self.record(actor(key), "execution.launched", execution.id, workflow=execution.workflow, origin=via,
                        **({"rerun_of": request.params["rerun_of"]} if "rerun_of" in request.params else {}))
        return execution, started

    def register(self, key: ApiKey, document: str) -> tuple[str, bool]:
        """Validate and register a document under its name: (name, created). Raises the
        launcher's ``WorkflowError`` (located problems) or ``LaunchRejectedError`` (policy)."""
        plan = self.launcher.validate(document)
        created = self.registry.put(plan.name, document)
        logger.info("Workflow %s %s by API key %s", plan.name, "registered" if created else "replaced", key.name)
        self.record(actor(key), "workflow.registered" if created else "workflow.replaced", plan.name)
        return plan.name, created

    def cancel(self, key: ApiKey, execution_id: str) -> Execution:
        """Cancel (404 if unknown, 409 if it has ended already: ``ProblemError``)."""
        before = self.launcher.store.get(execution_id)
        if before is None:
            raise ProblemError(404, f"no execution {execution_id!r}")
        if before.status in FINAL_STATUSES:
            raise ProblemError(409, f"execution {before.id} is already {before.status}", kind="already-final")
        after = self.launcher.cancel(execution_id) or before
        logger.info("Execution %s cancelled by API key %s", after.id, key.name)
        self.record(actor(key), "execution.cancelled", after.id, workflow=after.workflow)
        return after


def services_of(request: Request) -> Services:
    return cast(Services, request.app.state.services)


async def services(request: Request) -> Services:
    """The application's services, as a dependency (a coroutine: no thread pool hop for a lookup)."""
    return services_of(request)


def actor(key: ApiKey) -> str:
    return f"key:{key.name}"
