"""The audit log: who launched, cancelled, registered what, and when.

The control plane (:mod:`wfcrawl.web`) records an :class:`AuditEntry` for each
change a person or a system makes through it; the dashboard shows them. The
execution stores keep the log next to the executions (table ``audit_log``):
:class:`wfcrawl.storage.executions.MemoryExecutionStore`,
:class:`wfcrawl.storage.sqlite.executions.SQLiteExecutionStore` and
:class:`wfcrawl.storage.postgres.executions.PostgresExecutionStore` implement
:class:`AuditLog`.

Actors are ``key:<API key name>`` (the API, or the dashboard signed in with
that key) and ``pubsub:<subscription>`` (the push endpoint). Actions:

==========================  ============================================  ==================
action                      when                                          target
==========================  ============================================  ==================
``execution.launched``      a crawl was started                           the execution id
``execution.cancelled``     an execution was cancelled                    the execution id
``workflow.registered``     a new workflow name was registered            the workflow name
``workflow.replaced``       a registered workflow got a new document      the workflow name
``session.signed_in``       someone signed in to the dashboard            the key name
``session.signed_out``      someone signed out                            the key name
``schedule.enabled``        a workflow's schedule was switched on         the workflow name
``schedule.disabled``       a workflow's schedule was switched off        the workflow name
==========================  ============================================  ==================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

ACTIONS = (
    "execution.launched", "execution.cancelled", "workflow.registered", "workflow.replaced",
    "session.signed_in", "session.signed_out", "schedule.enabled", "schedule.disabled",
)


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}")


@runtime_checkable
class AuditLog(Protocol):
    def record_audit(self, entry: AuditEntry) -> None:
        """Append one entry."""

    def list_audit(self, *, limit: int = 100, target: str | None = None) -> list[AuditEntry]:
        """Entries, newest first (of one ``target`` if given)."""
