"""Prometheus metrics of a real crawl: scraped live, pushed at the end, equal to the stats."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.mockserver import MockServer
from wfcrawl.observability.statscollector import (
    MetricsStatsCollector,
    StatsFamilies,
    build_families,
    declared_families,
)

# 1 index + 10 pages + 1 missing page, one request at a time 0.25 s apart:
# about 3 s during which the endpoint is scraped.
WORKFLOW = """\
name: slowsite
start_urls: [/slow/index.html, /slow/99]
rate_limit: {delay: 0.25, concurrency: 1}
phases:
  index:
    nodes:
      - type: extract_links
        css: ul.links a
        marker: page
      - type: extract_links
        css: ul.links a
        marker: again
    transitions:
      - {marker: page, to: page}
      - {marker: again, to: page}
  page:
    nodes:
      - type: extract
        item: slow_page
        fields:
          n: {css: "p.n::text", type: int, required: true}
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, default: float | None = None, /, **labels: str) -> float:
    want = tuple(sorted({"workflow": "slowsite", **labels}.items()))
    if default is not None:
        return samples.get((name, want), default)
    return samples[(name, want)]


class _Gateway(BaseHTTPRequestHandler):
    """Records Pushgateway pushes (PUT /metrics/job/<job>/<label>/<value>)."""

    pushes: list[tuple[str, str, bytes]]

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.pushes.append((self.command, self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    server.pushes = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.timeout(90)
def test_metrics_scraped_live_and_pushed_equal_the_stats(
    tmp_path: Path, fresh_server: MockServer, gateway: ThreadingHTTPServer
) -> None:
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(WORKFLOW))
    stats_file, log_file = tmp_path / "stats.json", tmp_path / "crawl.log"
    cmd = [
        sys.executable, "-m", "scrapy", "crawl", "workflow", "-a", f"workflow={tmp_path / 'wf.yaml'}",
        "-a", f"base_url={fresh_server.url}", "-a", "execution_id=exec-1",
        "-s", f"WFCRAWL_STATS_FILE={stats_file}", "-s", "WFCRAWL_METRICS_PORT=0",
        "-s", "WFCRAWL_METRICS_FINAL_SCRAPE_TIMEOUT=30",
        "-s", f"WFCRAWL_METRICS_PUSHGATEWAY=http://127.0.0.1:{gateway.server_address[1]}",
    ]
    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    scrapes: list[Samples] = []
    try:
        url = None
        while url is None and proc.poll() is None:
            found = re.search(r"Prometheus metrics at (http://\S+)", log_file.read_text())
            url = found.group(1) if found else None
            time.sleep(0.05)
        assert url, log_file.read_text()[-3000:]
        while True:  # until the scrape that shows the crawl closed (the final values)
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.headers["Content-Type"].startswith("text/plain; version=")
                scrapes.append(parse(response.read().decode()))
            if value(scrapes[-1], "wfcrawl_crawl_running") == 0:
                break
            time.sleep(0.05)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    stats = json.loads(stats_file.read_text())
    final = scrapes[-1]

    # Live: the endpoint answered while pages were still being fetched.
    live = [s for s in scrapes if value(s, "wfcrawl_crawl_running") == 1]
    assert any(0 < value(s, "wfcrawl_pages_total", 0, phase="page") < 10 for s in live)
    assert value(final, "wfcrawl_crawl_finished", reason="finished", status="succeeded") == 1
    assert value(final, "wfcrawl_crawl_outcome", outcome="succeeded", reason="") == 1

    # The final scrape equals the stats, key by key (hand-written expectations).
    assert stats["wfcrawl/pages/page"] == 10 and stats["wfcrawl/items/slow_page"] == 10
    expected = {
        ("wfcrawl_requests_total", ()): stats["downloader/request_count"],
        ("wfcrawl_responses_total", (("status", "200"),)): stats["downloader/response_status_count/200"],
        ("wfcrawl_responses_total", (("status", "404"),)): stats["downloader/response_status_count/404"],
        ("wfcrawl_items_total", (("type", "slow_page"),)): 10,
        ("wfcrawl_items_scraped_total", ()): 10,
        ("wfcrawl_pages_total", (("phase", "index"),)): 1,
        ("wfcrawl_pages_total", (("phase", "page"),)): 10,
        ("wfcrawl_pages_failed_total", (("reason", "http_404"),)): 1,
        ("wfcrawl_links_dropped_total", (("reason", "duplicate"),)): stats["dupefilter/filtered"],
        ("wfcrawl_links_extracted_total", ()): 20,
        ("wfcrawl_phase_requests_scheduled_total", (("phase", "page"),)): 20,
        ("wfcrawl_phase_requests_duplicate_total", (("phase", "page"),)): 10,
        ("wfcrawl_phase_requests_total", (("phase", "page"),)): 10,
        ("wfcrawl_phase_items_total", (("phase", "page"),)): 10,
        ("wfcrawl_phase_queue_requests", (("phase", "page"),)): 0,
        ("wfcrawl_scheduler_pending_requests", ()): 0,
    }
    assert stats["dupefilter/filtered"] == 10
    got = {k: value(final, k[0], **dict(k[1])) for k in expected}
    assert got == expected
    assert value(final, "wfcrawl_crawl_info", execution_id="exec-1") == 1
    # One latency observation per response received.
    latency_count = sum(v for (n, _), v in final.items() if n == "wfcrawl_download_latency_seconds_count")
    assert latency_count == stats["response_received_count"]

    # And every stat the mapping knows is in the final scrape with its value.
    mapping = StatsFamilies()
    for sample in mapping.samples(stats, None):
        name = sample.family if sample.kind != "counter" or sample.family.endswith("_total") else sample.family + "_total"
        labels = dict(sample.labels)
        if sample.family.startswith("wfcrawl_stat_"):
            continue  # fallback type depends on the stats class; checked below
        assert value(final, name, **labels) == sample.value, name
    # Every family exported is declared (alert rules are checked against the declaration).
    declared = declared_families()
    names = {n for n, _ in final}
    families = {re.sub(r"_(bucket|count|sum|created)$", "", n) for n in names}
    undeclared = {f for f in families if f not in declared and f + "_total" not in declared
                  and not f.startswith(("process_", "wfcrawl_stat_"))}
    assert undeclared == set()

    # The push at the end carries the same final values.
    pushes = gateway.pushes  # type: ignore[attr-defined]
    assert [(m, p) for m, p, _ in pushes] == [("PUT", "/metrics/job/wfcrawl/workflow/slowsite")]
    pushed = parse(pushes[0][2].decode())
    assert {k: value(pushed, k[0], **dict(k[1])) for k in expected} == expected
    assert value(pushed, "wfcrawl_crawl_finished", reason="finished", status="succeeded") == 1
    assert value(pushed, "wfcrawl_crawl_outcome", outcome="succeeded", reason="") == 1


def test_unreachable_pushgateway_does_not_fail_the_crawl(tmp_path: Path, server: MockServer) -> None:
    from tests.conftest import run_crawl

    sock_port = _closed_port()
    crawl = run_crawl(
        textwrap.dedent(WORKFLOW).replace("delay: 0.25", "delay: 0"),
        "-s", f"WFCRAWL_METRICS_PUSHGATEWAY=http://127.0.0.1:{sock_port}", "-s", "WFCRAWL_METRICS_PUSH_TIMEOUT=2",
        tmp_path=tmp_path, base_url=server.url,
    )
    assert crawl.returncode == 0
    assert len(crawl.of_type("slow_page")) == 10
    assert crawl.stats["wfcrawl/metrics/push_failed"] == 1
    assert "Pushing metrics to" in crawl.stderr


def _closed_port() -> int:
    """A port nothing listens on (bound, then closed): connection refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unmapped_wfcrawl_stats_become_typed_metrics_bounded() -> None:
    from scrapy.utils.test import get_crawler

    stats = MetricsStatsCollector(get_crawler())
    stats.inc_value("wfcrawl/newthing/widgets", 3)
    stats.set_value("wfcrawl/newthing/depth", 7)
    stats.max_value("wfcrawl/newthing/peak", 9)
    stats.inc_value("wfcrawl/postgres/retries", 2)
    stats.inc_value("wfcrawl/postgres/errors/OperationalError", 2)
    stats.set_value("wfcrawl/scheduler/keys", "wfcrawl:{shop:1}")  # text: not a metric
    stats.inc_value("other/library/count")  # not wfcrawl's: not exported
    mapping = StatsFamilies(max_auto_series=2)
    families = build_families(mapping.samples(stats.get_stats(), stats.kinds), {"workflow": "w"}, mapping.help)
    got = {(f.name, f.type): sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in f.samples) for f in families}
    w = ("workflow", "w")
    assert got == {
        ("wfcrawl_requests", "counter"): [("wfcrawl_requests_total", (w,), 0)],
        ("wfcrawl_items_scraped", "counter"): [("wfcrawl_items_scraped_total", (w,), 0)],
        ("wfcrawl_stat_newthing_widgets", "counter"): [("wfcrawl_stat_newthing_widgets_total", (w,), 3)],
        ("wfcrawl_stat_newthing_depth", "gauge"): [("wfcrawl_stat_newthing_depth", (w,), 7)],
        ("wfcrawl_component_retries", "counter"): [("wfcrawl_component_retries_total", (("component", "postgres"), w), 2)],
        ("wfcrawl_component_errors", "counter"): [
            ("wfcrawl_component_errors_total", (("component", "postgres"), ("exception", "OperationalError"), w), 2)],
    }
    assert mapping.auto_dropped == 1  # wfcrawl/newthing/peak: over the cap of 2 automatic series
