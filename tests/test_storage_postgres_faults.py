"""PostgreSQL storage when things go wrong: a connection lost mid-write, a spill file
loaded after the fleet re-crawled its pages.

A lost connection is made by the database itself: a trigger on the items table
terminates its own backend the first time it fires (a sequence, which no rollback
undoes, says it already did).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest

from tests.services import TempDatabase
from tests.test_storage_postgres import query, row
from wfcrawl.launcher.config import launcher_settings
from wfcrawl.storage.config import PostgresConfig
from wfcrawl.storage.postgres.items import ITEM_COLUMNS, PgBatch, PostgresItemWriter
from wfcrawl.storage.postgres.spill import load_spill

pytestmark = pytest.mark.requires_postgres

T0, T1, T2, T3 = (f"2026-01-0{d}T00:00:00+00:00" for d in (1, 2, 3, 4))


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def direct(database: TempDatabase) -> str:
    """The test database without PgBouncer: the server's own message for a lost connection."""
    return database.dsn


@pytest.fixture
def kill_once(direct: str, schema: str) -> Iterator[None]:
    """The first row inserted into ``<schema>.items`` loses its connection."""
    PostgresItemWriter(direct, schema).prepare(set())
    query(direct, f'''CREATE SEQUENCE "{schema}".killed;
        CREATE FUNCTION "{schema}".kill() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF nextval('"{schema}".killed') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER kill BEFORE INSERT ON "{schema}".items FOR EACH ROW EXECUTE FUNCTION "{schema}".kill()''')
    yield


def config(dsn: str, schema: str) -> PostgresConfig:
    return PostgresConfig.from_settings(launcher_settings({
        "DATABASE_URL": dsn, "WFCRAWL_POSTGRES_SCHEMA": schema, "WFCRAWL_STORAGE_RETRY_DELAY": "0.1",
        "WFCRAWL_POSTGRES_BATCH_SIZE": "2",
    }))


def spill_file(path: Path, rows: list[tuple[object, ...]]) -> Path:
    path.write_text("".join(json.dumps({"table": "items", "row": dict(zip(ITEM_COLUMNS, r, strict=True))}) + "\n"
                            for r in rows))
    return path


def stored(dsn: str, schema: str) -> list[tuple[object, ...]]:
    return query(dsn, f'SELECT item_key, item, scraped_at, first_scraped_at FROM "{schema}".items ORDER BY 1')


def test_a_lost_connection_raises_its_real_error_not_the_rollbacks(
    direct: str, schema: str, kill_once: None, caplog: pytest.LogCaptureFixture,
) -> None:
    writer = PostgresItemWriter(direct, schema)
    batch = PgBatch()
    batch.add("items", row("a"))
    with caplog.at_level(logging.DEBUG, logger="wfcrawl.storage.postgres.connection"):
        with pytest.raises(psycopg2.OperationalError) as raised:
            writer.write(batch)
    assert type(raised.value) is psycopg2.OperationalError
    assert str(raised.value).splitlines()[0] == "server closed the connection unexpectedly"
    # The rollback on the dead connection failed too: only a debug line says so.
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "rollback failed: InterfaceError: connection already closed")]
    # The writer reconnects: the same batch is written on the next call.
    assert (writer.write(batch).inserted, stored(direct, schema)[0][0]) == (1, "a")
    writer.close()


def test_spill_load_retries_a_lost_connection_and_logs_the_real_error(
    direct: str, schema: str, kill_once: None, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = spill_file(tmp_path / "postgres-wf-ex-1.jsonl", [row(k, fetched=T1) for k in ("a", "b", "c")])
    with caplog.at_level(logging.WARNING, logger="wfcrawl.storage.postgres.spill"):
        result = load_spill(path, config(direct, schema))
    assert (result.rows, result.inserted, result.updated, result.outdated) == (3, 3, 0, 0)
    assert [k for k, *_ in stored(direct, schema)] == ["a", "b", "c"]
    assert [r.getMessage() for r in caplog.records] == [
        "PostgreSQL write failed (OperationalError: server closed the connection unexpectedly); retrying in 0.1s"]
    assert path.with_name(path.name + ".loaded").is_file()


def test_spill_load_keeps_newer_rows_and_the_earliest_first_scraped_at(
    direct: str, schema: str, tmp_path: Path,
) -> None:
    writer = PostgresItemWriter(direct, schema)
    writer.prepare(set())
    for key, fetched in (("old", T1), ("back", T1), ("mid", T2), ("old", T3)):  # what the fleet wrote meanwhile
        batch = PgBatch()
        batch.add("items", row(key, {"v": fetched}, fetched=fetched))
        writer.write(batch)
    writer.close()
    spilled = [
        row("old", {"v": T2}, fetched=T2),  # older than the stored T3, newer than its first T1: nothing changes
        row("mid", {"v": T0}, fetched=T0),  # older than the stored T2: only first_scraped_at moves back
        row("back", {"v": T2}, fetched=T2),  # newer than the stored T1: it wins
        row("new", {"v": T0}, fetched=T0),  # not stored: inserted
    ]
    result = load_spill(spill_file(tmp_path / "postgres-wf-ex-1.jsonl", spilled), config(direct, schema))
    t0, t1, t2, t3 = (datetime.fromisoformat(t) for t in (T0, T1, T2, T3))
    assert stored(direct, schema) == [  # item, scraped_at, first_scraped_at
        ("back", {"v": T2}, t2, t1),
        ("mid", {"v": T2}, t2, t0),
        ("new", {"v": T0}, t0, t0),
        ("old", {"v": T3}, t3, t1),
    ]
    assert (result.rows, result.inserted, result.updated, result.outdated) == (4, 1, 2, 1)
