"""Executions on PostgreSQL: :class:`PostgresExecutionStore`.

Implements the :class:`wfcrawl.storage.executions.ExecutionStore` contract on
the ``<schema>.executions`` table (created by the migrations). Launchers use it
from their own threads; the crawl uses it through
:class:`wfcrawl.observability.executions.ExecutionRecorder`.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from wfcrawl.exceptions import RetryAbortedError
from wfcrawl.settings.table import read
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
from wfcrawl.storage.postgres.connection import (
    check_connect,
    connect,
    describe_dsn,
    interrupt,
    psycopg2_module,
    transaction,
)
from wfcrawl.storage.postgres.migrate import migrate

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection  # noqa: N812
    from psycopg2.extensions import cursor as Cursor  # noqa: N812
    from scrapy.settings import BaseSettings

T = TypeVar("T")

_COLUMNS = (
    "id", "workflow", "status", "launch_key", "params", "created_at", "started_at",
    "finished_at", "finish_reason", "stats", "error", "reasons",
)
_JSON = frozenset({"params", "stats", "reasons"})
_INSTANCE_COLUMNS = ("execution_id", "instance", "status", "finish_reason", "started_at", "finished_at", "stats",
                     "updated_at")
_FINAL = sorted(FINAL_STATUSES)


def _jsonb(value: Any) -> Any:
    # Stats hold datetimes (start_time): stored as their ISO text.
    return psycopg2_module().extras.Json(value, dumps=lambda v: json.dumps(v, default=str))


def _execution(row: tuple[Any, ...]) -> Execution:
    return Execution(**dict(zip(_COLUMNS, row, strict=True)))


def _instance(row: tuple[Any, ...]) -> InstanceRecord:
    return InstanceRecord(**dict(zip(_INSTANCE_COLUMNS, row, strict=True)))


class PostgresExecutionStore:
    """An ExecutionStore on PostgreSQL; safe behind PgBouncer (one transaction per call).

    Thread-safe: calls share one connection under a lock. A call that loses its
    connection reconnects and runs once more (every call is idempotent:
    ``create`` is an ``INSERT ... ON CONFLICT DO NOTHING``).
    """

    def __init__(
        self, dsn: str, *, schema: str = "wfcrawl", migrate: bool = True,
        connect_timeout: float = 10.0, statement_timeout: float = 30.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._migrate = migrate
        self._lock = threading.Lock()
        self._guard = threading.Lock()  # replacing/closing _conn; never held during a query
        self._interrupted = False
        self._conn: Connection | None = None
        self._table = psycopg2_module().sql.Identifier(schema, "executions")
        self._instances = psycopg2_module().sql.Identifier(schema, "execution_instances")

    def __repr__(self) -> str:
        return f"PostgresExecutionStore({describe_dsn(self.dsn)}, schema={self.schema!r})"

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            conn = check_connect(self.dsn, connect_timeout=self.connect_timeout)
            if self._migrate:
                migrate(conn, self.schema)
                self._migrate = False
            with self._guard:
                self._conn = conn
        return self._conn

    def _run(self, work: Callable[[Cursor], T]) -> T:
        psycopg2 = psycopg2_module()
        with self._lock:
            for attempt in (1, 2):
                if self._interrupted:  # a call queued behind the interrupted one must not wait in turn
                    raise RetryAbortedError(f"{self!r}: interrupted")
                conn = self._connection()
                try:
                    with transaction(conn, statement_timeout=self.statement_timeout) as cur:
                        return work(cur)
                except (psycopg2.OperationalError, psycopg2.InterfaceError):
                    if not conn.closed:
                        raise  # the connection is fine: a real error (timeout, ...)
                    with self._guard:
                        self._conn = None
                    if attempt == 2 or self._interrupted:
                        raise
        raise AssertionError("unreachable")

    def ensure_schema(self) -> None:
        """Connect and migrate now (a clear error at start instead of at first use)."""
        self._run(lambda cur: None)

    def close(self) -> None:
        with self._lock, self._guard:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def interrupt(self) -> None:
        """From another thread: make the call in progress fail now, without the usual second
        attempt (a call PgBouncer holds would otherwise wait for its ``query_wait_timeout``),
        and every later call too (:class:`RetryAbortedError`): the store is being closed."""
        with self._guard:
            self._interrupted = True
            interrupt(self._conn)

    # ------------------------------------------------------------ contract

    def create(self, execution: Execution) -> tuple[Execution, bool]:
        sql = psycopg2_module().sql
        if execution.status not in STATUSES:
            raise ValueError(f"unknown status {execution.status!r}")
        values = [_jsonb(getattr(execution, c)) if c in _JSON else getattr(execution, c) for c in _COLUMNS]
        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING RETURNING {}").format(
            self._table, sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
        )
        existing = sql.SQL("SELECT {} FROM {} WHERE id = %s OR launch_key = %s"
            " ORDER BY (launch_key IS NOT DISTINCT FROM %s) DESC LIMIT 1").format(
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), self._table
        )

        def work(cur: Cursor) -> tuple[Execution, bool]:
            cur.execute(insert, values)
            row = cur.fetchone()
            if row is not None:
                return _execution(row), True
            # The same launch_key (a launch delivered twice) or the same id.
            cur.execute(existing, (execution.id, execution.launch_key, execution.launch_key))
            found = cur.fetchone()
            assert found is not None
            return _execution(found), False

        return self._run(work)

    def get(self, execution_id: str) -> Execution | None:
        sql = psycopg2_module().sql
        query = sql.SQL("SELECT {} FROM {} WHERE id = %s").format(
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), self._table
        )

        def work(cur: Cursor) -> Execution | None:
            cur.execute(query, (execution_id,))
            row = cur.fetchone()
            return None if row is None else _execution(row)

        return self._run(work)

    def list(self, *, workflow: str | None = None, status: str | None = None, limit: int = 100) -> list[Execution]:
        sql = psycopg2_module().sql
        query = sql.SQL(
            "SELECT {} FROM {} WHERE (%(w)s::text IS NULL OR workflow = %(w)s)"
            " AND (%(s)s::text IS NULL OR status = %(s)s) ORDER BY created_at DESC, id LIMIT %(n)s"
        ).format(sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), self._table)

        def work(cur: Cursor) -> list[Execution]:
            cur.execute(query, {"w": workflow, "s": status, "n": limit})
            return [_execution(row) for row in cur.fetchall()]

        return self._run(work)

    def _update(self, cur: Cursor, execution_id: str, changes: dict[str, Any]) -> Execution | None:
        sql = psycopg2_module().sql
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise TypeError(f"cannot update {', '.join(sorted(unknown))} of an execution")
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"unknown status {changes['status']!r}")
        params: dict[str, Any] = {"id": execution_id, "final": _FINAL}
        assignments = [sql.SQL("updated_at = now()")]
        for name, value in changes.items():
            params[name] = _jsonb(value) if name in _JSON else value
            if name == "status":
                # guard_status, in SQL: a final status is never overwritten by a non-final
                # one (a late "running" update must not resurrect an ended execution), and
                # an operator's cancel by nothing.
                assignments.append(sql.SQL(
                    "status = CASE WHEN status = 'cancelled' OR (status = ANY(%(final)s)"
                    " AND NOT %(status)s = ANY(%(final)s)) THEN status ELSE %(status)s END"
                ))
            else:
                assignments.append(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
        query = sql.SQL("UPDATE {} SET {} WHERE id = %(id)s RETURNING {}").format(
            self._table, sql.SQL(", ").join(assignments),
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
        )
        cur.execute(query, params)
        row = cur.fetchone()
        return None if row is None else _execution(row)

    def update(self, execution_id: str, **changes: Any) -> Execution | None:
        return self._run(lambda cur: self._update(cur, execution_id, changes))

    def record_instance(self, record: InstanceRecord, conclude: Conclude | None = None) -> Execution | None:
        sql = psycopg2_module().sql
        columns = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
        lock = sql.SQL("SELECT {} FROM {} WHERE id = %s FOR UPDATE").format(columns, self._table)
        upsert = sql.SQL(
            "INSERT INTO {} (execution_id, instance, status, finish_reason, started_at, finished_at, stats)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (execution_id, instance) DO UPDATE SET"
            " status = EXCLUDED.status, finish_reason = EXCLUDED.finish_reason,"
            " finished_at = EXCLUDED.finished_at, stats = EXCLUDED.stats, updated_at = now()"
        ).format(self._instances)
        select = sql.SQL("SELECT {} FROM {} WHERE execution_id = %s ORDER BY started_at, instance").format(
            sql.SQL(", ").join(map(sql.Identifier, _INSTANCE_COLUMNS)), self._instances)

        def work(cur: Cursor) -> Execution | None:
            # The execution row is locked for the whole transaction: fleet instances that
            # close together conclude one after the other, each seeing the others' records.
            cur.execute(lock, (record.execution_id,))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(upsert, (record.execution_id, record.instance, record.status, record.finish_reason,
                                 record.started_at, record.finished_at, _jsonb(record.stats)))
            if conclude is None:
                return _execution(row)
            cur.execute(select, (record.execution_id,))
            changes = conclude(_execution(row), [_instance(r) for r in cur.fetchall()])
            if not changes:
                return _execution(row)
            guard_status(_execution(row).status, changes)
            return self._update(cur, record.execution_id, dict(changes))

        return self._run(work)

    def instances(self, execution_id: str) -> builtins.list[InstanceRecord]:
        sql = psycopg2_module().sql
        query = sql.SQL("SELECT {} FROM {} WHERE execution_id = %s ORDER BY started_at, instance").format(
            sql.SQL(", ").join(map(sql.Identifier, _INSTANCE_COLUMNS)), self._instances)

        def work(cur: Cursor) -> builtins.list[InstanceRecord]:
            cur.execute(query, (execution_id,))
            return [_instance(row) for row in cur.fetchall()]

        return self._run(work)

    # ------------------------------------------------------------ audit log

    def record_audit(self, entry: AuditEntry) -> None:
        sql = psycopg2_module().sql
        query = sql.SQL("INSERT INTO {} (at, actor, action, target, details) VALUES (%s, %s, %s, %s, %s)").format(
            sql.Identifier(self.schema, "audit_log"))
        values = (entry.at, entry.actor, entry.action, entry.target, _jsonb(entry.details))
        self._run(lambda cur: cur.execute(query, values))

    def list_audit(self, *, limit: int = 100, target: str | None = None) -> builtins.list[AuditEntry]:
        sql = psycopg2_module().sql
        query = sql.SQL(
            "SELECT actor, action, target, details, at FROM {} WHERE (%(t)s::text IS NULL OR target = %(t)s)"
            " ORDER BY at DESC, id DESC LIMIT %(n)s"
        ).format(sql.Identifier(self.schema, "audit_log"))

        def work(cur: Cursor) -> builtins.list[AuditEntry]:
            cur.execute(query, {"t": target, "n": limit})
            return [AuditEntry(*row) for row in cur.fetchall()]

        return self._run(work)


def store_from_settings(settings: BaseSettings) -> PostgresExecutionStore | None:
    """The store a crawl with these settings records into (None: no ``DATABASE_URL``)."""
    dsn = read(settings, "DATABASE_URL")
    if not dsn:
        return None
    return PostgresExecutionStore(
        dsn,
        schema=read(settings, "WFCRAWL_POSTGRES_SCHEMA"),
        connect_timeout=read(settings, "WFCRAWL_POSTGRES_CONNECT_TIMEOUT"),
        statement_timeout=read(settings, "WFCRAWL_POSTGRES_STATEMENT_TIMEOUT"),
    )


__all__ = ["PostgresExecutionStore", "connect", "store_from_settings"]
