"""Real crawls into PostgreSQL: through PgBouncer, killed, repeated, across a database restart.

Crawls of the fixture shop (tests/sites/shop) run as child processes. Every
test checks the exact rows of the items and quarantine tables (8 listing cards
keyed by page URL + position, 7 valid products keyed by SKU, lp-004 without a
price quarantined) and the crawl's execution record.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_service, run_crawl
from tests.mockserver import MockServer
from tests.services import (
    PG_BIN,
    PgBouncer,
    PrivatePostgres,
    TempDatabase,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.requires_postgres


SHOP = """\
name: shopstore
start_urls: [/shop/index.html]
phases:
  home:
    nodes:
      - {type: extract_links, css: ul.categories a, marker: category}
    transitions:
      - {marker: category, to: listing}
  listing:
    nodes:
      - type: extract
        item: card
        rows: div.product-card
        fields:
          name: a.title::text
          price: {css: span.price::text, type: float}
      - {type: extract_links, css: div.product-card a.title, marker: product}
      - {type: extract_links, css: a.next, marker: next}
    transitions:
      - {marker: product, to: product}
      - {marker: next, to: listing}
  product:
    nodes:
      - type: extract
        item: product
        fields:
          sku: {css: span.sku::text, re: 'SKU: (\\S+)'}
          name: h1.name::text
          price: {css: span.price::text, type: float}
          tags: {css: ul.tags li::text, many: true}
items:
  product:
    key: [sku]
    schema: {type: object, required: [price], properties: {price: {type: number, minimum: 0}}}
"""

LISTING = ("listing", 1, ["start", "category"])
PAGE_2 = ("listing", 2, ["start", "category", "next"])
DETAIL = ("product", 2, ["start", "category", "product"])
DETAIL_3 = ("product", 3, ["start", "category", "next", "product"])


def card(page: str, pos: int, where: tuple[Any, ...], name: str, price: float | None) -> tuple[Any, ...]:
    return ("card", f"/shop/category/{page}.html#{pos}", f"/shop/category/{page}.html", *where,
            {"name": name, "price": price})


def product(sku: str, where: tuple[Any, ...], name: str, price: float | None, tags: list[str]) -> tuple[Any, ...]:
    return ("product", sku, f"/shop/product/{sku.lower()}.html", *where,
            {"sku": sku, "name": name, "price": price, "tags": tags})


EXPECTED_ITEMS = sorted([
    card("laptops-1", 0, LISTING, "Aero 13 Laptop", 1299.0),
    card("laptops-1", 1, LISTING, "Titan 17 Workstation", 2499.99),
    card("laptops-1", 2, LISTING, "Nimbus 14", 849.0),
    card("laptops-2", 0, PAGE_2, "Pixel Slate 12", None),
    card("laptops-2", 1, PAGE_2, "Budget Book 15", 399.0),
    card("phones-1", 0, LISTING, "Nova Phone 6", 699.0),
    card("phones-1", 1, LISTING, "Nova Phone 6 Pro", 1099.0),
    card("phones-1", 2, LISTING, "Pocket Mini", 249.5),
    product("LP-001", DETAIL, "Aero 13 Laptop", 1299.0, ["ultrabook", "sale"]),
    product("LP-002", DETAIL, "Titan 17 Workstation", 2499.99, ["workstation", "pro", "17-inch"]),
    product("LP-003", DETAIL, "Nimbus 14", 849.0, ["student"]),
    product("LP-005", DETAIL_3, "Budget Book 15", 399.0, ["budget", "sale"]),
    product("PH-001", DETAIL, "Nova Phone 6", 699.0, ["5g"]),
    product("PH-002", DETAIL, "Nova Phone 6 Pro", 1099.0, ["5g", "pro", "flagship"]),
    product("PH-003", DETAIL, "Pocket Mini", 249.5, ["compact"]),
], key=repr)
EXPECTED_QUARANTINE: list[tuple[Any, ...]] = [(
    "product", "LP-004", "invalid",
    [{"path": "$.price", "validator": "type", "message": "None is not of type 'number'"}],
    {"sku": "LP-004", "name": "Pixel Slate 12", "price": None, "tags": []},
)]


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """A cluster of its own, for the tests that crash it (each starts it again)."""
    require_service("PostgreSQL binaries", (PG_BIN / "initdb").exists(), "apt-get install postgresql")
    with PrivatePostgres() as pg:
        yield pg


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(SHOP)
    return path


def query(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg2  # imported here: the GCS tests reuse this module's workflow without PostgreSQL

    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            rows: list[tuple[Any, ...]] = cur.fetchall()
            return rows
    finally:
        conn.close()


def item_rows(dsn: str, schema: str, server: MockServer) -> list[tuple[Any, ...]]:
    rows = query(dsn, f'SELECT item_type, item_key, url, phase, depth, markers, item FROM "{schema}".items')
    base = server.url_for("")
    out = [(t, k.removeprefix(base.rstrip("/")), u.removeprefix(base.rstrip("/")), p, d, m, i) for t, k, u, p, d, m, i in rows]
    return sorted(out, key=repr)


def quarantine_rows(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    return query(dsn, f'SELECT item_type, item_key, reason, errors, item FROM "{schema}".quarantine ORDER BY 2')


def executions(dsn: str, schema: str) -> dict[str, tuple[Any, ...]]:
    rows = query(dsn, f'SELECT id, workflow, status, finish_reason, stats FROM "{schema}".executions')
    return {r[0]: r[1:] for r in rows}


def storage_args(dsn: str, schema: str, execution: str, *extra: str) -> list[str]:
    return ["-s", f"DATABASE_URL={dsn}", "-s", f"WFCRAWL_POSTGRES_SCHEMA={schema}", "-a", f"execution_id={execution}",
            "-s", "WFCRAWL_SUMMARY_ENABLED=False", *extra]


#: A crawl slow enough to be killed or to lose its database mid-way: one page
#: every 0.3 s, every row written as soon as possible.
SLOW = ("-s", "DOWNLOAD_DELAY=0.3", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1",
        "-s", "WFCRAWL_POSTGRES_BATCH_SIZE=1", "-s", "WFCRAWL_POSTGRES_FLUSH_INTERVAL=0.1")


class CrawlProcess:
    """A crawl child process whose log lines can be waited for."""

    def __init__(self, workflow: Path, base_url: str, args: list[str], tmp_path: Path) -> None:
        self.stats_file = tmp_path / f"stats-{uuid.uuid4().hex[:6]}.json"
        cmd = [sys.executable, "-m", "scrapy", "crawl", "workflow", "-a", f"workflow={workflow}",
               "-a", f"base_url={base_url}", "-s", f"WFCRAWL_STATS_FILE={self.stats_file}", *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for_line(self, text: str, timeout: float = 60) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: any(text in line for line in self.lines), timeout):
                raise TimeoutError(f"no log line with {text!r} in {timeout}s:\n{''.join(self.lines[-30:])}")

    def finish(self, timeout: float = 90, exit_status: int = 0) -> dict[str, Any]:
        assert self.proc.wait(timeout) == exit_status, "".join(self.lines[-40:])
        return json.loads(self.stats_file.read_text())  # type: ignore[no-any-return]


# ---------------------------------------------------------------- tests


def test_killed_then_repeated_crawls_through_pgbouncer_store_each_item_once(
    database: TempDatabase, bouncer: PgBouncer, server: MockServer, workflow: Path, tmp_path: Path,
) -> None:
    dsn, schema = bouncer.dsn(database.name), f"c_{uuid.uuid4().hex[:8]}"
    base = server.url_for("/")

    # 1. An instance killed (SIGKILL) in the middle of the crawl.
    first = CrawlProcess(
        workflow, base, storage_args(dsn, schema, "run-1", *SLOW, "-s", "WFCRAWL_EXECUTIONS_INTERVAL=0.2"), tmp_path
    )
    count = f'SELECT count(*) FROM "{schema}".items'
    wait_until(lambda: _exists(dsn, schema) and query(dsn, count)[0][0] >= 3, 60, "3 rows")
    # The running crawl keeps its execution record's stats current.
    stats_of = f"SELECT stats FROM \"{schema}\".executions WHERE id = 'run-1'"
    wait_until(lambda: query(dsn, stats_of)[0][0].get("wfcrawl/postgres/items/inserted", 0) >= 1, 60, "stats")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    partial = query(dsn, count)[0][0]
    assert 3 <= partial < len(EXPECTED_ITEMS)

    # 2. The same crawl again: exactly the missing rows are added.
    second = run_crawl(workflow, *storage_args(dsn, schema, "run-2"), base_url=base, tmp_path=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert item_rows(dsn, schema, server) == EXPECTED_ITEMS
    assert quarantine_rows(dsn, schema) == EXPECTED_QUARANTINE
    assert (second.stats["wfcrawl/postgres/items/inserted"], second.stats["wfcrawl/postgres/items/updated"]) == (
        len(EXPECTED_ITEMS) - partial, partial)

    # 3. And once more: nothing added, everything updated, row counts unchanged.
    third = run_crawl(workflow, *storage_args(dsn, schema, "run-3"), base_url=base, tmp_path=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert item_rows(dsn, schema, server) == EXPECTED_ITEMS
    assert quarantine_rows(dsn, schema) == EXPECTED_QUARANTINE
    stats = {k: v for k, v in third.stats.items() if k.startswith(("wfcrawl/postgres/", "wfcrawl/validation/"))}
    assert stats == {
        "wfcrawl/postgres/items/inserted": 0,
        "wfcrawl/postgres/items/updated": 15,
        "wfcrawl/postgres/items/quarantined": 1,
        "wfcrawl/postgres/items/superseded": 0,
        "wfcrawl/postgres/batches": stats["wfcrawl/postgres/batches"],
        "wfcrawl/validation/invalid": 1,
        "wfcrawl/validation/invalid/product/type": 1,
    }

    # The execution records: a killed crawl stays "running" (nothing ran its close).
    records = executions(dsn, schema)
    assert {k: v[:3] for k, v in records.items()} == {
        "run-1": ("shopstore", "running", None),
        "run-2": ("shopstore", "succeeded", "finished"),
        "run-3": ("shopstore", "succeeded", "finished"),
    }
    assert records["run-3"][3]["item_scraped_count"] == 15
    assert records["run-3"][3]["wfcrawl/postgres/items/updated"] == 15


def _exists(dsn: str, schema: str) -> bool:
    return bool(query(dsn, f"SELECT to_regclass('\"{schema}\".items') IS NOT NULL")[0][0])


def test_database_restart_mid_crawl_loses_nothing(
    private_pg: PrivatePostgres, server: MockServer, workflow: Path, tmp_path: Path,
) -> None:
    pg = private_pg
    dsn, schema = pg.dsn("postgres"), "restart"
    crawl = CrawlProcess(
        workflow, server.url_for("/"),
        storage_args(dsn, schema, "restart", *SLOW, "-s", "WFCRAWL_POSTGRES_MAX_PENDING=2",
                     "-s", "WFCRAWL_STORAGE_RETRY_DELAY=0.1", "-s", "WFCRAWL_STORAGE_RETRY_MAX_DELAY=0.3"),
        tmp_path,
    )
    wait_until(lambda: _exists(dsn, schema) and query(dsn, f'SELECT count(*) FROM "{schema}".items')[0][0] >= 1,
               60, "the first row")
    pg.stop("immediate")  # like a crash: connections cut, no shutdown checkpoint
    try:
        crawl.wait_for_line("PostgreSQL write failed")
        crawl.wait_for_line("PostgreSQL writes are behind")  # back-pressure holds the crawl
    finally:
        pg.start()
    stats = crawl.finish()
    assert item_rows(dsn, schema, server) == EXPECTED_ITEMS
    assert quarantine_rows(dsn, schema) == EXPECTED_QUARANTINE
    assert stats["wfcrawl/postgres/retries"] >= 1
    assert stats["wfcrawl/postgres/backpressure"] >= 1
    # A batch whose COMMIT reply was lost is written again: an update, never a second row.
    assert stats["wfcrawl/postgres/items/inserted"] <= 15
    assert stats["wfcrawl/postgres/items/inserted"] + stats["wfcrawl/postgres/items/updated"] >= 15
    assert executions(dsn, schema)["restart"][1:3] == ("succeeded", "finished")


def test_unreachable_database_fails_the_crawl_at_start(server: MockServer, workflow: Path, tmp_path: Path) -> None:
    port = free_port()
    result = run_crawl(workflow, *storage_args(f"postgresql://postgres@127.0.0.1:{port}/shop", "s", "x"),
                       base_url=server.url_for("/"), tmp_path=tmp_path)
    assert result.returncode == 1
    assert (
        f"wfcrawl.exceptions.ConfigurationError: cannot use PostgreSQL at postgres@127.0.0.1:{port}/shop "
        f'(DATABASE_URL): connection to server at "127.0.0.1", port {port} failed: Connection refused'
    ) in result.stderr
    assert result.items == []
    assert "Spider opened" in result.stderr and "Crawled (200)" not in result.stderr


def test_a_cancelled_execution_stops_its_crawl(
    database: TempDatabase, server: MockServer, workflow: Path, tmp_path: Path,
) -> None:
    from wfcrawl.storage.postgres.executions import PostgresExecutionStore

    dsn, schema = database.dsn, f"c_{uuid.uuid4().hex[:8]}"
    crawl = CrawlProcess(workflow, server.url_for("/"), storage_args(
        dsn, schema, "cancel-me", *SLOW, "-s", "WFCRAWL_EXECUTIONS_INTERVAL=0.2"), tmp_path)
    store = PostgresExecutionStore(dsn, schema=schema)
    wait_until(lambda: _exists(dsn, schema) and getattr(store.get("cancel-me"), "status", None) == "running",
               60, "the running execution")
    store.update("cancel-me", status="cancelled")  # what a launcher's "cancel" does
    stats = crawl.finish(exit_status=4)  # cancelled
    assert stats["finish_reason"] == "cancelled"
    record = store.get("cancel-me")
    assert record is not None and (record.status, record.finish_reason) == ("cancelled", "cancelled")
    assert record.stats["finish_reason"] == "cancelled"
    # Whatever was scraped before the cancel is stored, once.
    written = stats.get("wfcrawl/postgres/items/inserted", 0)
    assert query(dsn, f'SELECT count(*) FROM "{schema}".items')[0][0] == written < len(EXPECTED_ITEMS)
    store.close()


def test_rows_are_spilled_when_the_database_stays_away(
    private_pg: PrivatePostgres, server: MockServer, workflow: Path, tmp_path: Path,
) -> None:
    spill = tmp_path / "spill"
    pg = private_pg
    try:
        dsn = pg.dsn("postgres")
        crawl = CrawlProcess(workflow, server.url_for("/"), storage_args(
            dsn, "spill", "spilled", "-s", "DOWNLOAD_DELAY=0.2", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1",
            "-s", "WFCRAWL_POSTGRES_FLUSH_INTERVAL=600",  # nothing is written before the close
            "-s", "WFCRAWL_STORAGE_CLOSE_TIMEOUT=1", "-s", "WFCRAWL_STORAGE_RETRY_DELAY=0.1",
            "-s", f"WFCRAWL_STORAGE_SPILL_DIR={spill}"), tmp_path)
        running = "SELECT status FROM spill.executions WHERE id = 'spilled'"
        wait_until(lambda: _exists(dsn, "spill") and query(dsn, running) == [("running",)], 60, "the crawl")
        pg.stop("immediate")
        stats = crawl.finish(exit_status=1)  # failed: storage_unavailable
    finally:
        if not pg.running():
            pg.start()
    [path] = spill.glob("postgres-*")
    [end] = spill.glob("executions-*")  # the end of the execution could not be recorded either
    assert end.name.startswith("executions-shopstore-spilled-") and end.suffix == ".json"
    assert path.name.startswith("postgres-shopstore-spilled-") and path.suffix == ".jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    base = server.url_for("/").rstrip("/")
    spilled = sorted(
        (line["row"]["item_type"], line["row"]["item_key"].removeprefix(base), line["row"]["url"].removeprefix(base),
         line["row"]["phase"], line["row"]["depth"], line["row"]["markers"], json.loads(line["row"]["item"]))
        for line in lines if line["table"] == "items"
    )
    assert spilled == [(*row[:5], "{" + ",".join(f'"{m}"' for m in row[5]) + "}", row[6]) for row in EXPECTED_ITEMS]
    assert [(line["row"]["item_key"], line["row"]["reason"]) for line in lines if line["table"] == "quarantine"] == [
        ("LP-004", "invalid")]
    assert stats["wfcrawl/postgres/items/spilled"] == 16
    assert (stats["wfcrawl/outcome"], stats["wfcrawl/outcome/reasons/storage_unavailable"]) == ("failed", 1)
    assert "wfcrawl/postgres/items/inserted" not in stats
    assert any("rows written to" in line and str(path) in line for line in crawl.lines)

    # PostgreSQL is back: `wfcrawl spill load` writes the rows the crawl would have written.
    again = tmp_path / "again.jsonl"
    again.write_bytes(path.read_bytes())

    def load(file: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wfcrawl.cli", "spill", "load", str(file), "--database-url", dsn, "--schema", "spill"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )

    loaded = load(path)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == (f"{path}: 16 rows: 15 inserted, 0 updated, 0 outdated, 1 quarantined, 0 refused by the database "
                             f"-> {path.name}.loaded\n")
    assert item_rows(dsn, "spill", server) == EXPECTED_ITEMS
    assert quarantine_rows(dsn, "spill") == EXPECTED_QUARANTINE
    assert not path.exists() and path.with_name(path.name + ".loaded").is_file()
    # The same rows once more: upserts, nothing added.
    assert load(again).stdout.startswith(f"{again}: 16 rows: 0 inserted, 15 updated, 0 outdated, 1 quarantined")
    assert item_rows(dsn, "spill", server) == EXPECTED_ITEMS


def test_spill_file_with_a_broken_line_is_refused_whole(tmp_path: Path) -> None:
    """A spill file cut short (the crawl killed while spilling): located error, nothing written."""
    path = tmp_path / "postgres-shop-x-1.jsonl"
    row = {c: None for c in ("workflow", "item_type", "item_key", "execution_id", "url", "phase", "depth",
                             "markers", "scraped_at", "item")}
    path.write_text(json.dumps({"table": "items", "row": row}) + "\n" + '{"table": "items", "row": {"wor\n')
    proc = subprocess.run(
        [sys.executable, "-m", "wfcrawl.cli", "spill", "load", str(path), "--database-url", "postgresql://unused"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{path}:2: not a spill row: Unterminated string")
    assert path.is_file() and proc.stdout == ""
