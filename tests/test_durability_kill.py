"""kill -9 of an instance holding uncommitted items loses none (Redis + PostgreSQL through PgBouncer).

Three crawl processes share one crawl (REDIS_URL) and write items to PostgreSQL
through a real PgBouncer. Batches are large and flushed rarely, so items sit in
the processes' memory; one process is killed with SIGKILL after it scraped
items none of which was committed. Without the durability barrier the leases of
those pages were already released and the items would be lost for good; with
it, the pages are still leased to the dead process, come back after the lease
TTL, and the survivors store them. The final table must hold exactly the
crawl's items, once each.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.mockserver import MockServer
from tests.services import PgBouncer, TempDatabase
from tests.test_pipelines_postgres import query
from tests.test_scheduler_distributed import CrawlProcess, assert_finished, prefix, redis_client  # noqa: F401
from tests.test_scheduler_failures import LISTS, PER_LIST, page_path, site, wait_until  # noqa: F401
from wfcrawl.distributed import serializer
from wfcrawl.distributed.config import Keys
from wfcrawl.distributed.ops import LeaseStore

pytestmark = [pytest.mark.requires_redis, pytest.mark.requires_postgres]

LEASE_TTL = 4
SETTINGS = (
    "-s", "CONCURRENT_REQUESTS=2", "-s", "WFCRAWL_REDIS_PREFETCH=0", "-s", f"WFCRAWL_REDIS_LEASE_TTL={LEASE_TTL}",
    # Rows stay in memory until the crawl ends (or the barrier asks for them).
    "-s", "WFCRAWL_POSTGRES_FLUSH_INTERVAL=60", "-s", "WFCRAWL_POSTGRES_BATCH_SIZE=1000",
    "-s", "WFCRAWL_POSTGRES_WRITERS=1", "-s", "WFCRAWL_EXECUTIONS_ENABLED=False",
)


def scraped(proc: CrawlProcess) -> set[str]:
    """Pages (path?query) whose items went through the process's pipelines (PostgreSQL: buffered)."""
    if not proc.items_file.exists():
        return set()
    return {json.loads(line)["_path"] for line in proc.items_file.read_text().splitlines()}


def leased_to(store: LeaseStore, pid: int) -> set[str]:
    members = [m for m, inst in store.owners().items() if inst.split("/")[1] == str(pid)]
    payloads = store.client.hmget(store.keys.data, members) if members else []
    return {_path(serializer.loads(p)["url"]) for p in payloads if p}


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def stored(dsn: str, schema: str) -> list[tuple[str, Any]]:
    if not query(dsn, f"SELECT to_regclass('\"{schema}\".items') IS NOT NULL")[0][0]:
        return []
    return sorted(query(dsn, f'SELECT item_key, item FROM "{schema}".items'))


def test_kill_9_with_uncommitted_items_loses_none(
    site: tuple[MockServer, Path, list[str]], tmp_path: Path, prefix: str,  # noqa: F811
    database: TempDatabase, bouncer: PgBouncer,
) -> None:
    server, workflow, _ = site
    dsn, schema = bouncer.dsn(database.name), f"k_{uuid.uuid4().hex[:8]}"
    args = (*SETTINGS, "-s", f"DATABASE_URL={dsn}", "-s", f"WFCRAWL_POSTGRES_SCHEMA={schema}")
    procs = [CrawlProcess(workflow, tmp_path, f"p{i}", server.url, *args, execution_id="run", prefix=prefix)
             for i in range(3)]
    store = LeaseStore(redis_client(), Keys.for_run(prefix, "bigslow", "run"), instance="test", lease_ttl=LEASE_TTL)

    wait_until(lambda: any(len(scraped(p)) >= 3 for p in procs), "an instance with 3 items")
    victim = max(procs, key=lambda p: len(scraped(p)))
    os.kill(victim.pid, signal.SIGSTOP)  # frozen: what it scraped and still holds can be read
    victim_items, victim_leases = scraped(victim), leased_to(store, victim.pid)
    committed = {key for key, _ in stored(dsn, schema)}
    victim.kill()
    survivors = [p for p in procs if p is not victim]
    outs = [p.wait() for p in survivors]

    expected = sorted(
        (f"{server.url}{page_path(i, j)}#0", {"n": j % 10 + 1}) for i in range(LISTS) for j in range(PER_LIST)
    )
    assert stored(dsn, schema) == expected  # every item, each once (upserts by key)
    for out in outs:
        assert_finished(out)
        assert out.stats.get("wfcrawl/scheduler/leases_lost", 0) == 0  # held leases were renewed
        assert out.stats.get("wfcrawl/scheduler/releases_held", 0) == 0
    assert sum(out.stats.get("wfcrawl/scheduler/releases_delayed", 0) for out in outs) > 0
    # The kill did hit items held only in memory ...
    assert len(victim_items) >= 3
    assert {f"{server.url}{p}#0" for p in victim_items}.isdisjoint(committed)
    # ... and the barrier kept every page that produced them leased to the victim.
    assert victim_items <= victim_leases
    assert store.counts() == (0, 0)


def queued_paths(store: LeaseStore) -> set[str]:
    members = [m for m, _ in store.client.zrange(store.keys.queue, 0, -1, withscores=True)]
    payloads = store.client.hmget(store.keys.data, members) if members else []
    return {_path(serializer.loads(p)["url"]) for p in payloads if p}


def test_a_scale_in_writes_its_items_then_releases_and_hands_back_the_rest(
    site: tuple[MockServer, Path, list[str]], tmp_path: Path, prefix: str,  # noqa: F811
    database: TempDatabase, bouncer: PgBouncer,
) -> None:
    """SIGTERM (Cloud Run scale-in) with uncommitted items: written at close, then released."""
    server, workflow, _ = site
    dsn, schema = bouncer.dsn(database.name), f"t_{uuid.uuid4().hex[:8]}"
    proc = CrawlProcess(workflow, tmp_path, "term", server.url, *SETTINGS, "-s", "WFCRAWL_REDIS_PREFETCH=4",
                        "-s", f"DATABASE_URL={dsn}", "-s", f"WFCRAWL_POSTGRES_SCHEMA={schema}",
                        execution_id="run", prefix=prefix)
    wait_until(lambda: len(scraped(proc)) >= 4, "4 items")
    assert stored(dsn, schema) == []  # all of them still in memory
    proc.popen.send_signal(signal.SIGTERM)
    out = proc.wait()
    store = LeaseStore(redis_client(), Keys.for_run(prefix, "bigslow", "run"), instance="test", lease_ttl=LEASE_TTL)
    assert out.stats["finish_reason"] == "shutdown"
    items = scraped(proc)
    assert {key for key, _ in stored(dsn, schema)} == {f"{server.url}{p}#0" for p in items}
    # Pages whose items were written are released, never queued again; the unstarted ones are back.
    queued, leased = store.counts()
    assert leased == 0 and queued >= out.stats["wfcrawl/scheduler/returned"] >= 1
    assert queued_paths(store).isdisjoint(items)
    assert out.stats["wfcrawl/scheduler/releases_delayed"] >= 1
    assert out.stats["wfcrawl/scheduler/releases_held"] == 0
    assert out.stats["wfcrawl/scheduler/leased"] == (
        out.stats["wfcrawl/scheduler/released"] + out.stats["wfcrawl/scheduler/returned"])
