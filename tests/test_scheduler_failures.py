"""A distributed crawl survives kill -9 of an instance and a Redis restart (real processes, real Redis)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mockserver import MockServer
from tests.test_scheduler_distributed import (
    CrawlProcess,
    assert_finished,
    fetched,
    prefix,  # noqa: F401 - fixture
    redis_client,
)
from wfcrawl.distributed.config import Keys
from wfcrawl.distributed.ops import LeaseStore

pytestmark = pytest.mark.requires_redis

LISTS, PER_LIST, PAGE_DELAY = 6, 8, 0.4
LIST_PAGE_WORKFLOW = """\
name: %(name)s
start_urls: [%(start)s]
obey_robots: false
rate_limit: {delay: 0, concurrency: %(concurrency)d}
phases:
  index:
    nodes:
      - {type: extract_links, css: a.list, marker: list}
    transitions:
      - {marker: list, to: list}
  list:
    nodes:
      - {type: extract_links, css: a.page, marker: page}
    transitions:
      - {marker: page, to: page}
  page:
    nodes:
      - type: extract
        item: page
        fields:
          n: {css: p.n, type: int, required: true}
"""


def list_page_workflow(name: str, start: str, concurrency: int) -> str:
    """An index of lists of pages, one ``page`` item (its ``n``) per page."""
    return LIST_PAGE_WORKFLOW % {"name": name, "start": start, "concurrency": concurrency}


WORKFLOW = list_page_workflow("bigslow", "/big/index.html", 8)
#: Small batches of leases and a short TTL: every instance gets work, and the
#: pages of a killed one come back within seconds.
SETTINGS = ("-s", "CONCURRENT_REQUESTS=8", "-s", "WFCRAWL_REDIS_PREFETCH=0", "-s", "WFCRAWL_REDIS_LEASE_TTL=4")
KILL_SETTINGS = ("-s", "CONCURRENT_REQUESTS=2", "-s", "WFCRAWL_REDIS_PREFETCH=0", "-s", "WFCRAWL_REDIS_LEASE_TTL=4")


def page_path(i: int, j: int) -> str:
    return f"/slow/{j % 10 + 1}?delay={PAGE_DELAY}&k={i}-{j}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[MockServer, Path, list[str]]]:
    """48 slow pages behind 6 list pages; each list also links 2 pages of the next list."""
    big = tmp_path / "sites" / "big"
    big.mkdir(parents=True)
    links = "".join(f'<a class="list" href="/big/list-{i}.html">{i}</a>\n' for i in range(LISTS))
    (big / "index.html").write_text(f"<html><body>{links}</body></html>")
    for i in range(LISTS):
        pages = [page_path(i, j) for j in range(PER_LIST)] + [page_path((i + 1) % LISTS, j) for j in range(2)]
        body = "".join(f'<a class="page" href="{p}">p</a>\n' for p in pages)
        (big / f"list-{i}.html").write_text(f"<html><body>{body}</body></html>")
    workflow = tmp_path / "bigslow.yaml"
    workflow.write_text(WORKFLOW)
    expected = sorted(
        json.dumps({"_path": page_path(i, j), "_type": "page", "n": j % 10 + 1}, sort_keys=True)
        for i in range(LISTS) for j in range(PER_LIST)
    )
    with MockServer(sites_dir=tmp_path / "sites") as server:
        yield server, workflow, expected


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def slow_pages(server: MockServer) -> int:
    return sum(1 for p in server.paths() if p.startswith("/slow/"))


def test_kill_9_at_several_moments_loses_nothing(site: tuple[MockServer, Path, list[str]], tmp_path: Path,
                                                prefix: str) -> None:  # noqa: F811
    """Four instances; one is killed early, one in the middle, one late; the last finishes the crawl."""
    server, workflow, expected = site
    procs = [CrawlProcess(workflow, tmp_path, f"p{i}", server.url, *KILL_SETTINGS, execution_id="run",
                          prefix=prefix) for i in range(4)]
    survivor, candidates = procs[-1], procs[:-1]
    store = LeaseStore(redis_client(), Keys.for_run(prefix, "bigslow", "run"), instance="test", lease_ttl=4)
    held: dict[int, int] = {}
    for moment in (4, 20, 40):  # of 48 pages
        wait_until(lambda: slow_pages(server) >= moment, f"{moment} pages fetched")  # noqa: B023
        owners = list(store.owners().values())
        victim = max(candidates, key=lambda p: sum(1 for inst in owners if inst.split("/")[1] == str(p.pid)))
        os.kill(victim.pid, signal.SIGSTOP)  # frozen: its leases can be read, then it dies holding them
        held[moment] = sum(1 for inst in store.owners().values() if inst.split("/")[1] == str(victim.pid))
        victim.kill()
        candidates.remove(victim)
    out = survivor.wait()
    assert_finished(out)
    dead = [p.outcome(-9) for p in procs[:-1]]
    everything = out.items + [line for d in dead for line in d.items]
    # Every item, from the survivor or written by a victim before it died.
    assert sorted(set(everything)) == expected
    # Only pages the victims had leased may be fetched (and their items written) twice.
    assert sum(n - 1 for n in fetched(server).values()) <= sum(held.values()), held
    assert len(everything) - len(expected) <= sum(held.values())
    assert out.stats.get("wfcrawl/scheduler/leases_lost", 0) == 0
    assert store.counts() == (0, 0)


def test_a_scale_in_hands_its_leases_back_at_once(site: tuple[MockServer, Path, list[str]], tmp_path: Path,
                                                  prefix: str) -> None:  # noqa: F811
    """SIGTERM (Cloud Run scale-in): finished pages released, unstarted leases back in the queue now."""
    server, workflow, expected = site
    first = CrawlProcess(workflow, tmp_path, "first", server.url, "-s", "CONCURRENT_REQUESTS=2",
                         "-s", "WFCRAWL_REDIS_PREFETCH=4", execution_id="run", prefix=prefix)
    wait_until(lambda: slow_pages(server) >= 4, "4 pages fetched")
    first.popen.send_signal(signal.SIGTERM)
    out1 = first.wait()
    store = LeaseStore(redis_client(), Keys.for_run(prefix, "bigslow", "run"), instance="test", lease_ttl=30)
    queued, leased = store.counts()
    assert (out1.stats["finish_reason"], leased) == ("shutdown", 0)
    assert queued >= out1.stats["wfcrawl/scheduler/returned"] >= 1
    assert out1.stats["wfcrawl/scheduler/leased"] == (
        out1.stats["wfcrawl/scheduler/released"] + out1.stats["wfcrawl/scheduler/returned"])
    out2 = CrawlProcess(workflow, tmp_path, "second", server.url, *SETTINGS, execution_id="run",
                        prefix=prefix).wait()
    assert_finished(out2)
    assert sorted(out1.items + out2.items) == expected
    assert set(fetched(server).values()) == {1}  # nothing fetched twice


class PrivateRedis:
    """A redis-server of the test's own on a unix socket (no port to pick), restartable."""

    def __init__(self, directory: Path, persistent: bool) -> None:
        self.dir = directory
        self.socket = directory / "redis.sock"
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self) -> None:
        args = ["redis-server", "--port", "0", "--unixsocket", str(self.socket), "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes" if self.persistent else "no"]
        if self.persistent:
            args += ["--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(self._ready, "redis-server to answer", 20)

    def _ready(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url).ping())
        except redis.exceptions.ConnectionError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@pytest.fixture
def private_redis(tmp_path: Path, request: Any) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, persistent=request.param)
    try:
        server.start()
    except FileNotFoundError:
        from tests.conftest import require_service

        require_service("redis-server", False, "Debian package redis-server")
    yield server
    server.stop()


@pytest.mark.parametrize("private_redis", [True, False], ids=["persistent", "not-persistent"], indirect=True)
def test_redis_restarted_mid_crawl(site: tuple[MockServer, Path, list[str]], tmp_path: Path,
                                   private_redis: PrivateRedis) -> None:
    server, workflow, expected = site
    crawl = CrawlProcess(workflow, tmp_path, "crawl", server.url, *SETTINGS, execution_id="run",
                         redis_url=private_redis.url)
    wait_until(lambda: slow_pages(server) >= 10, "10 pages fetched")
    private_redis.kill()
    wait_until(lambda: "Redis is unreachable" in crawl.log_file.read_text(), "the crawl to notice")
    private_redis.start()
    out = crawl.wait()
    if private_redis.persistent:
        assert_finished(out)
        assert sorted(out.items) == expected
        assert out.stats["wfcrawl/redis/errors"] >= 1
    else:
        # The state is gone: the instance must stop, loudly, and not start the crawl over.
        assert out.stats["finish_reason"] == "redis_state_lost"
        assert "ERROR: Distributed crawl failed (redis_state_lost): the crawl's state in Redis is gone" in out.log
        assert len(out.items) < len(expected)
