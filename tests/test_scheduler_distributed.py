"""Distributed crawls: several real crawl processes on one real Redis, one real HTTP server.

The fixture server runs in this process (its request log is the ground truth of
what was fetched); each crawl is a ``scrapy crawl`` child process. Items are
written by :class:`AppendItems` one ``write()`` each, so the items of a process
killed with SIGKILL are on disk up to its last item.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, require_service
from tests.mockserver import MockServer

pytestmark = pytest.mark.requires_redis
REDIS_URL = "redis://127.0.0.1:6379/0"
SHOP = ROOT / "workflows" / "shop.yaml"
#: Rate-limit tolerance (docs/distributed.md): the gap between the end of the
#: wait and the request reaching the server differs between requests.
RATE_TOLERANCE = 0.05


class AppendItems:
    """Test item pipeline: one JSON line per item, ``_meta`` reduced to the URL path."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    @classmethod
    def from_crawler(cls, crawler: Any) -> AppendItems:
        return cls(crawler.settings["TEST_ITEMS_FILE"])

    def process_item(self, item: Any) -> Any:
        record = {k: v for k, v in item.items() if k != "_meta"}
        url = urlsplit(item["_meta"]["url"])
        record["_path"] = url.path + (f"?{url.query}" if url.query else "")
        os.write(self.fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        return item

    def close_spider(self) -> None:
        os.close(self.fd)


@dataclass
class Outcome:
    returncode: int
    items: list[str]  # JSON lines, as written
    stats: dict[str, Any]
    log: str


class CrawlProcess:
    """One ``scrapy crawl workflow`` child process."""

    def __init__(self, workflow: Path, tmp: Path, name: str, base_url: str, *args: str,
                 redis_url: str | None = REDIS_URL, execution_id: str | None = None,
                 prefix: str | None = None, redis_as_setting: bool = False, wrap: tuple[str, ...] = ()) -> None:
        self.base_url = base_url
        self.items_file = tmp / f"{name}.items.jsonl"
        self.stats_file = tmp / f"{name}.stats.json"
        self.log_file = tmp / f"{name}.log"
        cmd = [
            sys.executable, "-m", "scrapy", "crawl", "workflow",
            "-a", f"workflow={workflow}", "-a", f"base_url={base_url}",
            "-s", f"WFCRAWL_STATS_FILE={self.stats_file}", "-s", f"TEST_ITEMS_FILE={self.items_file}",
            "-s", "ITEM_PIPELINES=" + json.dumps({"tests.test_scheduler_distributed.AppendItems": 990}),
            "-s", "WFCRAWL_SUMMARY_ENABLED=False",
        ]
        if execution_id:
            cmd += ["-a", f"execution_id={execution_id}"]
        if prefix:
            cmd += ["-s", f"WFCRAWL_REDIS_KEY_PREFIX={prefix}"]
        cmd += list(args)
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        if redis_url and redis_as_setting:
            cmd += ["-s", f"REDIS_URL={redis_url}"]
        elif redis_url:
            env["REDIS_URL"] = redis_url  # the environment variable, as on Cloud Run
        self._log = self.log_file.open("w")
        # wrap: a command the crawl runs under (tests/fleet.py: ``ip netns exec NS``).
        self.popen = subprocess.Popen([*wrap, *cmd], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def wait(self, timeout: float = 60) -> Outcome:
        try:
            returncode = self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"crawl did not finish in {timeout} s:\n{self.log_file.read_text()[-3000:]}") from exc
        finally:
            self._log.close()
        return self.outcome(returncode)

    def outcome(self, returncode: int) -> Outcome:
        # Items name the server (e.g. a seller's profile URL): compare across servers.
        text = self.items_file.read_text().replace(self.base_url, "BASE") if self.items_file.exists() else ""
        items = text.splitlines()
        stats = json.loads(self.stats_file.read_text()) if self.stats_file.exists() else {}
        return Outcome(returncode, items, stats, self.log_file.read_text())


def redis_client(url: str = REDIS_URL) -> Any:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        require_service("Redis", False, f"{url}: {exc}")
    return client


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of the test's own; every key under it is deleted afterwards."""
    client = redis_client()
    name = f"wfcrawl-test-{uuid.uuid4().hex[:8]}"
    yield name
    keys = list(client.scan_iter(match=name + ":*"))
    if keys:
        client.delete(*keys)
    client.close()


def fetched(server: MockServer) -> Counter[str]:
    """Requests per path seen by the server, robots.txt aside (each instance reads it once)."""
    return Counter(p for p in server.paths() if p != "/robots.txt")


def assert_finished(outcome: Outcome) -> None:
    assert outcome.returncode == 0, outcome.log[-3000:]
    assert outcome.stats.get("finish_reason") == "finished", outcome.log[-3000:]
    assert " ERROR: " not in outcome.log, outcome.log[-3000:]


@pytest.fixture(scope="module")
def shop_items(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The shop's items as one process with Scrapy's in-memory scheduler finds them."""
    tmp = tmp_path_factory.mktemp("baseline")
    with MockServer() as server:
        out = CrawlProcess(SHOP, tmp, "memory", server.url, redis_url=None).wait()
    assert_finished(out)
    # Without REDIS_URL nothing of the distributed crawl is used.
    assert out.stats["scheduler/enqueued/memory"] == 14
    assert [k for k in out.stats if "redis" in k or k.startswith("wfcrawl/scheduler")] == []
    assert len(out.items) == 9
    return sorted(out.items)


def test_three_processes_share_one_crawl(fresh_server: MockServer, tmp_path: Path, prefix: str,
                                         shop_items: list[str]) -> None:
    procs = [CrawlProcess(SHOP, tmp_path, f"p{i}", fresh_server.url, execution_id="run-1", prefix=prefix)
             for i in range(3)]
    outs = [p.wait() for p in procs]
    for out in outs:
        assert_finished(out)
    # Together exactly the items of one process, each once.
    assert sorted(line for out in outs for line in out.items) == shop_items
    # No page fetched twice, and every lease was released.
    pages = fetched(fresh_server)
    assert (len(pages), set(pages.values())) == (14, {1})
    assert sum(out.stats.get("wfcrawl/scheduler/leased", 0) for out in outs) == 14
    assert sum(out.stats.get("wfcrawl/scheduler/released", 0) for out in outs) == 14
    assert redis_client().exists(f"{prefix}:{{shop:run-1}}:seen") == 1  # nobody deleted the shared state


def test_processes_with_parse_workers_share_one_crawl(fresh_server: MockServer, tmp_path: Path, prefix: str,
                                                     shop_items: list[str]) -> None:
    """Parsing in workers (an awaited callback) keeps each lease until its page is done."""
    procs = [CrawlProcess(SHOP, tmp_path, f"w{i}", fresh_server.url, "-s", "WFCRAWL_PARSE_WORKERS=1",
                          execution_id="run-w", prefix=prefix) for i in range(2)]
    outs = [p.wait() for p in procs]
    for out in outs:
        assert_finished(out)
    assert sorted(line for out in outs for line in out.items) == shop_items
    pages = fetched(fresh_server)
    assert (len(pages), set(pages.values())) == (14, {1})
    assert sum(out.stats.get("wfcrawl/parse_workers/pages", 0) for out in outs) == 14
    assert sum(out.stats.get("wfcrawl/scheduler/released", 0) for out in outs) == 14


def test_workflows_and_runs_do_not_share_state(fresh_server: MockServer, tmp_path: Path, prefix: str,
                                               shop_items: list[str]) -> None:
    copy = tmp_path / "shop-copy.yaml"
    copy.write_text(SHOP.read_text().replace("name: shop\n", "name: shop-copy\n", 1))
    runs = [(SHOP, "run-1"), (SHOP, "run-2"), (copy, "run-1")]
    procs = [CrawlProcess(wf, tmp_path, f"{wf.stem}-{run}", fresh_server.url, execution_id=run, prefix=prefix)
             for wf, run in runs]
    outs = [p.wait() for p in procs]
    for out in outs:
        assert_finished(out)
        assert sorted(out.items) == shop_items
    assert set(fetched(fresh_server).values()) == {3}  # every page once per run
    assert sorted(out.stats["wfcrawl/scheduler/keys"] for out in outs) == [
        f"{prefix}:{{shop-copy:run-1}}:", f"{prefix}:{{shop:run-1}}:", f"{prefix}:{{shop:run-2}}:",
    ]


POLITE = """\
name: polite
start_urls: [/slow/index.html]
obey_robots: false
rate_limit: {delay: %s, concurrency: 4}
phases:
  index:
    nodes:
      - {type: extract_links, css: ul.links a, marker: page}
    transitions:
      - {marker: page, to: page}
  page:
    nodes:
      - type: extract
        item: page
        fields:
          n: {css: p.n, type: int, required: true}
"""


def test_the_per_domain_delay_holds_for_the_whole_fleet(fresh_server: MockServer, tmp_path: Path,
                                                        prefix: str) -> None:
    delay = 0.25
    workflow = tmp_path / "polite.yaml"
    workflow.write_text(POLITE % delay)
    procs = [CrawlProcess(workflow, tmp_path, f"p{i}", fresh_server.url, execution_id="run-1", prefix=prefix,
                          redis_as_setting=True) for i in range(3)]  # REDIS_URL as a setting, not from the environment
    outs = [p.wait() for p in procs]
    for out in outs:
        assert_finished(out)
    assert sorted(line for out in outs for line in out.items) == sorted(
        json.dumps({"_path": f"/slow/{n}", "_type": "page", "n": n}, sort_keys=True) for n in range(1, 11))
    requests = sorted(fresh_server.requests, key=lambda r: r.time)
    assert sorted(r.path for r in requests) == sorted(["/slow/index.html", *(f"/slow/{n}" for n in range(1, 11))])
    gaps = [(b.time - a.time, a.path, b.path) for a, b in itertools.pairwise(requests)]
    assert min(gaps)[0] >= delay - RATE_TOLERANCE, gaps
    assert sum(out.stats.get("wfcrawl/ratelimit/reservations", 0) for out in outs) == 11


def test_redis_url_without_an_execution_id_is_an_error(tmp_path: Path, prefix: str) -> None:
    out = CrawlProcess(SHOP, tmp_path, "noid", "http://127.0.0.1:9", prefix=prefix).wait()
    assert out.returncode == 1
    assert ("ConfigurationError: REDIS_URL is set, so this crawl is distributed: start every instance "
            "of the crawl with the same execution id") in out.log
