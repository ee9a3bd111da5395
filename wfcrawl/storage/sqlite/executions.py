"""Executions and the audit log in a SQLite file: :class:`SQLiteExecutionStore`.

Implements the :class:`wfcrawl.storage.executions.ExecutionStore` contract and
:class:`wfcrawl.storage.audit.AuditLog` on the tables of
``wfcrawl/storage/sqlite/migrations/`` (the PostgreSQL store's, in SQLite's types).
It is what ``wfcrawl serve`` keeps executions in when ``DATABASE_URL`` is not
set (``WFCRAWL_SQLITE_PATH``): one machine, no server to run, kept across restarts.

The file is opened in WAL mode, so readers (the dashboard, another process)
never wait for the writer; writes take SQLite's write lock with ``BEGIN
IMMEDIATE`` and wait for it up to ``busy_timeout`` seconds. Calls from threads
share one connection under a lock.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from wfcrawl.storage.audit import AuditEntry
from wfcrawl.storage.executions import (
    FINAL_STATUSES,
    STATUSES,
    UPDATABLE,
    Conclude,
    Execution,
    InstanceRecord,
    guard_status,
)
from wfcrawl.storage.sqlite.migrate import migrate

T = TypeVar("T")

_COLUMNS = tuple(f.name for f in fields(Execution))
_INSTANCE_COLUMNS = tuple(f.name for f in fields(InstanceRecord))
_TIMES = frozenset({"created_at", "started_at", "finished_at", "updated_at"})
_JSON = frozenset({"params", "stats", "reasons"})
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM executions"
_SELECT_INSTANCES = (f"SELECT {', '.join(_INSTANCE_COLUMNS)} FROM execution_instances"
                     " WHERE execution_id = ? ORDER BY started_at, instance")


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _now() -> str:
    return _time(datetime.now(timezone.utc))  # type: ignore[return-value]


def _json(value: Any) -> str:
    # Stats may hold datetimes (start_time): stored as their ISO text, as in PostgreSQL.
    return json.dumps(value, default=str)


def _to_db(name: str, value: Any) -> Any:
    if name in _TIMES:
        return _time(value)
    if name in _JSON:
        return _json(value)
    return value


def _from_db(columns: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    values = dict(zip(columns, row, strict=True))
    for name in _TIMES & values.keys():
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    for name in _JSON & values.keys():
        values[name] = json.loads(values[name])
    return values


def _execution(row: tuple[Any, ...]) -> Execution:
    return Execution(**_from_db(_COLUMNS, row))


def _instance(row: tuple[Any, ...]) -> InstanceRecord:
    return InstanceRecord(**_from_db(_INSTANCE_COLUMNS, row))


class SQLiteExecutionStore:
    """An ExecutionStore (and AuditLog) in the SQLite file ``path`` (created and migrated on open)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL never corrupts the file; a power loss may lose the last commits.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            migrate(self._conn, self.path)

    def __repr__(self) -> str:
        return f"SQLiteExecutionStore({self.path!r})"

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def _read(self, query: str, params: tuple[Any, ...] | dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(query, params).fetchall()

    def ensure_schema(self) -> None:
        """Nothing to do: the file was migrated when the store was opened."""

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------ contract

    def create(self, execution: Execution) -> tuple[Execution, bool]:
        if execution.status not in STATUSES:
            raise ValueError(f"unknown status {execution.status!r}")
        values = [_to_db(c, getattr(execution, c)) for c in _COLUMNS]
        insert = (f"INSERT OR IGNORE INTO executions ({', '.join(_COLUMNS)}, updated_at)"
                  f" VALUES ({', '.join('?' * len(_COLUMNS))}, ?)")

        def work(conn: sqlite3.Connection) -> tuple[Execution, bool]:
            if conn.execute(insert, [*values, _now()]).rowcount == 1:
                return execution, True
            # The same launch_key (a launch delivered twice) or the same id.
            row = conn.execute(
                f"{_SELECT} WHERE id = ? OR launch_key = ? ORDER BY (launch_key IS ?) DESC LIMIT 1",
                (execution.id, execution.launch_key, execution.launch_key),
            ).fetchone()
            assert row is not None
            return _execution(row), False

        return self._write(work)

    def get(self, execution_id: str) -> Execution | None:
        rows = self._read(f"{_SELECT} WHERE id = ?", (execution_id,))
        return _execution(rows[0]) if rows else None

    def list(self, *, workflow: str | None = None, status: str | None = None, limit: int = 100) -> list[Execution]:
        rows = self._read(
            f"{_SELECT} WHERE (:w IS NULL OR workflow = :w) AND (:s IS NULL OR status = :s)"
            " ORDER BY created_at DESC, id LIMIT :n",
            {"w": workflow, "s": status, "n": limit},
        )
        return [_execution(row) for row in rows]

    def update(self, execution_id: str, **changes: Any) -> Execution | None:
        return self._write(lambda conn: self._update(conn, execution_id, changes))

    def _update(self, conn: sqlite3.Connection, execution_id: str, changes: dict[str, Any]) -> Execution | None:
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise TypeError(f"cannot update {', '.join(sorted(unknown))} of an execution")
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"unknown status {changes['status']!r}")
        final = ", ".join(f"'{s}'" for s in sorted(FINAL_STATUSES))
        params: dict[str, Any] = {"id": execution_id, "updated_at": _now()}
        assignments = ["updated_at = :updated_at"]
        for name, value in changes.items():
            params[name] = _to_db(name, value)
            if name == "status":
                # guard_status, in SQL: a final status is never overwritten by a non-final
                # one (a late "running" update must not resurrect an ended execution), and
                # an operator's cancel by nothing.
                assignments.append(f"status = CASE WHEN status = 'cancelled' OR (status IN ({final})"
                                   f" AND :status NOT IN ({final})) THEN status ELSE :status END")
            else:
                assignments.append(f"{name} = :{name}")
        conn.execute(f"UPDATE executions SET {', '.join(assignments)} WHERE id = :id", params)
        row = conn.execute(f"{_SELECT} WHERE id = ?", (execution_id,)).fetchone()
        return None if row is None else _execution(row)

    def record_instance(self, record: InstanceRecord, conclude: Conclude | None = None) -> Execution | None:
        upsert = (
            "INSERT INTO execution_instances (execution_id, instance, status, finish_reason, started_at,"
            " finished_at, stats, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (execution_id, instance) DO UPDATE SET status = excluded.status,"
            " finish_reason = excluded.finish_reason, finished_at = excluded.finished_at,"
            " stats = excluded.stats, updated_at = excluded.updated_at"
        )

        def work(conn: sqlite3.Connection) -> Execution | None:
            # BEGIN IMMEDIATE holds the file's write lock for the whole transaction: fleet
            # instances that close together conclude one after the other, each seeing the
            # others' records.
            row = conn.execute(f"{_SELECT} WHERE id = ?", (record.execution_id,)).fetchone()
            if row is None:
                return None
            conn.execute(upsert, (record.execution_id, record.instance, record.status, record.finish_reason,
                                  _time(record.started_at), _time(record.finished_at), _json(record.stats), _now()))
            current = _execution(row)
            if conclude is None:
                return current
            instances = [_instance(r) for r in conn.execute(_SELECT_INSTANCES, (record.execution_id,)).fetchall()]
            changes = conclude(current, instances)
            if not changes:
                return current
            changes = dict(changes)
            guard_status(current.status, changes)
            return self._update(conn, record.execution_id, changes)

        return self._write(work)

    def instances(self, execution_id: str) -> builtins.list[InstanceRecord]:
        return [_instance(row) for row in self._read(_SELECT_INSTANCES, (execution_id,))]

    # ------------------------------------------------------------ audit log

    def record_audit(self, entry: AuditEntry) -> None:
        values = (_time(entry.at), entry.actor, entry.action, entry.target, _json(entry.details))
        self._write(lambda conn: conn.execute(
            "INSERT INTO audit_log (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?)", values))

    def list_audit(self, *, limit: int = 100, target: str | None = None) -> builtins.list[AuditEntry]:
        rows = self._read(
            "SELECT actor, action, target, details, at FROM audit_log WHERE (:t IS NULL OR target = :t)"
            " ORDER BY at DESC, id DESC LIMIT :n", {"t": target, "n": limit},
        )
        return [AuditEntry(actor, action, target, json.loads(details), datetime.fromisoformat(at))
                for actor, action, target, details, at in rows]
