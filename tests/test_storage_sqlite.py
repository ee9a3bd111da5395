"""The SQLite execution store (``wfcrawl serve``'s embedded default): the ExecutionStore
contract, versioned migrations shared by processes, and the audit log of every store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.launcher_support import execution_store, pg_schema, pg_store  # noqa: F401  (fixtures)
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.config import launcher_settings, open_store
from wfcrawl.storage.audit import AuditEntry
from wfcrawl.storage.executions import Execution, MemoryExecutionStore
from wfcrawl.storage.sqlite.executions import SQLiteExecutionStore
from wfcrawl.storage.sqlite.migrate import migrate, migrations


def test_execution_store_contract(tmp_path: Path) -> None:
    store = SQLiteExecutionStore(tmp_path / "x.sqlite3")
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    first, created = store.create(Execution("e1", "shop", launch_key="msg-1", params={"a": 1}, created_at=t0))
    assert created is True
    assert first == Execution("e1", "shop", launch_key="msg-1", params={"a": 1}, created_at=t0)
    # The same launch delivered twice: the first execution, not a second one.
    again, created = store.create(Execution("e2", "shop", launch_key="msg-1"))
    assert (again, created) == (first, False)
    # The same id without a launch key: that execution.
    assert store.create(Execution("e1", "other")) == (first, False)
    store.create(Execution("e3", "other", created_at=datetime(2026, 1, 3, tzinfo=timezone.utc)))
    assert [e.id for e in store.list()] == ["e3", "e1"]
    assert [e.id for e in store.list(workflow="shop")] == ["e1"]
    assert [e.id for e in store.list(limit=1)] == ["e3"]
    assert store.get("e2") is None
    assert store.get("e1") == first

    running = store.update("e1", status="running", started_at=t0, stats={"items": 3, "start_time": t0})
    assert running is not None and (running.status, running.started_at) == ("running", t0)
    assert running.stats == {"items": 3, "start_time": "2026-01-02 03:04:05+00:00"}
    store.update("e1", status="cancelled", finish_reason="cancelled")
    late = store.update("e1", status="running", stats={"items": 4})
    # A late "running" update keeps the final status but still records its stats.
    assert late is not None and (late.status, late.stats, late.finish_reason) == ("cancelled", {"items": 4}, "cancelled")
    assert [e.id for e in store.list(status="cancelled")] == ["e1"]
    assert store.update("nope", status="failed") is None
    with pytest.raises(TypeError, match="cannot update workflow of an execution"):
        store.update("e1", workflow="x")
    with pytest.raises(ValueError, match="unknown status 'paused'"):
        store.update("e1", status="paused")
    with pytest.raises(ValueError, match="unknown status 'paused'"):
        store.create(Execution("e4", "shop", status="paused"))
    store.close()

    # Kept in the file: another process (here: another connection) sees the same.
    reopened = SQLiteExecutionStore(tmp_path / "x.sqlite3")
    assert [(e.id, e.status, e.stats) for e in reopened.list()] == [
        ("e3", "queued", {}), ("e1", "cancelled", {"items": 4})]
    reopened.close()


def test_migrations_apply_once_when_processes_open_the_file_together(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    code = ("import sys; from wfcrawl.storage.sqlite.executions import SQLiteExecutionStore as S; "
            "print(len(S(sys.argv[1]).list()))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    assert [p.communicate(timeout=60)[0] for p in procs] == ["0\n"] * 4
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version, name FROM schema_migrations").fetchall() == [
        (1, "initial"), (2, "execution_outcomes")]
    tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                          " ORDER BY 1").fetchall()
    assert tables == [("audit_log",), ("execution_instances",), ("executions",), ("schema_migrations",)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert [m.version for m in migrations()] == [1, 2]
    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (7, 'future')")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigurationError) as caught:
        SQLiteExecutionStore(path)
    assert str(caught.value) == (
        f"SQLite database {path} is at version 7, newer than this wfcrawl knows (2): upgrade wfcrawl")


def test_a_failed_migration_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wfcrawl.storage import migrations as shipped
    from wfcrawl.storage.sqlite import migrate as sqlite_migrate

    broken = (*migrations(), shipped.Migration(len(migrations()) + 1, "broken",
                                               "CREATE TABLE t2 (a TEXT);\nCREATE TABLE t2 (a TEXT);"))
    monkeypatch.setattr(sqlite_migrate, "migrations", lambda: broken)
    conn = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="table t2 already exists"):
        migrate(conn, "x.sqlite3")
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []


def test_a_file_of_version_1_keeps_its_executions_as_outcomes(tmp_path: Path) -> None:
    """Records written before outcomes (status ``finished``) are read back ``succeeded``."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(migrations()[0].sql)  # what wfcrawl wrote before outcomes
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " applied_at TEXT NOT NULL DEFAULT '')")
    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'initial')")
    t0 = "2026-01-02T03:04:05.000000+00:00"
    for i, status in enumerate(["finished", "failed", "running"]):
        conn.execute("INSERT INTO executions (id, workflow, status, launch_key, created_at, finish_reason, stats,"
                     " updated_at) VALUES (?, 'shop', ?, ?, ?, 'finished', '{\"items\": 3}', ?)",
                     (f"e{i}", status, f"k{i}", t0, t0))
    conn.close()
    store = SQLiteExecutionStore(path)
    assert [(e.id, e.status, e.reasons, e.stats, e.launch_key) for e in store.list()] == [
        ("e0", "succeeded", [], {"items": 3}, "k0"), ("e1", "failed", [], {"items": 3}, "k1"),
        ("e2", "running", [], {"items": 3}, "k2")]
    assert [e.id for e in store.list(status="succeeded")] == ["e0"]
    # The rebuilt table keeps its constraints: launch keys unique, statuses checked.
    assert store.create(Execution("e9", "shop", launch_key="k1"))[0].id == "e1"
    store.close()
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        conn.execute("UPDATE executions SET status = 'finished' WHERE id = 'e0'")
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'executions'"
                        " AND name NOT LIKE 'sqlite_%' ORDER BY 1").fetchall() == [
        ("executions_created_idx",), ("executions_status_idx",), ("executions_workflow_idx",)]
    conn.close()


def test_wfcrawl_cancel_in_the_file_wfcrawl_serve_keeps(tmp_path: Path) -> None:
    """Without DATABASE_URL the operator cancels in the SQLite file (a launcher watching it
    stops the crawl at its next look); an ended execution is left as it is."""
    path = tmp_path / "wfcrawl.sqlite3"
    store = SQLiteExecutionStore(path)
    store.create(Execution("run-1", "shop", status="running"))
    store.create(Execution("run-2", "shop", status="succeeded"))

    def cancel(execution_id: str, *settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wfcrawl.cli", "cancel", execution_id, "-s", "DATABASE_URL=",
                               *settings], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    done = cancel("run-1", "-s", f"WFCRAWL_SQLITE_PATH={path}")
    assert (done.returncode, done.stdout) == (0, "execution run-1 cancelled: its crawl processes stop at their "
                                                 "next stats update\n")
    cancelled = store.get("run-1")
    assert cancelled is not None
    assert (cancelled.status, cancelled.finish_reason, cancelled.reasons) == (
        "cancelled", "cancelled", [{"code": "cancelled", "message": "cancelled by an operator"}])
    ended = cancel("run-2", "-s", f"WFCRAWL_SQLITE_PATH={path}")
    assert (ended.returncode, ended.stderr) == (1, "wfcrawl cancel: execution run-2 already ended: succeeded\n")
    missing = cancel("run-3", "-s", f"WFCRAWL_SQLITE_PATH={path}")
    assert (missing.returncode, missing.stderr) == (1, "wfcrawl cancel: no execution 'run-3'\n")
    nowhere = cancel("run-1", "-s", "WFCRAWL_SQLITE_PATH=")
    assert (nowhere.returncode, nowhere.stderr) == (2, "wfcrawl cancel: cancel needs the executions record: "
                                                       "DATABASE_URL or WFCRAWL_SQLITE_PATH (environment or -s)\n")
    store.close()


def test_open_store_picks_postgres_then_sqlite_then_memory(tmp_path: Path) -> None:
    store = open_store(launcher_settings({"DATABASE_URL": "", "WFCRAWL_SQLITE_PATH": str(tmp_path / "a/b.db")}))
    assert isinstance(store, SQLiteExecutionStore) and (tmp_path / "a/b.db").is_file()
    assert isinstance(open_store(launcher_settings({"DATABASE_URL": "", "WFCRAWL_SQLITE_PATH": ""})),
                      MemoryExecutionStore)
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(ConfigurationError) as caught:
        open_store(launcher_settings({"DATABASE_URL": "", "WFCRAWL_SQLITE_PATH": str(tmp_path / "dir.db")}))
    assert str(caught.value) == (
        f"cannot open the SQLite database {tmp_path / 'dir.db'} (WFCRAWL_SQLITE_PATH): unable to open database file")


def test_audit_log_newest_first_by_target(execution_store: Any) -> None:  # noqa: F811
    audited = execution_store
    at: Callable[[int], datetime] = lambda minute: datetime(2026, 5, 1, 12, minute, tzinfo=timezone.utc)  # noqa: E731
    entries = [
        AuditEntry("key:ci", "workflow.registered", "shop", {}, at(0)),
        AuditEntry("key:ci", "execution.launched", "e1", {"workflow": "shop", "origin": "api"}, at(1)),
        AuditEntry("pubsub:projects/p/subscriptions/s", "execution.launched", "e2", {"message_id": "m-1"}, at(2)),
        AuditEntry("key:alice", "execution.cancelled", "e1", {"workflow": "shop"}, at(3)),
    ]
    for entry in entries:
        audited.record_audit(entry)
    assert audited.list_audit() == entries[::-1]
    assert audited.list_audit(target="e1") == [entries[3], entries[1]]
    assert audited.list_audit(limit=2) == [entries[3], entries[2]]
    with pytest.raises(ValueError, match=r"unknown audit action 'execution\.deleted'"):
        AuditEntry("key:ci", "execution.deleted", "e1")
