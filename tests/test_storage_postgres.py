"""PostgreSQL storage without a crawl: migrations, the execution store, the item writer.

Everything runs against the real PostgreSQL, most of it through a real PgBouncer
in transaction pooling mode (started here on a kernel-chosen port), in a
database of its own that is dropped afterwards.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timezone

import psycopg2
import pytest

from tests.services import PgBouncer, TempDatabase, free_port
from wfcrawl.cron.locks import PostgresSlotLock
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.registry import PostgresWorkflowRegistry
from wfcrawl.storage.executions import Execution
from wfcrawl.storage.postgres.connection import check_connect
from wfcrawl.storage.postgres.executions import PostgresExecutionStore
from wfcrawl.storage.postgres.items import PgBatch, PostgresItemWriter, markers_literal
from wfcrawl.storage.postgres.migrate import migrate, migrations
from wfcrawl.storage.serialize import dumps
from wfcrawl.workflow.itemspecs import RESERVED_TABLES

pytestmark = pytest.mark.requires_postgres



@pytest.fixture
def dsn(database: TempDatabase, bouncer: PgBouncer) -> str:
    """The test database, through PgBouncer."""
    return bouncer.dsn(database.name)


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


def query(dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


# ---------------------------------------------------------------- migrations


def test_migrations_apply_once_even_when_instances_start_together(dsn: str, schema: str) -> None:
    results: list[list[int]] = []

    def start() -> None:
        conn = psycopg2.connect(dsn)
        try:
            results.append(migrate(conn, schema))
        finally:
            conn.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [[], [], [], [1, 2, 3, 4, 5]]
    assert query(dsn, f'SELECT version, name FROM "{schema}".schema_migrations ORDER BY 1') == [
        (1, "initial"), (2, "schedules"), (3, "launcher_workflows"), (4, "audit_log"), (5, "execution_outcomes")]
    assert tables_of(dsn, schema) == ["audit_log", "execution_instances", "executions", "items", "launcher_workflows",
                                      "quarantine", "schedule_cursors", "schedule_slots", "schema_migrations"]
    assert [m.version for m in migrations()] == [1, 2, 3, 4, 5]
    # Every table of wfcrawl's own is reserved: no workflow may write its items into one.
    assert set(tables_of(dsn, schema)) - {"items"} == RESERVED_TABLES


def tables_of(dsn: str, schema: str) -> list[str]:
    rows = query(dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (schema,))
    return [str(r[0]) for r in rows]


def test_tables_created_at_run_time_by_earlier_versions_are_adopted(dsn: str, schema: str) -> None:
    """Before migrations 2 and 3, the scheduler and the registry created their tables when they started."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{schema}"')
            cur.execute(f'CREATE TABLE "{schema}".launcher_workflows (name text PRIMARY KEY, document text NOT NULL,'
                        " updated_at timestamptz NOT NULL DEFAULT now())")
            cur.execute(f"INSERT INTO \"{schema}\".launcher_workflows (name, document) VALUES ('shop', 'name: shop')")
        assert migrate(conn, schema) == [1, 2, 3, 4, 5]
    finally:
        conn.close()
    assert query(dsn, f'SELECT name, document FROM "{schema}".launcher_workflows') == [("shop", "name: shop")]


def test_newer_schema_version_is_refused(dsn: str, schema: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        migrate(conn, schema)
        with conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO \"{schema}\".schema_migrations VALUES (7, 'future')")
        with pytest.raises(ConfigurationError) as exc:
            migrate(conn, schema)
    finally:
        conn.close()
    assert str(exc.value) == (
        f"PostgreSQL schema {schema!r} is at version 7, newer than this wfcrawl knows (5): upgrade wfcrawl"
    )


def test_schema_name_is_quoted_not_executed(dsn: str) -> None:
    evil = 'x"; DROP TABLE pg_class; --'
    conn = psycopg2.connect(dsn)
    try:
        assert migrate(conn, evil) == [1, 2, 3, 4, 5]
        writer = PostgresItemWriter(dsn, evil)
        batch = PgBatch()
        batch.add("items", row("k1"))
        assert writer.write(batch).inserted == 1
        writer.close()
    finally:
        conn.close()
    assert query(dsn, f'SELECT item_key FROM "{evil.replace(chr(34), 2 * chr(34))}".items') == [("k1",)]


def test_scheduler_lock_and_registry_tables_come_from_the_migrations_with_quoted_names(dsn: str) -> None:
    evil = 'y"; DROP TABLE pg_class; --'
    slot = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    lock = PostgresSlotLock(dsn, evil)
    try:
        assert (lock.claim("shop", slot, "a"), lock.claim("shop", slot, "b")) == (True, False)
        lock.advance("shop", slot)
        assert lock.cursor("shop") == slot
    finally:
        lock.close()
    registry = PostgresWorkflowRegistry(dsn, schema=evil, bundled=False)
    assert (registry.put("shop", "name: shop"), registry.put("shop", "name: shop")) == (True, False)
    assert (registry.get("shop"), registry.names()) == ("name: shop", ["shop"])
    quoted = evil.replace('"', '""')
    assert query(dsn, f'SELECT workflow, owner FROM "{quoted}".schedule_slots') == [("shop", "a")]
    assert query(dsn, f'SELECT max(version) FROM "{quoted}".schema_migrations') == [(5,)]


def test_shipped_pgbouncer_config(database: TempDatabase, bouncer: PgBouncer) -> None:
    """docker/pgbouncer.ini: the production figures, and PgBouncer accepts every line of it."""
    import configparser

    from tests.conftest import ROOT

    path = ROOT / "docker/pgbouncer.ini"
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    parser.read(path)
    assert {k: parser["pgbouncer"][k] for k in ("pool_mode", "max_client_conn", "default_pool_size")} == {
        "pool_mode": "transaction", "max_client_conn": "10000", "default_pool_size": "100",
    }
    # Its settings (address, port and authentication swapped for local ones) run a real PgBouncer.
    with PgBouncer(template=path) as shipped:
        assert query(shipped.dsn(database.name), "SELECT current_database()") == [(database.name,)]


def test_unreachable_database_message() -> None:
    port = free_port()
    with pytest.raises(ConfigurationError) as exc:
        check_connect(f"postgresql://postgres@127.0.0.1:{port}/nowhere", connect_timeout=2)
    assert str(exc.value).startswith(
        f"cannot connect to PostgreSQL at postgres@127.0.0.1:{port}/nowhere (DATABASE_URL): "
    )
    with pytest.raises(ConfigurationError) as exc:
        check_connect("postgresql://user:secret@[bad/db")
    assert str(exc.value) == (
        'DATABASE_URL is not a valid PostgreSQL DSN: invalid dsn: end of string reached when looking for '
        'matching "]" in IPv6 host address in URI: "postgresql://user:***@[bad/db"'
    )


# ---------------------------------------------------------------- executions


def test_execution_store_contract(dsn: str, schema: str) -> None:
    store = PostgresExecutionStore(dsn, schema=schema)
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    first, created = store.create(Execution("e1", "shop", launch_key="msg-1", params={"a": 1}, created_at=t0))
    assert created is True
    assert first == Execution("e1", "shop", launch_key="msg-1", params={"a": 1}, created_at=t0)
    # The same launch delivered twice: the first execution, not a second one.
    again, created = store.create(Execution("e2", "shop", launch_key="msg-1"))
    assert (again, created) == (first, False)
    store.create(Execution("e3", "other", created_at=datetime(2026, 1, 3, tzinfo=timezone.utc)))
    assert [e.id for e in store.list()] == ["e3", "e1"]
    assert [e.id for e in store.list(workflow="shop")] == ["e1"]
    assert store.get("e2") is None

    running = store.update("e1", status="running", started_at=t0, stats={"items": 3, "start_time": t0})
    assert running is not None and running.status == "running"
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
    store.close()


# ---------------------------------------------------------------- item writer


def row(key: str, item: object = None, *, item_type: str = "product", url: str = "http://x/p",
        fetched: str = "2026-01-02T03:04:05.123+00:00", execution: str = "ex") -> tuple:  # type: ignore[type-arg]
    text = dumps(item if item is not None else {"key": key})[0]
    return ("wf", item_type, key, execution, url, "detail", 2, markers_literal(["start", "product"]), fetched, text)


TRICKY = {
    "quote": "it's \"quoted\"",
    "csv": 'a,b\n"c"\r\nd',
    "backslash": "C:\\path\\to\\u0041 \\N",
    "tab": "a\tb",
    "sql": "'); DROP TABLE items; --",
    "unicode": "naïve — 日本語 🕷",
    "empty": "",
    "nested": {"list": [1, 2.5, None, True], "x": {"y": "z"}},
}


def test_writes_are_idempotent_upserts(dsn: str, schema: str) -> None:
    writer = PostgresItemWriter(dsn, schema)
    writer.prepare(set())
    batch = PgBatch()
    batch.add("items", row("a", TRICKY))
    batch.add("items", row("b"))
    batch.add("items", row("b", {"key": "b", "v": 2}))  # same key in one batch: the last one wins
    assert (len(batch), batch.superseded) == (2, 1)
    first = writer.write(batch)
    assert (first.inserted, first.updated) == (2, 0)
    again = writer.write(batch)  # a retried batch (or a re-crawl) updates, never adds
    assert (again.inserted, again.updated) == (0, 2)
    rows = query(dsn, f'SELECT item_key, item, markers, depth, scraped_at FROM "{schema}".items ORDER BY 1')
    assert rows == [
        ("a", TRICKY, ["start", "product"], 2, datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=timezone.utc)),
        ("b", {"key": "b", "v": 2}, ["start", "product"], 2, datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=timezone.utc)),
    ]
    writer.close()


def test_values_postgres_refuses_are_sanitized() -> None:
    assert dumps({"a": "x\x00y", "b": float("nan"), "c": "\ud800z"}) == ('{"a":"x\ufffdy","b":null,"c":"\ufffdz"}', True)
    assert dumps({"a": "ok \\u0000"}) == ('{"a":"ok \\\\u0000"}', False)


def test_refused_rows_are_quarantined_the_rest_written(dsn: str, schema: str) -> None:
    writer = PostgresItemWriter(dsn, schema)
    writer.prepare(set())
    batch = PgBatch()
    batch.add("items", row("good1"))
    batch.add("items", row("bad", fetched="not a time"))
    batch.add("items", row("good2"))
    result = writer.write(batch)
    assert (result.inserted, result.refused, result.quarantined) == (2, 1, 1)
    assert query(dsn, f'SELECT item_key FROM "{schema}".items ORDER BY 1') == [("good1",), ("good2",)]
    quarantined = query(dsn, f'SELECT item_key, reason, errors, item -> \'row\' ->> \'scraped_at\' FROM "{schema}".quarantine')
    assert quarantined == [(
        "bad", "db_error",
        [{"path": "$", "validator": "database",
          "message": 'invalid input syntax for type timestamp with time zone: "not a time"'}],
        "not a time",
    )]
    writer.close()


def test_workflow_tables_are_validated_and_created(dsn: str, schema: str) -> None:
    writer = PostgresItemWriter(dsn, schema)
    with pytest.raises(ConfigurationError) as exc:
        writer.prepare({'x"; DROP TABLE items; --'})
    assert str(exc.value) == "invalid table name 'x\"; DROP TABLE items; --': must match ^[a-z_][a-z0-9_]{0,62}$"
    with pytest.raises(ConfigurationError, match="table name 'executions' is reserved by wfcrawl"):
        writer.prepare({"executions"})
    writer.prepare({"products"})
    batch = PgBatch()
    batch.add("products", row("p1"))
    assert writer.write(batch).inserted == 1
    assert query(dsn, f'SELECT item_key, item FROM "{schema}".products') == [("p1", {"key": "p1"})]
    # Created like `items`: same primary key, so upserts work there too.
    assert writer.write(batch).updated == 1
    writer.close()


def test_json_lines_of_a_batch_for_spill_files() -> None:
    batch = PgBatch()
    batch.add("items", row("k"))
    batch.add_quarantine((*row("q")[:9], "invalid", "[]", "{}"))
    lines = [json.loads(line) for line in batch.json_lines()]
    assert [(line["table"], line["row"]["item_key"]) for line in lines] == [("items", "k"), ("quarantine", "q")]
    assert lines[1]["row"]["reason"] == "invalid"
