"""The outcome model: statuses, reasons, how a crawl ended, exit codes, Pub/Sub answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SUCCEEDED, DEGRADED, FAILED, CANCELLED = "succeeded", "degraded", "failed", "cancelled"
#: Final statuses, best first.
STATUSES = (SUCCEEDED, DEGRADED, FAILED, CANCELLED)

#: Exit status of ``wfcrawl run`` and ``scrapy crawl`` per outcome; an invalid
#: document or configuration exits with 2, an interrupted crawl with 128 + the
#: signal's number (130 for SIGINT, 143 for SIGTERM).
EXIT_CODES = {SUCCEEDED: 0, FAILED: 1, DEGRADED: 3, CANCELLED: 4}
EXIT_INVALID = 2

#: Finish reasons of Scrapy's configured limits: the crawl ran as long as it was meant to.
LIMIT_REASONS = frozenset({"closespider_timeout", "closespider_itemcount", "closespider_pagecount"})
#: Finish reasons of a crawl that ran to its end (its stats say how it went).
COMPLETED_REASONS = frozenset({"finished", *LIMIT_REASONS})
#: The finish reason of a crawl closed early by the running error-rate check.
ERROR_RATE_REASON = "wfcrawl_error_rate"
#: Storage stats that count writes given up on (spilled to files).
SPILL_STATS = ("wfcrawl/postgres/items/spilled", "wfcrawl/gcs/objects/spilled")


def normalize_status(status: str) -> str:
    """A stored status as read back: ``finished`` (records written before outcomes) is ``succeeded``."""
    return SUCCEEDED if status == "finished" else status


@dataclass(frozen=True)
class Reason:
    """Why an execution is not plainly ``succeeded``: a stable ``code``, a message for
    people, and details (item type, field, phase, node, expected and actual values)."""

    code: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reason:
        details = {k: v for k, v in data.items() if k not in ("code", "message")}
        return cls(str(data["code"]), str(data.get("message", "")), details)


@dataclass(frozen=True)
class Outcome:
    status: str
    reasons: tuple[Reason, ...] = ()

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def reasons_json(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.reasons]

    def exit_code(self, signal_number: int | None = None) -> int:
        """The process exit status: :data:`EXIT_CODES`, or 128 + ``signal_number`` for a
        crawl interrupted by that signal."""
        if signal_number is not None and "interrupted" in self.codes:
            return 128 + signal_number
        return EXIT_CODES[self.status]

    def describe(self) -> str:
        """One line per reason, for logs and error fields."""
        return "\n".join(f"{r.code}: {r.message}" for r in self.reasons)


@dataclass(frozen=True)
class Ending:
    """How a crawl ended: Scrapy's finish reason (None: the process left no final
    stats), what stopped it from outside, and the signal that interrupted it."""

    finish_reason: str | None
    #: The launcher's reason for stopping it: ``timeout``, ``cancelled``, ``launcher_shutdown``.
    stopped_by: str | None = None
    #: It had to be killed (SIGKILL) after not stopping on SIGTERM.
    killed: bool = False
    #: ``SIGINT``/``SIGTERM`` when a signal made Scrapy shut down.
    signal: str | None = None
    #: The process's exit status, when known (launchers).
    exit_status: int | None = None

    @property
    def stopped_late(self) -> bool:
        """Stopped from outside after the crawl had ended on its own (Scrapy's finish reason
        is a completed one; the process was still exiting): the stop changes nothing."""
        return self.stopped_by is not None and self.finish_reason in COMPLETED_REASONS


#: Finish reasons that end a distributed crawl's execution: the shared queue drained, the
#: time-out, an operator's cancel, and the shared state lost (Redis restarted without its
#: data: no instance can go on, and none may start the crawl over). Any other end (SIGTERM
#: on scale-in, Redis unreachable, the instance's own item or page limit) is only that
#: instance's, unless it was the last live one (:func:`last_live`).
FLEET_ENDING_REASONS = frozenset({"finished", "closespider_timeout", "cancelled", "redis_state_lost"})
#: An instance's own end that never ends the execution, even as the last live instance:
#: a scale-in (SIGTERM); instances started again finish the crawl.
RESUMABLE_REASONS = frozenset({"shutdown"})


def ends_execution(ending: Ending, *, distributed: bool) -> bool:
    """Whether this process's end is the execution's end: always for a single process."""
    return not distributed or ending.finish_reason in FLEET_ENDING_REASONS


def instance_dead_after(interval: float) -> float:
    """Seconds without a stats update after which a running fleet instance counts as dead
    (killed, its host gone): two missed updates of ``WFCRAWL_EXECUTIONS_INTERVAL`` and 10 s."""
    return 2 * interval + 10


def last_live(instance: str, instances: Iterable[Any], interval: float) -> bool:
    """Whether ``instance`` is the last live instance of a fleet: every other one is closed,
    or has not updated its record (``updated_at``) for :func:`instance_dead_after` seconds
    before ``instance``'s own record was written (one clock: the database's)."""
    records = list(instances)
    mine = next((r for r in records if r.instance == instance), None)
    if mine is None or mine.updated_at is None:
        return False
    limit = instance_dead_after(interval)
    return not any(
        r.instance != instance and r.status == "running"
        and (r.updated_at is None or (mine.updated_at - r.updated_at).total_seconds() <= limit)
        for r in records
    )


def push_status(status: str) -> int:
    """The HTTP status a Pub/Sub push endpoint answers for an ended execution: 500 makes
    Pub/Sub redeliver a failed crawl (and dead-letter it after the last attempt);
    ``succeeded``, ``degraded`` (the crawl ran; running it again would not help) and
    ``cancelled`` (an operator's decision) are acknowledged."""
    return 500 if normalize_status(status) == FAILED else 200


def pull_acks(status: str) -> bool:
    """Whether a Pub/Sub pull listener acks the message of an ended execution (see :func:`push_status`)."""
    return push_status(status) == 200


def aggregate(instances: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The stats of a fleet: numbers summed (maxima and elapsed times: the largest),
    other values from the first instance that has them."""
    out: dict[str, Any] = {}
    for stats in instances:
        for key, value in stats.items():
            if key.startswith("wfcrawl/outcome"):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                current = out.get(key, 0)
                current = current if isinstance(current, (int, float)) else 0
                out[key] = max(current, value) if key.endswith(("max", "_seconds", "startup")) else current + value
            else:
                out.setdefault(key, value)
    return out


def summary_line(outcome: Outcome) -> str:
    """``succeeded``, or ``failed: no_pages, no_items``."""
    return outcome.status + (f": {', '.join(dict.fromkeys(outcome.codes))}" if outcome.reasons else "")
