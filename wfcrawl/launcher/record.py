"""What the launcher writes on an execution when its crawl ends, or is cancelled.

:func:`record_end` turns a finished child process (its final stats file, exit
status, how the launcher stopped it, its log's last lines) into the execution's
outcome (:func:`wfcrawl.outcome.decide`); :func:`cancel_execution` is an
operator's cancel, here or from another instance through the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from wfcrawl.launcher.process import CrawlChild
from wfcrawl.launcher.samples import SAMPLES_STAT, read_json, samples_text
from wfcrawl.outcome import Ending, Reason, decide
from wfcrawl.storage.executions import FINAL_STATUSES, Execution, ExecutionStore
from wfcrawl.workflow.plan import Expectations

logger = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(timezone.utc)


def record_end(store: ExecutionStore, execution_id: str, child: CrawlChild, directory: Path,
               expect: Expectations, returncode: int,
               samples: Sequence[tuple[float, int, int]] = ()) -> None:
    """Record the outcome of the crawl ``child`` ran for ``execution_id`` (its stats in ``directory``,
    the launcher's ``samples`` of pages and items over time)."""
    stats = read_json(directory / "stats.json")
    reason = stats.get("finish_reason")
    tail = child.log_tail()
    current = store.get(execution_id)
    cancelled = current is not None and current.status == "cancelled"
    ending = Ending(
        reason if isinstance(reason, str) else None,
        # The launcher's word, not Scrapy's "shutdown": a time-out or the launcher's
        # shutdown is a failure (Pub/Sub must run it again), a cancel is not.
        stopped_by="cancelled" if cancelled else child.stop_reason,
        killed=child.killed, exit_status=returncode,
    )
    outcome = decide(stats, expect, ending)
    # Recorded: the launcher's word when its stop ended the crawl, not Scrapy's "shutdown"
    # (a stop after the crawl closed on its own changes nothing); the error line says both.
    finish_reason = (child.stop_reason if child.stop_reason is not None and not ending.stopped_late
                     else reason or f"exit_status_{returncode}")
    error = None
    if outcome.status != "succeeded":
        why = f"crawl exited with status {returncode}"
        why += f", finish reason {reason}" if reason else ", no final stats (it failed at start or was killed)"
        if child.stop_reason:
            why += f"; stopped by the launcher: {child.stop_reason}"
        lines = [outcome.describe(), why]
        if outcome.status == "failed":
            lines += _error_lines(tail)
        error = "\n".join(lines)
    if samples:
        stats[SAMPLES_STAT] = samples_text(samples)
    stats["wfcrawl/launcher/exit_code"] = returncode
    stats["wfcrawl/launcher/killed"] = child.killed
    stats["wfcrawl/launcher/log_tail"] = "\n".join(tail)
    store.update(
        execution_id, status=outcome.status, reasons=outcome.reasons_json(), finished_at=now(),
        stats=stats, error=error, finish_reason=finish_reason,
    )
    logger.info("Execution %s %s (exit status %d)%s", execution_id, outcome.status, returncode,
                f": {', '.join(outcome.codes)}" if outcome.reasons else "")


def record_start_failure(store: ExecutionStore, execution: Execution, exc: Exception) -> Execution:
    """The crawl of ``execution`` could not even start: it must not stay queued."""
    logger.error("Cannot start the crawl of execution %s: %s", execution.id, exc)
    why = Reason("crashed", f"cannot start the crawl: {exc}")
    failed = store.update(execution.id, status="failed", finished_at=now(), reasons=[why.as_dict()],
                          finish_reason="launch_failed", error=f"{why.code}: {why.message}")
    return failed or execution


def cancel_execution(store: ExecutionStore, execution_id: str) -> Execution | None:
    """An operator's cancel: the execution (and every crawl process of it, at its next
    stats update) ends ``cancelled``. An execution that already ended is left as it is."""
    execution = store.get(execution_id)
    if execution is None or execution.status in FINAL_STATUSES:
        return execution
    reason = Reason("cancelled", "cancelled by an operator")
    return store.update(execution_id, status="cancelled", finished_at=now(), finish_reason="cancelled",
                        reasons=[reason.as_dict()])


def _error_lines(tail: list[str]) -> list[str]:
    """The log lines worth showing with a failure (errors and the last words)."""
    picked = [line for line in tail if "ERROR" in line or "CRITICAL" in line or line.startswith(("Error", "error"))]
    return (picked or tail)[-10:]
