"""The outcome of an execution: one pure function, used by every surface.

:func:`decide` takes the final stats, the workflow's expectations and how the
crawl ended, and returns an :class:`Outcome`: a status (``succeeded``,
``degraded``, ``failed``, ``cancelled``) and machine-readable reasons. The exit
status of ``wfcrawl run`` / ``scrapy crawl``, the executions record, webhooks,
Prometheus, Pub/Sub (push status, pull ack) and the summary all come from it
(docs/operations.md#outcomes). No Scrapy here: launchers and tools use it too.

``model``: statuses, :class:`Reason`, :class:`Outcome`, :class:`Ending`, exit codes,
Pub/Sub answers, fleet stats; ``checks``: :func:`decide` and the checks it runs.
"""

from __future__ import annotations

from wfcrawl.outcome.checks import decide, error_rate, pages_of
from wfcrawl.outcome.model import (
    CANCELLED,
    COMPLETED_REASONS,
    DEGRADED,
    ERROR_RATE_REASON,
    EXIT_CODES,
    EXIT_INVALID,
    FAILED,
    FLEET_ENDING_REASONS,
    LIMIT_REASONS,
    RESUMABLE_REASONS,
    SPILL_STATS,
    STATUSES,
    SUCCEEDED,
    Ending,
    Outcome,
    Reason,
    aggregate,
    ends_execution,
    instance_dead_after,
    last_live,
    normalize_status,
    pull_acks,
    push_status,
    summary_line,
)

__all__ = [
    "CANCELLED", "COMPLETED_REASONS", "DEGRADED", "ERROR_RATE_REASON", "EXIT_CODES", "EXIT_INVALID", "FAILED",
    "FLEET_ENDING_REASONS", "LIMIT_REASONS", "RESUMABLE_REASONS", "SPILL_STATS", "STATUSES", "SUCCEEDED",
    "Ending", "Outcome", "Reason", "aggregate", "decide", "ends_execution", "error_rate", "instance_dead_after",
    "last_live", "normalize_status", "pages_of", "pull_acks", "push_status", "summary_line",
]
