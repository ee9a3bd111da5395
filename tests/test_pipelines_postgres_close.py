"""The close when PostgreSQL is away behind PgBouncer: bounded, nothing lost, the end recorded.

PgBouncer holds a query while it has no server connection, up to its
``query_wait_timeout`` (120 s here, its default): the crawl's close must not wait
for it past ``WFCRAWL_STORAGE_CLOSE_TIMEOUT``. What was not written goes to the
spill files, the execution's end included, and ``wfcrawl spill load`` writes it all
once PostgreSQL is back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_service
from tests.mockserver import MockServer
from tests.services import PG_BIN, PgBouncer, PrivatePostgres, wait_until
from tests.test_pipelines_postgres import (
    EXPECTED_ITEMS,
    EXPECTED_QUARANTINE,
    SHOP,
    CrawlProcess,
    item_rows,
    quarantine_rows,
    query,
    storage_args,
)

pytestmark = pytest.mark.requires_postgres

#: PgBouncer's own default: how long it holds a query waiting for a server connection.
QUERY_WAIT = 120
CLOSE_TIMEOUT = 3


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    require_service("PostgreSQL binaries", (PG_BIN / "initdb").exists(), "apt-get install postgresql")
    require_service("PgBouncer", __import__("shutil").which("pgbouncer") is not None, "apt-get install pgbouncer")
    with PrivatePostgres() as pg:
        yield pg


def _exists(dsn: str, schema: str) -> bool:
    return bool(query(dsn, f"SELECT 1 FROM pg_tables WHERE schemaname = '{schema}' AND tablename = 'executions'"))


def test_close_is_bounded_while_pgbouncer_holds_a_write_and_everything_is_spilled(
    private_pg: PrivatePostgres, server: MockServer, tmp_path: Path,
) -> None:
    workflow = tmp_path / "shop.yaml"
    workflow.write_text(SHOP)
    template = tmp_path / "pgbouncer.ini"
    template.write_text(
        "[pgbouncer]\npool_mode = transaction\nmax_client_conn = 100\ndefault_pool_size = 5\n"
        f"server_reset_query =\nignore_startup_parameters = extra_float_digits\nquery_wait_timeout = {QUERY_WAIT}\n"
    )
    spill = tmp_path / "spill"
    pg = private_pg
    direct = pg.dsn("postgres")
    with PgBouncer("127.0.0.1", pg.port, template=template) as bouncer:
        crawl = CrawlProcess(workflow, server.url_for("/"), storage_args(
            bouncer.dsn("postgres"), "bounded", "bounded", "-s", "DOWNLOAD_DELAY=0.2",
            "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1",
            "-s", "WFCRAWL_POSTGRES_FLUSH_INTERVAL=600",  # nothing is written before the close
            "-s", f"WFCRAWL_STORAGE_CLOSE_TIMEOUT={CLOSE_TIMEOUT}", "-s", "WFCRAWL_STORAGE_RETRY_DELAY=0.1",
            "-s", "WFCRAWL_POSTGRES_CONNECT_TIMEOUT=2", "-s", f"WFCRAWL_STORAGE_SPILL_DIR={spill}",
            # a stats update may be held by PgBouncer when the close starts: the end must not wait behind it
            "-s", "WFCRAWL_EXECUTIONS_INTERVAL=0.5"), tmp_path)
        running = "SELECT status FROM bounded.executions WHERE id = 'bounded'"
        wait_until(lambda: _exists(direct, "bounded") and query(direct, running) == [("running",)], 60, "the crawl")
        pg.stop("immediate")
        try:
            crawl.wait_for_line("Closing spider (finished)")
            closing = time.monotonic()
            stats = crawl.finish(timeout=QUERY_WAIT + 60, exit_status=1)  # failed: storage_unavailable
            took = time.monotonic() - closing
        finally:
            pg.start()
    # A correctness bound, not a speed figure: PgBouncer would have held the write QUERY_WAIT s.
    assert took < CLOSE_TIMEOUT + 10, f"the close took {took:.1f}s"
    assert stats["wfcrawl/postgres/items/spilled"] == 16
    assert "wfcrawl/postgres/items/inserted" not in stats
    assert (stats["wfcrawl/outcome"], stats["wfcrawl/outcome/reasons/storage_unavailable"]) == ("failed", 1)
    rows, end = sorted(spill.iterdir(), key=lambda p: p.name.startswith("executions-"))
    assert rows.name.startswith("postgres-shopstore-bounded-") and rows.suffix == ".jsonl"
    assert end.name.startswith("executions-shopstore-bounded-") and end.suffix == ".json"
    assert query(direct, running) == [("running",)]  # the end could not be recorded at close

    # PostgreSQL is back: the rows and the execution's end are written by `wfcrawl spill load`.
    loaded = subprocess.run(
        [sys.executable, "-m", "wfcrawl.cli", "spill", "load", str(rows), str(end),
         "--database-url", direct, "--schema", "bounded"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == (
        f"{rows}: 16 rows: 15 inserted, 0 updated, 0 outdated, 1 quarantined, 0 refused by the database "
        f"-> {rows.name}.loaded\n"
        f"{end}: the end of execution bounded recorded (failed) -> {end.name}.loaded\n"
    )
    assert item_rows(direct, "bounded", server) == EXPECTED_ITEMS
    assert quarantine_rows(direct, "bounded") == EXPECTED_QUARANTINE
    record = query(direct, "SELECT status, finish_reason, reasons, finished_at IS NOT NULL, stats"
                           " FROM bounded.executions WHERE id = 'bounded'")
    [(status, reason, reasons, finished, exec_stats)] = record
    assert (status, reason, finished) == ("failed", "finished", True)
    assert [r["code"] for r in reasons] == ["storage_unavailable"]
    assert exec_stats["wfcrawl/postgres/items/spilled"] == 16
    instances = query(direct, "SELECT status, finish_reason FROM bounded.execution_instances"
                              " WHERE execution_id = 'bounded'")
    assert instances == [("closed", "finished")]
    assert json.loads(end.with_name(end.name + ".loaded").read_text())["execution_id"] == "bounded"


def test_the_end_of_a_spilled_crawl_is_recorded_by_spill_load_which_waits_for_postgres(
    private_pg: PrivatePostgres, server: MockServer, tmp_path: Path,
) -> None:
    """PostgreSQL stopped (no PgBouncer): the rows are spilled and so is the execution's end
    (the record does not stay `running`); `wfcrawl spill load`, started while PostgreSQL is
    still down, retries until it is back."""
    workflow = tmp_path / "shop.yaml"
    workflow.write_text(SHOP)
    spill = tmp_path / "spill"
    pg = private_pg
    dsn = pg.dsn("postgres")
    crawl = CrawlProcess(workflow, server.url_for("/"), storage_args(
        dsn, "ended", "ended", "-s", "DOWNLOAD_DELAY=0.2", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1",
        "-s", "WFCRAWL_POSTGRES_FLUSH_INTERVAL=600", "-s", "WFCRAWL_STORAGE_CLOSE_TIMEOUT=1",
        "-s", "WFCRAWL_STORAGE_RETRY_DELAY=0.1", "-s", f"WFCRAWL_STORAGE_SPILL_DIR={spill}"), tmp_path)
    running = "SELECT status FROM ended.executions WHERE id = 'ended'"
    wait_until(lambda: _exists(dsn, "ended") and query(dsn, running) == [("running",)], 60, "the crawl")
    pg.stop("immediate")
    try:
        stats = crawl.finish(exit_status=1)
        assert stats["wfcrawl/outcome"] == "failed"
        [rows] = spill.glob("postgres-*")
        ends = list(spill.glob("executions-*"))
        assert [e.name.startswith("executions-shopstore-ended-") for e in ends] == [True], sorted(spill.iterdir())
        [line] = [line for line in crawl.lines if "Cannot record the end of execution ended" in line]
        assert f"written to {ends[0]} instead (once PostgreSQL is back: wfcrawl spill load {ends[0]})" in line
        loader = subprocess.Popen(
            [sys.executable, "-m", "wfcrawl.cli", "spill", "load", str(rows), str(ends[0]), "--database-url", dsn,
             "--schema", "ended", "-s", "WFCRAWL_STORAGE_RETRY_DELAY=0.2", "-s", "WFCRAWL_STORAGE_RETRY_MAX_DELAY=1"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert loader.stderr is not None
        first = loader.stderr.readline()  # PostgreSQL is still down: the load waits
        assert first.startswith("PostgreSQL write failed (OperationalError: connection to server at"), first
        assert first.rstrip().endswith("retrying in 0.2s")
    finally:
        pg.start()
    out, _ = loader.communicate(timeout=120)
    assert loader.returncode == 0
    assert out == (f"{rows}: 16 rows: 15 inserted, 0 updated, 0 outdated, 1 quarantined, 0 refused by the database "
                   f"-> {rows.name}.loaded\n"
                   f"{ends[0]}: the end of execution ended recorded (failed) -> {ends[0].name}.loaded\n")
    [(status, reason, reasons)] = query(dsn, "SELECT status, finish_reason, reasons FROM ended.executions")
    assert (status, reason, [r["code"] for r in reasons]) == ("failed", "finished", ["storage_unavailable"])
    assert query(dsn, "SELECT status, finish_reason FROM ended.execution_instances") == [("closed", "finished")]
