"""Executions: the record of one crawl run, shared by launchers and the crawl.

A launcher (CLI, API, Pub/Sub, scheduler) *creates* an execution (status
``queued``) before it starts ``scrapy crawl ... -a execution_id=ID``; the crawl
marks it ``running`` and keeps its stats current; the launcher (or the crawl
at close) records the end. ``launch_key`` makes launches idempotent: a second
create with the same key returns the existing execution and ``created=False``
(a Pub/Sub message delivered twice starts one crawl).

This module is the contract; :mod:`wfcrawl.storage.postgres` implements it on
PostgreSQL (table ``executions``), and tests may use :class:`MemoryExecutionStore`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

#: Status values, in lifecycle order. ``finished``/``failed``/``cancelled`` are final.
STATUSES = ("queued", "running", "finished", "failed", "cancelled")
FINAL_STATUSES = frozenset({"finished", "failed", "cancelled"})


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


class ExecutionStore(Protocol):
    def create(self, execution: Execution) -> tuple[Execution, bool]:
        """Insert, or return the execution with the same ``launch_key``; (execution, created)."""

    def get(self, execution_id: str) -> Execution | None: ...

    def list(self, *, workflow: str | None = None, status: str | None = None, limit: int = 100) -> list[Execution]: ...

    def update(self, execution_id: str, **changes: Any) -> Execution | None:
        """Change status/started_at/finished_at/finish_reason/stats/error.

        A final status is never overwritten by a non-final one (a late
        "running" stats update must not resurrect a cancelled execution).
        """


class MemoryExecutionStore:
    """An in-process ExecutionStore (tests, single-process tools)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Execution] = {}

    def create(self, execution: Execution) -> tuple[Execution, bool]:
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
            current = self._by_id.get(execution_id)
            if current is None:
                return None
            status = changes.get("status")
            if current.status in FINAL_STATUSES and status is not None and status not in FINAL_STATUSES:
                changes.pop("status")
            updated = replace(current, **changes)
            self._by_id[execution_id] = updated
            return updated
