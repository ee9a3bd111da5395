"""An execution's end that could not be recorded at close, kept in a file until it can.

When the executions store (PostgreSQL) cannot be reached when a crawl ends,
:class:`~wfcrawl.observability.executions.ExecutionRecorder` writes what it would
have recorded to ``<WFCRAWL_STORAGE_SPILL_DIR>/executions-<workflow>-<execution>-<pid>.json``:
the instance's final record and, when its end is the execution's, the outcome it
decided (:func:`wfcrawl.outcome.decide`; with items spilled it is ``failed``,
``storage_unavailable``). ``wfcrawl spill load`` records it (:func:`load_end`) as the
crawl would have: the instance closed, and the execution's outcome unless the
execution already has a final one (an operator's cancel, or another instance of a
fleet that concluded meanwhile). Loading it twice changes nothing more.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfcrawl.outcome import Outcome, aggregate
from wfcrawl.storage.executions import FINAL_STATUSES, Execution, InstanceRecord
from wfcrawl.storage.postgres.executions import PostgresExecutionStore

if TYPE_CHECKING:
    from wfcrawl.storage.config import PostgresConfig


def end_path(spill_dir: str, workflow: str, execution_id: str) -> Path:
    return Path(spill_dir) / f"executions-{workflow}-{execution_id}-{os.getpid()}.json"


def is_end_file(path: Path) -> bool:
    return path.name.startswith("executions-") and path.suffix == ".json"


def write_end(path: Path, record: InstanceRecord, outcome: Outcome | None, *, distributed: bool) -> None:
    """Keep the end (a worker thread): ``outcome`` None when only this instance ended."""
    data = {
        "execution_id": record.execution_id, "instance": record.instance, "status": record.status,
        "finish_reason": record.finish_reason, "started_at": record.started_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "stats": record.stats, "distributed": distributed,
        "outcome": None if outcome is None else {"status": outcome.status, "reasons": outcome.reasons_json(),
                                                 "error": outcome.describe() if outcome.status != "succeeded" else None},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, default=str, indent=1), encoding="utf-8")


def load_end(path: Path, config: PostgresConfig) -> tuple[str, str | None]:
    """Record the end kept in ``path``; the execution's id and its status afterwards
    (None: no such execution). Renames the file ``<name>.loaded``. Database errors propagate (the file stays)."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    finished = data["finished_at"]
    record = InstanceRecord(
        data["execution_id"], data["instance"], data["status"], data["finish_reason"],
        datetime.fromisoformat(data["started_at"]), datetime.fromisoformat(finished) if finished else None,
        data["stats"],
    )
    ended = data["outcome"]

    def conclude(execution: Execution, instances: list[InstanceRecord]) -> dict[str, Any] | None:
        stats = aggregate(i.stats for i in instances) if data["distributed"] else record.stats
        if ended is None or execution.status in FINAL_STATUSES:
            return {"stats": stats} if data["distributed"] else None
        return {"status": ended["status"], "reasons": ended["reasons"], "error": ended["error"], "stats": stats,
                "finish_reason": record.finish_reason, "finished_at": record.finished_at}

    store = PostgresExecutionStore(config.dsn, schema=config.schema, migrate=config.migrate,
                                   connect_timeout=config.connect_timeout, statement_timeout=config.statement_timeout)
    try:
        execution = store.record_instance(record, conclude)
    finally:
        store.close()
    path.rename(path.with_name(path.name + ".loaded"))
    return record.execution_id, None if execution is None else execution.status
