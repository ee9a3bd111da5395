"""Webhooks of a real crawl: signed JSON body, retries with backoff, a dead receiver is harmless."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_crawl
from tests.mockserver import MockServer
from wfcrawl.observability.webhooks import verify

SECRET = "s3cr3t-for-tests"
OTHER_SECRET = "another-one"

WORKFLOW = """\
name: hooked
start_urls: [/slow/index.html]
webhooks:
  - url: {receiver}/hooks/wfcrawl
  - url: {dead}/hooks/dead
    events: [finished, failed, stalled]
    secret_env: DEAD_HOOK_SECRET
phases:
  index:
    nodes:
      - type: extract_links
        css: ul.links a
        marker: page
    transitions:
      - {{marker: page, to: page}}
  page:
    nodes:
      - type: extract
        item: slow_page
        fields:
          n: {{css: "p.n::text", type: int}}
"""


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server: Any = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.received.append((self.path, dict(self.headers.items()), body))
        status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received, server.statuses = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def dead_url() -> str:
    """A URL whose port refuses connections (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_signed_notification_retried_until_delivered_and_dead_receiver_harmless(
    tmp_path: Path, server: MockServer, receiver: Any
) -> None:
    receiver.statuses = [503, 500]  # two failures, then 200
    workflow = WORKFLOW.format(receiver=f"http://127.0.0.1:{receiver.server_address[1]}", dead=dead_url())
    crawl = run_crawl(
        textwrap.dedent(workflow), "-a", "execution_id=exec-42",
        "-s", "WFCRAWL_WEBHOOKS_RETRY_TIMES=2", "-s", "WFCRAWL_WEBHOOKS_BACKOFF=0.1",
        tmp_path=tmp_path, base_url=server.url,
        env={"WFCRAWL_WEBHOOKS_SECRET": SECRET, "DEAD_HOOK_SECRET": OTHER_SECRET},
    )
    # The crawl is unaffected: exit 0, every item, finished.
    assert crawl.returncode == 0, crawl.stderr[-3000:]
    assert sorted(i["n"] for i in crawl.of_type("slow_page")) == list(range(1, 11))
    assert crawl.stats["finish_reason"] == "finished"
    # Live receiver: 3 attempts (503, 500, 200); dead one: 1 + 2 retries, then given up.
    assert crawl.stats["wfcrawl/webhooks/attempts"] == 6
    assert crawl.stats["wfcrawl/webhooks/delivered"] == 1
    assert crawl.stats["wfcrawl/webhooks/failed"] == 1
    assert "Webhook succeeded to http://127.0.0.1" in crawl.stderr and "failed after 3 attempt(s)" in crawl.stderr

    assert [path for path, _, _ in receiver.received] == ["/hooks/wfcrawl"] * 3
    deliveries = {h["X-Wfcrawl-Delivery"] for _, h, _ in receiver.received}
    assert len(deliveries) == 1  # the same delivery id on every attempt: receivers can dedupe
    for _, headers, body in receiver.received:
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Wfcrawl-Event"] == "succeeded"
        timestamp = headers["X-Wfcrawl-Timestamp"]
        # Verified as a receiver would, independently of wfcrawl's helper...
        expected = "sha256=" + hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert headers["X-Wfcrawl-Signature"] == expected
        # ...and with it; a tampered body or another secret does not verify.
        assert verify(SECRET, timestamp, body, headers["X-Wfcrawl-Signature"])
        assert not verify(SECRET, timestamp, body + b" ", headers["X-Wfcrawl-Signature"])
        assert not verify(OTHER_SECRET, timestamp, body, headers["X-Wfcrawl-Signature"])
    payload = json.loads(receiver.received[-1][2])
    assert payload["delivery_id"] == deliveries.pop()
    assert {k: payload[k] for k in ("event", "execution_id", "workflow", "status", "finish_reason", "reasons")} == {
        "event": "succeeded", "execution_id": "exec-42", "workflow": "hooked",
        "status": "succeeded", "finish_reason": "finished", "reasons": [],
    }
    assert payload["stats"]["item_scraped_count"] == 10
    assert payload["stats"]["wfcrawl/items/slow_page"] == 10
    assert payload["stats"]["wfcrawl/workflow"] == "hooked"


def test_failed_crawl_is_notified_as_failed(tmp_path: Path, server: MockServer, receiver: Any) -> None:
    # The crawl closes as the memory-usage extension closes it (reason memusage_exceeded).
    crawl = run_crawl(
        textwrap.dedent(f"""\
        name: failing
        start_urls: [/slow/index.html]
        webhooks: [{{url: "http://127.0.0.1:{receiver.server_address[1]}/h", events: [failed]}}]
        phases:
          index:
            nodes:
              - {{type: extract, item: page, fields: {{title: title}}}}
        """),
        "-s", "WFCRAWL_WEBHOOKS_SECRET=" + SECRET, "-s", 'EXTENSIONS={"tests.test_ops_webhooks.CloseAsOutOfMemory": 0}',
        tmp_path=tmp_path, base_url=server.url,
    )
    assert crawl.returncode == 1  # failed
    assert crawl.stats["finish_reason"] == "memusage_exceeded"
    assert len(receiver.received) == 1
    payload = json.loads(receiver.received[0][2])
    assert (payload["event"], payload["status"], payload["finish_reason"]) == ("failed", "failed", "memusage_exceeded")
    assert payload["reasons"] == [{"code": "closed_early", "message": "the crawl closed early (memusage_exceeded)",
                                   "finish_reason": "memusage_exceeded"}]


class CloseAsOutOfMemory:
    """Closes the crawl on its first response, as MemoryUsage does over its limit."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Any) -> CloseAsOutOfMemory:
        from scrapy import signals

        ext = cls(crawler)
        crawler.signals.connect(ext.response_received, signal=signals.response_received)
        return ext

    def response_received(self) -> None:
        from scrapy.utils.defer import deferred_from_coro

        deferred_from_coro(self.crawler.engine.close_spider_async(reason="memusage_exceeded"))


def test_webhook_without_secret_stops_the_crawl_at_start(tmp_path: Path, server: MockServer) -> None:
    crawl = run_crawl(
        textwrap.dedent(WORKFLOW.format(receiver="http://127.0.0.1:9", dead="http://127.0.0.1:9")),
        tmp_path=tmp_path, base_url=server.url, env={"WFCRAWL_WEBHOOKS_SECRET": "", "DEAD_HOOK_SECRET": "x"},
    )
    assert crawl.returncode != 0
    assert crawl.items == []
    assert "no secret to sign with; set WFCRAWL_WEBHOOKS_SECRET" in crawl.stderr


def test_stalled_crawl_is_notified_while_it_runs(tmp_path: Path, server: MockServer, receiver: Any) -> None:
    # The only page takes 3 s to answer; with stall detection at 0.5 s (checked every 0.25 s)
    # the crawl is certainly seen without progress before the page arrives.
    crawl = run_crawl(
        textwrap.dedent(f"""\
        name: sleepy
        start_urls: ["/slow/1?delay=3"]
        obey_robots: false
        webhooks: [{{url: "http://127.0.0.1:{receiver.server_address[1]}/h", events: [stalled, finished]}}]  # finished: succeeded or degraded
        phases:
          page:
            nodes:
              - {{type: extract, item: slow_page, fields: {{n: p.n::text}}}}
        """),
        "-s", "WFCRAWL_WEBHOOKS_SECRET=" + SECRET, "-s", "WFCRAWL_PROGRESS_INTERVAL=0.25",
        "-s", "WFCRAWL_PROGRESS_STALL_AFTER=0.5", tmp_path=tmp_path, base_url=server.url,
    )
    assert crawl.returncode == 0
    assert crawl.stats["wfcrawl/progress/stalls"] == 1
    events = [json.loads(body) for _, _, body in receiver.received]
    assert [(e["event"], e["status"]) for e in events] == [("stalled", "running"), ("succeeded", "succeeded")]
    assert events[0]["stall_reason"] == "no_progress"
    assert events[0]["stats"].get("item_scraped_count", 0) == 0
    assert events[1]["stats"]["item_scraped_count"] == 1
