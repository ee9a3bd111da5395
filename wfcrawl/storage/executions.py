"""Executions: the record of one crawl run, shared by launchers and the crawl.

A launcher (CLI, API, Pub/Sub, scheduler) *creates* an execution (status
``queued``) before it starts ``scrapy crawl ... -a execution_id=ID``; the crawl
marks it ``running`` and keeps its stats current; the launcher (or the crawl
at close) records the end. ``launch_key`` makes launches idempotent: a second
create with the same key returns the existing execution and ``created=False``
(a Pub/Sub message delivered twice starts one crawl).

This module is the contract; :mod:`wfcrawl.storage.postgres.executions` implements it on
PostgreSQL (table ``executions``), :mod:`wfcrawl.storage.sqlite.executions` on a local
SQLite file (``wfcrawl serve``'s embedded default), and tests may use
:class:`MemoryExecutionStore`. The three also keep the audit log
(:class:`wfcrawl.storage.audit.AuditLog`).
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from wfcrawl import outcome
from wfcrawl.outcome import normalize_status
from wfcrawl.storage.audit import AuditEntry

#: Status values, in lifecycle order. The outcomes (``succeeded``, ``degraded``,
#: ``failed``, ``cancelled``; :mod:`wfcrawl.outcome`) are final. Records written
#: before outcomes said ``finished``: read back as ``succeeded``.
STATUSES = ("queued", "running", *outcome.STATUSES)
FINAL_STATUSES = frozenset(outcome.STATUSES)


@dataclass(frozen=True)
class Execution:
    id: str
    workflow: str
    status: str = "queued"
    launch_key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    finish_reason: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    #: Why the outcome is what it is: ``[{"code", "message", ...}]`` (:class:`wfcrawl.outcome.Reason`).
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", normalize_status(self.status))


@dataclass(frozen=True)
class InstanceRecord:
    """One crawl process of an execution (the only one, or one of a fleet's instances)."""

    execution_id: str
    instance: str
    #: ``running`` or ``closed``.
    status: str = "running"
    finish_reason: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    finished_at: datetime | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    #: When the record was last written (the database's clock; the instance's heartbeat).
    updated_at: datetime | None = None


#: Given the execution and every instance record (the caller's included), the
#: changes to make to the execution (None: none), in the same transaction.
Conclude = Callable[[Execution, list[InstanceRecord]], "dict[str, Any] | None"]


def guard_status(current: str, changes: dict[str, Any]) -> None:
    """Drop a status change the lifecycle forbids: a final status is never overwritten
    by a non-final one (a late "running" stats update must not resurrect an ended
    execution), and ``cancelled`` (an operator's act) by nothing."""
    status = changes.get("status")
    if status is None:
        return
    if current == "cancelled" or (current in FINAL_STATUSES and status not in FINAL_STATUSES):
        changes.pop("status")


#: Fields :meth:`ExecutionStore.update` may change.
UPDATABLE = frozenset({"status", "started_at", "finished_at", "finish_reason", "stats", "error", "reasons"})


class ExecutionStore(Protocol):
    def create(self, execution: Execution) -> tuple[Execution, bool]:
        """Insert, or return the execution with the same ``launch_key``; (execution, created)."""

    def get(self, execution_id: str) -> Execution | None: ...

    def instances(self, execution_id: str) -> list[InstanceRecord]:
        """The crawl processes of an execution."""

    def list(self, *, workflow: str | None = None, status: str | None = None, limit: int = 100) -> list[Execution]: ...

    def update(self, execution_id: str, **changes: Any) -> Execution | None:
        """Change status/started_at/finished_at/finish_reason/stats/error/reasons
        (a status as :func:`guard_status` allows)."""

    def record_instance(self, record: InstanceRecord, conclude: Conclude | None = None) -> Execution | None:
        """Insert or update the instance's record; then, the execution locked, apply the
        changes ``conclude`` returns (the last instance of a fleet to close sees every
        other one's final record). None: no such execution."""


class MemoryExecutionStore:
    """An in-process ExecutionStore (tests, single-process tools)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Execution] = {}
        self._instances: dict[str, dict[str, InstanceRecord]] = {}
        self._audit: list[AuditEntry] = []

    def create(self, execution: Execution) -> tuple[Execution, bool]:
        if execution.status not in STATUSES:
            raise ValueError(f"unknown status {execution.status!r}")
        with self._lock:
            if execution.launch_key is not None:
                for existing in self._by_id.values():
                    if existing.launch_key == execution.launch_key:
                        return existing, False
            if execution.id in self._by_id:
                return self._by_id[execution.id], False
            self._by_id[execution.id] = execution
            return execution, True

    def get(self, execution_id: str) -> Execution | None:
        return self._by_id.get(execution_id)

    def list(self, *, workflow: str | None = None, status: str | None = None, limit: int = 100) -> list[Execution]:
        found = [
            e for e in self._by_id.values()
            if (workflow is None or e.workflow == workflow) and (status is None or e.status == status)
        ]
        return sorted(found, key=lambda e: e.created_at, reverse=True)[:limit]

    def update(self, execution_id: str, **changes: Any) -> Execution | None:
        with self._lock:
            return self._update(execution_id, changes)

    def _update(self, execution_id: str, changes: dict[str, Any]) -> Execution | None:
        current = self._by_id.get(execution_id)
        if current is None:
            return None
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise TypeError(f"cannot update {', '.join(sorted(unknown))} of an execution")
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"unknown status {changes['status']!r}")
        guard_status(current.status, changes)
        updated = replace(current, **changes)
        self._by_id[execution_id] = updated
        return updated

    def record_instance(self, record: InstanceRecord, conclude: Conclude | None = None) -> Execution | None:
        with self._lock:
            current = self._by_id.get(record.execution_id)
            if current is None:
                return None
            known = self._instances.setdefault(record.execution_id, {})
            started = known[record.instance].started_at if record.instance in known else record.started_at
            known[record.instance] = replace(record, started_at=started, updated_at=datetime.now(timezone.utc))
            changes = conclude(current, list(known.values())) if conclude is not None else None
            return self._update(record.execution_id, dict(changes)) if changes else current

    def instances(self, execution_id: str) -> builtins.list[InstanceRecord]:
        with self._lock:
            return list(self._instances.get(execution_id, {}).values())

    def record_audit(self, entry: AuditEntry) -> None:
        with self._lock:
            self._audit.append(entry)

    def list_audit(self, *, limit: int = 100, target: str | None = None) -> builtins.list[AuditEntry]:
        found = [e for e in reversed(self._audit) if target is None or e.target == target]
        return found[:limit]
