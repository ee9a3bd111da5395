#!/usr/bin/env python3
"""Storage throughput: items per second into PostgreSQL (direct and through PgBouncer) and GCS.

Runs the real pipelines (``PostgresPipeline``, ``GcsPipeline``) in one process on
Scrapy's asyncio reactor and feeds them generated items through ``process_item``,
as Scrapy's item processor does, one at a time, waiting whenever back-pressure
says so. A run is timed from the first item until ``close_spider`` returns, that
is until the last batch is committed (or the last object uploaded). Every run is
checked: all N rows in the table (or N lines in the objects), else it fails.

Items look like the benchmark shop's products (~700 bytes of JSON: name, price,
sku, an attribute dict, a seller object, three reviews, tags) with WorkflowSpider
provenance (``_type``, ``_meta`` shared by the 20 items of a "page"); keys are
computed by the pipeline (URL + position). PostgreSQL runs insert into a fresh
schema; ``update`` runs write the same items again (a re-crawl: every row updated).

    .venv/bin/python bench/storage_bench.py [--items 100000] [--runs 3] [--only pg,pgbouncer,gcs]
                                             [--batch-size 1000] [--dsn postgresql://...] [--json out.json]

Needs PostgreSQL (``--dsn``, default 127.0.0.1:5432 as postgres; a database is
created and dropped), ``pgbouncer`` (Debian package) and gcp-storage-emulator
(started as a child process, so it does not share this process's CPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET = 20_000  # items/s per process, batched PostgreSQL writes (the target)


def make_items(n: int, per_page: int = 20) -> list[dict[str, Any]]:
    items = []
    meta: dict[str, Any] = {}
    for i in range(n):
        if i % per_page == 0:
            page = i // per_page
            meta = {"workflow": "bench", "execution_id": "bench", "url": f"http://shop.test/category/{page}",
                    "phase": "listing", "markers": ["start", "category"], "depth": 1,
                    "fetched_at": "2026-01-01T00:00:00.000+00:00"}
        items.append({
            "name": f"Ergonomic Walnut Desk Organizer {i}", "price": 19.99 + i % 500, "sku": f"SKU-{i:07d}",
            "attributes": {"Weight": "1.2 kg", "Color": "Walnut", "Material": "Oak", "Size": "40 x 30 cm"},
            "seller": {"name": "Acme Electronics", "rating": 4.5, "url": "http://shop.test/seller/acme"},
            "reviews": [{"author": f"User {j}", "stars": 1 + (i + j) % 5, "text": "Does the job, sturdy and cheap."}
                        for j in range(3)],
            "tags": ["sale", "office", "wood"],
            "_type": "product", "_meta": meta,
        })
    return items


def crawler_for(settings: dict[str, Any]) -> Any:
    from scrapy.utils.test import get_crawler

    from wfcrawl.settings.defaults import DEFAULTS

    crawler = get_crawler(settings_dict={**DEFAULTS, "LOG_LEVEL": "WARNING", **settings})
    crawler.spider = SimpleNamespace(name="bench", plan=None, execution_id="bench")
    return crawler


async def feed(pipeline: Any, items: list[dict[str, Any]]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) from the first item to a closed pipeline."""
    await pipeline.open_spider()
    wall, cpu = time.perf_counter(), time.process_time()
    for item in items:
        await pipeline.process_item(item)
    await pipeline.close_spider()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_on_reactor(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    from scrapy.utils.reactor import install_reactor

    install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    from scrapy.utils.defer import deferred_from_coro
    from twisted.internet import reactor

    result: dict[str, Any] = {}

    def done(value: Any) -> None:
        result["value"] = value
        reactor.stop()  # type: ignore[attr-defined]

    def failed(failure: Any) -> None:
        result["error"] = failure
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(lambda: deferred_from_coro(main()).addCallbacks(done, failed))  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if "error" in result:
        result["error"].raiseException()
    return result["value"]


def count_rows(dsn: str, schema: str) -> int:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{schema}".items')
            return int(cur.fetchone()[0])
    finally:
        conn.close()


async def bench_postgres(name: str, dsn: str, items: list[dict[str, Any]], runs: int, batch: int) -> list[dict[str, Any]]:
    from wfcrawl.pipelines.postgres import PostgresPipeline

    out = []
    for run in range(runs):
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        settings = {"DATABASE_URL": dsn, "WFCRAWL_POSTGRES_SCHEMA": schema, "WFCRAWL_POSTGRES_BATCH_SIZE": batch}
        for mode in ("insert", "update"):
            crawler = crawler_for(settings)
            wall, cpu = await feed(PostgresPipeline.from_crawler(crawler), items)
            stats = crawler.stats.get_stats()
            written = stats.get(f"wfcrawl/postgres/items/{'inserted' if mode == 'insert' else 'updated'}", 0)
            if written != len(items) or count_rows(dsn, schema) != len(items):
                raise SystemExit(f"{name} {mode}: {written} rows written, {len(items)} expected")
            out.append({"target": name, "mode": mode, "run": run + 1, "items": len(items), "seconds": wall,
                        "items_per_s": len(items) / wall, "cpu_s": cpu, "batches": stats["wfcrawl/postgres/batches"],
                        "retries": stats.get("wfcrawl/postgres/retries", 0)})
            print(f"  {name:<10} {mode:<7} run {run + 1}: {len(items) / wall:>9,.0f} items/s "
                  f"({wall:.2f} s, CPU {cpu:.2f} s)", flush=True)
    return out


async def bench_gcs(url: str, items: list[dict[str, Any]], runs: int) -> list[dict[str, Any]]:
    import gzip

    from tests.services import GcsEmulator
    from wfcrawl.pipelines.gcs import GcsPipeline

    fs = GcsEmulator.filesystem(SimpleNamespace(url=url))  # type: ignore[arg-type]
    fs.mkdir("bench")
    out = []
    for run in range(runs):
        prefix = f"run{run}-{uuid.uuid4().hex[:6]}"
        crawler = crawler_for({"GCS_BUCKET": "bench", "WFCRAWL_GCS_ENDPOINT": url, "WFCRAWL_GCS_TOKEN": "anon",
                               "WFCRAWL_GCS_PREFIX": prefix, "WFCRAWL_GCS_INSTANCE": "b"})
        wall, cpu = await feed(GcsPipeline.from_crawler(crawler), items)
        paths = [p for p in fs.find(f"bench/{prefix}") if p.endswith(".jsonl.gz")]
        lines = sum(gzip.decompress(fs.cat_file(p)).count(b"\n") for p in paths)
        if lines != len(items):
            raise SystemExit(f"gcs: {lines} lines stored, {len(items)} expected")
        stats = crawler.stats.get_stats()
        out.append({"target": "gcs", "mode": "insert", "run": run + 1, "items": len(items), "seconds": wall,
                    "items_per_s": len(items) / wall, "cpu_s": cpu, "objects": len(paths),
                    "bytes": stats["wfcrawl/gcs/bytes"]})
        print(f"  gcs        upload  run {run + 1}: {len(items) / wall:>9,.0f} items/s ({wall:.2f} s, CPU {cpu:.2f} s, "
              f"{len(paths)} objects, {stats['wfcrawl/gcs/bytes'] / 1e6:.1f} MB gzip)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--only", default="pg,pgbouncer,gcs")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="admin DSN of the server to benchmark (a database is created on it)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    only = set(args.only.split(","))

    from tests.services import PgBouncer, TempDatabase

    items = make_items(args.items)
    size = len(json.dumps({k: v for k, v in items[1].items() if k != "_meta"}))
    print(f"storage bench: {args.items:,} items of ~{size} bytes JSON, {args.runs} run(s), "
          f"batch {args.batch_size}, {os.cpu_count()} CPUs", flush=True)
    results: list[dict[str, Any]] = []
    emulator = None
    try:
        with TempDatabase(args.dsn) as db:
            bouncer = PgBouncer(db.host, db.port).__enter__() if "pgbouncer" in only else None
            if "gcs" in only:
                emulator = subprocess.Popen([sys.executable, "-m", "tests.services", "gcs-emulator"],
                                            stdout=subprocess.PIPE, text=True)
                url = emulator.stdout.readline().strip().removeprefix("URL=")  # type: ignore[union-attr]

            async def everything() -> None:
                if "pg" in only:
                    results.extend(await bench_postgres("direct", db.dsn, items, args.runs, args.batch_size))
                if bouncer is not None:
                    results.extend(await bench_postgres("pgbouncer", bouncer.dsn(db.name), items, args.runs,
                                                        args.batch_size))
                if emulator is not None:
                    results.extend(await bench_gcs(url, items, args.runs))

            try:
                run_on_reactor(everything)
            finally:
                if bouncer is not None:
                    bouncer.__exit__()
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(10)

    print("\nmedian items/s (wall time until the last batch is committed / object uploaded):")
    summary = {}
    for target, mode in dict.fromkeys((r["target"], r["mode"]) for r in results):
        rates = [r["items_per_s"] for r in results if (r["target"], r["mode"]) == (target, mode)]
        summary[f"{target}/{mode}"] = statistics.median(rates)
        flag = "" if target == "gcs" else ("  >= target" if statistics.median(rates) >= TARGET else "  BELOW TARGET")
        print(f"  {target:<10} {mode:<7} {statistics.median(rates):>9,.0f}{flag}")
    if args.json:
        args.json.write_text(json.dumps({
            "items": args.items, "batch_size": args.batch_size, "runs": results, "median": summary,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        }, indent=1))


if __name__ == "__main__":
    main()
