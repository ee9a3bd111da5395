"""A fleet's execution ends with the fleet, not with one instance.

Three crawl processes share one execution (REDIS_URL, DATABASE_URL: real Redis, real
PostgreSQL). One is stopped gracefully mid-crawl (SIGTERM, as a Cloud Run scale-in does)
and launched again. Before outcomes, that SIGTERM wrote ``cancelled`` on the execution and
the other instances closed on reading it (441-445 of 2,500 items lost). Now the stopped
instance records only itself; every item arrives, and the execution ends ``succeeded``
when the shared queue drains, decided from every instance's stats.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.launcher_support import PG_DSN, pg_schema  # noqa: F401 (fixture)
from tests.mockserver import MockServer
from tests.test_durability_kill import scraped
from tests.test_ops_webhooks import SECRET, receiver  # noqa: F401 (fixture)
from tests.test_pipelines_postgres import query
from tests.test_scheduler_distributed import CrawlProcess, prefix  # noqa: F401 (fixture)
from tests.test_scheduler_failures import LISTS, PER_LIST, page_path, site, wait_until  # noqa: F401

pytestmark = [pytest.mark.requires_redis, pytest.mark.requires_postgres]


def test_one_instance_stopped_and_relaunched_the_fleet_ends_succeeded(
    site: tuple[MockServer, Path, list[str]], tmp_path: Path, prefix: str, pg_schema: str,  # noqa: F811
    receiver: Any,  # noqa: F811
) -> None:
    server, workflow, expected = site
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/h"
    args = ("-s", f"DATABASE_URL={PG_DSN}", "-s", f"WFCRAWL_POSTGRES_SCHEMA={pg_schema}",
            "-s", f"WFCRAWL_WEBHOOKS_URLS={hook}", "-s", f"WFCRAWL_WEBHOOKS_SECRET={SECRET}",
            # One page at a time (0.4 s each): the others are still crawling when the stopped one is gone.
            "-s", "WFCRAWL_EXECUTIONS_INTERVAL=0.3", "-s", "CONCURRENT_REQUESTS=1", "-s", "WFCRAWL_SUMMARY_ENABLED=True")
    procs = [CrawlProcess(workflow, tmp_path, f"p{i}", server.url, *args, execution_id="fleet", prefix=prefix)
             for i in range(3)]
    status = f'SELECT status FROM "{pg_schema}".executions WHERE id = \'fleet\''

    wait_until(lambda: len(scraped(procs[0])) >= 3, "the first instance's third item")
    procs[0].popen.send_signal(signal.SIGTERM)
    stopped = procs[0].wait()
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.log[-3000:]
    assert stopped.stats["finish_reason"] == "shutdown"
    assert stopped.stats["wfcrawl/outcome/instance"] == "stopped"
    assert "wfcrawl/outcome" not in stopped.stats
    assert "this instance stopped (shutdown)" in stopped.log and "the execution goes on" in stopped.log
    # The execution goes on: nobody wrote its end, the others keep crawling.
    assert query(PG_DSN, status) == [("running",)]
    survivors = [p for p in procs[1:] if p.popen.poll() is None]
    assert survivors, "the other instances stopped with the first one"

    again = CrawlProcess(workflow, tmp_path, "p0-again", server.url, *args, execution_id="fleet", prefix=prefix)
    outs = [p.wait(timeout=120) for p in [*procs[1:], again]]
    for out in outs:
        assert out.returncode == 0, out.log[-3000:]  # each saw the queue drain: the execution succeeded
        assert (out.stats["finish_reason"], out.stats["wfcrawl/outcome"]) == ("finished", "succeeded")
        assert "Execution fleet was cancelled" not in out.log

    # Every item arrived, each once (the items table upserts by key).
    rows = query(PG_DSN, f'SELECT item_key, item FROM "{pg_schema}".items ORDER BY 1')
    assert sorted(json.dumps({"_path": key[len(server.url):-2], "_type": "page", **item}, sort_keys=True)
                  for key, item in rows) == expected
    assert len(rows) == LISTS * PER_LIST
    record: list[tuple[Any, ...]] = query(
        PG_DSN, f'SELECT status, reasons, finish_reason, stats FROM "{pg_schema}".executions WHERE id = \'fleet\'')
    [(final, reasons, finish_reason, stats)] = record
    assert (final, reasons, finish_reason) == ("succeeded", [], "finished")
    # The execution's stats are every instance's, summed (pages of the stopped one included).
    per_instance = [stopped.stats, *(out.stats for out in outs)]
    assert stats["wfcrawl/pages/page"] == sum(s.get("wfcrawl/pages/page", 0) for s in per_instance) >= LISTS * PER_LIST
    instances = query(PG_DSN, f'SELECT status, finish_reason FROM "{pg_schema}".execution_instances ORDER BY 2, 1')
    assert instances == [("closed", "finished")] * 3 + [("closed", "shutdown")]
    # One notification for the execution: none from the stopped instance, one from the three that saw the end.
    events = [json.loads(body)["event"] for _, _, body in receiver.received]
    assert events == ["succeeded"]
