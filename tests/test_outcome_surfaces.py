"""One outcome, every surface: a dead site is failed in the exit status, the stats, the summary,
the executions record (real PostgreSQL), the webhook body, the pushed metric and the Pub/Sub
push answer; expectations met and unmet in real crawls; per-node counts with parse workers;
the default item sink of launchers."""

from __future__ import annotations

import json
import socket
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_crawl, stat_items
from tests.launcher_support import (  # noqa: F401
    PG_DSN,
    http,
    launch_settings,
    make_launcher,
    pg_schema,
    web_server,
)
from tests.mockserver import MockServer
from tests.test_launcher_push import envelope
from tests.test_ops_metrics import gateway, parse  # noqa: F401
from tests.test_ops_webhooks import SECRET, receiver  # noqa: F401
from tests.test_pipelines_postgres import query
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.checks import LaunchRequest
from wfcrawl.launcher.config import LauncherConfig
from wfcrawl.storage.executions import MemoryExecutionStore
from wfcrawl.web.push import PushConfig, PushEndpoint
from wfcrawl.web.pushauth import push_verifier

DEAD = """\
name: dead
start_urls: [{url}/, {url}/other]
webhooks: [{{url: "{hook}/h"}}]
phases:
  home:
    nodes:
      - {{type: extract, item: page, fields: {{title: title}}}}
"""
@pytest.fixture
def dead_url() -> str:
    """A URL whose port refuses connections (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


REASON = {"code": "all_start_requests_failed",
          "message": "all 2 start request(s) failed (DownloadConnectionRefusedError 2)", "failed": 2}


@pytest.mark.requires_postgres
def test_a_dead_site_is_failed_everywhere(
    tmp_path: Path, dead_url: str, receiver: Any, gateway: Any, pg_schema: str,  # noqa: F811
) -> None:
    hook = f"http://127.0.0.1:{receiver.server_address[1]}"
    crawl = run_crawl(
        DEAD.format(url=dead_url, hook=hook), "-a", "execution_id=dead-1", "-s", "RETRY_TIMES=0",
        "-s", f"DATABASE_URL={PG_DSN}", "-s", f"WFCRAWL_POSTGRES_SCHEMA={pg_schema}",
        "-s", f"WFCRAWL_WEBHOOKS_SECRET={SECRET}",
        "-s", f"WFCRAWL_METRICS_PUSHGATEWAY=http://127.0.0.1:{gateway.server_address[1]}",
        tmp_path=tmp_path,
    )
    # Exit status and stats.
    assert crawl.returncode == 1, crawl.stderr[-3000:]
    assert stat_items(crawl.stats, "wfcrawl/outcome") == {"": "failed", "/reasons/all_start_requests_failed": 1}
    # The console: the outcome first, the reason, no traceback; robots.txt's refusal in one line.
    assert "INFO: Workflow dead FAILED (finished): 0 pages, 0 items, 2 failed pages\n" \
           f"  all_start_requests_failed: {REASON['message']}\n" in crawl.stderr
    assert "Traceback" not in crawl.stderr
    assert crawl.stderr.count("robots.txt") == 1  # the retry middleware's "Gave up retrying" line
    # The executions record.
    rows = query(PG_DSN, f'SELECT status, reasons, finish_reason FROM "{pg_schema}".executions WHERE id = \'dead-1\'')
    assert rows == [("failed", [REASON], "finished")]
    instances = query(PG_DSN, f'SELECT status, finish_reason FROM "{pg_schema}".execution_instances')
    assert instances == [("closed", "finished")]
    # The webhook.
    assert len(receiver.received) == 1
    _, headers, body = receiver.received[0]
    payload = json.loads(body)
    assert (headers["X-Wfcrawl-Event"], payload["event"], payload["status"], payload["reasons"]) == (
        "failed", "failed", "failed", [REASON])
    # The metric the alert fires on.
    pushed = parse(gateway.pushes[-1][2].decode())
    assert pushed[("wfcrawl_crawl_outcome", (("outcome", "failed"), ("reason", "all_start_requests_failed"),
                                             ("workflow", "dead")))] == 1


def test_a_dead_site_launched_by_pubsub_push_is_answered_500(tmp_path: Path, dead_url: str) -> None:
    settings = launch_settings(tmp_path, WFCRAWL_PUSH_ENABLED=True, WFCRAWL_PUSH_SECRET="t",
                               WFCRAWL_PUSH_WAIT_TIMEOUT=120)
    store = MemoryExecutionStore()
    launcher = make_launcher(tmp_path, store, WFCRAWL_LAUNCHER_CRAWL_ARGS=["-s", "RETRY_TIMES=0"])
    endpoint = PushEndpoint(launcher, push_verifier(settings), PushConfig.from_settings(settings))
    service = web_server(tmp_path, launcher, [], push=endpoint)
    document = DEAD.format(url=dead_url, hook="http://127.0.0.1:9").replace('webhooks: [{url: "http://127.0.0.1:9/h"}]\n', "")
    try:
        status, _, body = http("POST", service.url + "/pubsub/push?token=t", envelope({"document": document}, "m-dead"))
    finally:
        service.stop()
        launcher.shutdown()
    assert status == 500  # not acked: Pub/Sub redelivers it, then dead-letters it
    assert (body["detail"], body["execution"]["status"], body["execution"]["reasons"]) == (
        f"execution {body['execution']['id']} failed: all_start_requests_failed: {REASON['message']}", "failed",
        [REASON])


SHOP_EXPECT = """\
expect:
  items:
    product: {min_count: 7, fill_rates: {name: 1.0, reviews: 0.7}}
    seller: {min_count: 2}
  phases:
    listing: {min_pages: 3, optional_nodes: []}
  max_error_rate: 0.1
"""


def shop_with(block: str) -> str:
    text = (Path(__file__).resolve().parent.parent / "workflows" / "shop.yaml").read_text()
    return text.replace("\nphases:\n", f"\n{textwrap.dedent(block)}\nphases:\n", 1)


def test_expectations_met(tmp_path: Path, server: MockServer) -> None:
    crawl = run_crawl(shop_with(SHOP_EXPECT.replace("optional_nodes: []", "optional_nodes: [next page]")),
                      base_url=server.url, tmp_path=tmp_path)
    assert crawl.returncode == 0, crawl.stderr[-3000:]
    assert crawl.stats["wfcrawl/outcome"] == "succeeded"
    # Two products have no review: 5 of 7.
    assert stat_items(crawl.stats, "wfcrawl/fields/filled/") == {"product/name": 7, "product/reviews": 5}


def test_expectations_unmet(tmp_path: Path, server: MockServer) -> None:
    block = SHOP_EXPECT.replace("min_count: 7", "min_count: 8").replace("reviews: 0.7", "reviews: 0.8")
    crawl = run_crawl(shop_with(block.replace("optional_nodes: []", "optional_nodes: [next page]")),
                      base_url=server.url, tmp_path=tmp_path)
    assert crawl.returncode == 1
    assert stat_items(crawl.stats, "wfcrawl/outcome") == {
        "": "failed", "/reasons/items_below_expectation": 1, "/reasons/field_fill_rate_below_expectation": 1}
    assert ("  items_below_expectation: 7 product item(s), expected at least 8\n"
            "  field_fill_rate_below_expectation: field reviews of product filled in 71.4% of 7 item(s), "
            "expected at least 80%\n") in crawl.stderr
    degraded = run_crawl(shop_with(block.replace("max_error_rate: 0.1", "max_error_rate: 0.1\n  on_unmet: degraded")
                                   .replace("optional_nodes: []", "optional_nodes: [next page]")),
                         base_url=server.url, tmp_path=tmp_path)
    assert (degraded.returncode, degraded.stats["wfcrawl/outcome"]) == (3, "degraded")


def test_the_running_error_rate_check_closes_the_crawl(tmp_path: Path, dead_url: str) -> None:
    starts = ", ".join(f"{dead_url}/{i}" for i in range(40))
    doc = (f"name: flaky\nobey_robots: false\nstart_urls: [{starts}]\n"
           "expect: {max_error_rate: 0.2, error_rate_after: 5}\n"
           "phases: {home: {nodes: [{type: extract, item: page, fields: {title: title}}]}}\n")
    crawl = run_crawl(doc, "-s", "RETRY_TIMES=0", "-s", "WFCRAWL_OUTCOME_CLOSE_ON_ERROR_RATE=True",
                      "-s", "CONCURRENT_REQUESTS=1", "-s", "DOWNLOAD_DELAY=0.2", tmp_path=tmp_path)
    assert crawl.returncode == 1
    assert crawl.stats["finish_reason"] == "wfcrawl_error_rate"
    assert crawl.stats["wfcrawl/pages/failed"] < 40  # closed before the end
    assert crawl.stats["wfcrawl/outcome/reasons/error_rate_above_limit"] == 1
    assert "over expect.max_error_rate (0.2): closing the crawl (WFCRAWL_OUTCOME_CLOSE_ON_ERROR_RATE)" in crawl.stderr


def test_a_node_that_never_matched_degrades_the_crawl_with_and_without_parse_workers(
    tmp_path: Path, server: MockServer,
) -> None:
    # The product pages have no span.colour: that node never matches.
    doc = shop_with("").replace(
        "  product:\n    nodes:\n",
        "  product:\n    nodes:\n      - {type: extract, name: colours, item: colour, fields: {c: span.colour}}\n", 1)
    counts = {}
    for workers in ("0", "1"):
        crawl = run_crawl(doc, "-s", f"WFCRAWL_PARSE_WORKERS={workers}", base_url=server.url, tmp_path=tmp_path)
        assert crawl.returncode == 3, crawl.stderr[-3000:]
        assert stat_items(crawl.stats, "wfcrawl/outcome") == {"": "degraded", "/reasons/node_never_matched": 1}
        assert ("  node_never_matched: node colours of phase product matched nothing on any of its 8 page(s)"
                in crawl.stderr)
        counts[workers] = stat_items(crawl.stats, "wfcrawl/nodes/")
    assert counts["1"] == counts["0"]  # the counts travel back from the parse worker
    assert counts["0"]["nomatch/product/colours"] == 8


def test_a_launched_crawl_without_a_store_writes_to_the_default_sink(tmp_path: Path, server: MockServer) -> None:
    from tests.launcher_support import SHOP

    store = MemoryExecutionStore()
    launcher = make_launcher(tmp_path, store)
    try:
        execution, started = launcher.launch(LaunchRequest(document=SHOP, base_url=server.url, origin="test"))
        final = launcher.wait(execution.id, timeout=120)
    finally:
        launcher.shutdown()
    assert started and final is not None and final.status == "succeeded"
    items_file = tmp_path / "items" / f"{execution.id}.jsonl"
    assert final.params["items_file"] == str(items_file)
    items = [json.loads(line) for line in items_file.read_text().splitlines()]
    assert {t: sum(1 for i in items if i["_type"] == t) for t in ("product", "seller")} == {"product": 7, "seller": 2}
    # With no directory either, the launcher refuses to start: never a crawl whose items go nowhere.
    with pytest.raises(ConfigurationError, match="launched crawls would store their items nowhere"):
        LauncherConfig.from_settings(launch_settings(tmp_path, WFCRAWL_LAUNCHER_ITEMS_DIR=""))
    # A store of their own: no default sink.
    config = LauncherConfig.from_settings(launch_settings(tmp_path, GCS_BUCKET=f"b-{uuid.uuid4().hex[:6]}"))
    assert config.items_dir is None


@pytest.mark.requires_postgres
def test_an_interrupted_single_crawl_is_failed_not_cancelled(
    tmp_path: Path, fresh_server: MockServer, pg_schema: str,  # noqa: F811
) -> None:
    import signal

    from tests.test_scheduler_distributed import CrawlProcess
    from tests.test_scheduler_failures import wait_until

    workflow = tmp_path / "slow.yaml"
    workflow.write_text("name: slow\nobey_robots: false\nstart_urls: [/slow/index.html]\nrate_limit: {delay: 0.5}\n"
                        "phases:\n  index:\n    nodes: [{type: extract_links, css: ul.links a, marker: page}]\n"
                        "    transitions: [{marker: page, to: page}]\n"
                        "  page:\n    nodes: [{type: extract, item: slow_page, fields: {n: p.n::text}}]\n")
    proc = CrawlProcess(workflow, tmp_path, "single", fresh_server.url, "-s", f"DATABASE_URL={PG_DSN}",
                        "-s", f"WFCRAWL_POSTGRES_SCHEMA={pg_schema}", redis_url=None, execution_id="single-1")
    wait_until(lambda: proc.items_file.exists() and proc.items_file.read_text().count("\n") >= 1, "the first item")
    proc.popen.send_signal(signal.SIGINT)
    out = proc.wait()
    assert out.returncode == 130, out.log[-3000:]  # 128 + SIGINT
    assert out.stats["finish_reason"] == "shutdown"
    assert query(PG_DSN, f'SELECT status, reasons FROM "{pg_schema}".executions') == [("failed", [{
        "code": "interrupted", "message": "interrupted by SIGINT before the crawl ended", "signal": "SIGINT"}])]
