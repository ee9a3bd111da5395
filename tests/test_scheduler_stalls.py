"""Redis stalls and lost leases: logged, counted once, and the crawl still ends with exact items."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from scrapy import Request
from scrapy.utils.test import get_crawler

from tests.mockserver import MockServer
from tests.test_scheduler_distributed import CrawlProcess, assert_finished, redis_client
from tests.test_scheduler_failures import PrivateRedis, wait_until
from tests.test_scheduler_pacing import Site
from wfcrawl.distributed.broker import LeaseBroker
from wfcrawl.distributed.config import Keys, RedisCrawlConfig
from wfcrawl.distributed.connection import DEFAULT_PARAMS, shared_client
from wfcrawl.distributed.ops import LeaseStore, Push, SyncBatch
from wfcrawl.settings.defaults import DEFAULTS

pytestmark = pytest.mark.requires_redis


@pytest.fixture
def private_redis(tmp_path: Path) -> Any:
    server = PrivateRedis(tmp_path, persistent=False)
    try:
        server.start()
    except FileNotFoundError:
        from tests.conftest import require_service

        require_service("redis-server", False, "Debian package redis-server")
    yield server
    os.kill(server.proc.pid, signal.SIGCONT) if server.proc and server.proc.poll() is None else None
    server.stop()


def stall(pid: int, seconds: float) -> None:
    """Freeze a process (redis-server or a crawl instance), as a paused VM is frozen."""
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def slow_pages(server: MockServer) -> int:
    return sum(1 for p in server.paths() if p.startswith("/slow/"))


def test_a_redis_stall_is_logged_counted_and_the_crawl_ends_exact(tmp_path: Path,
                                                                  private_redis: PrivateRedis) -> None:
    site = Site.build(tmp_path, 60, 0.2)
    assert private_redis.proc is not None
    with MockServer(sites_dir=site.sites) as server:
        crawl = CrawlProcess(site.workflow, tmp_path, "crawl", server.url, "-s", "CONCURRENT_REQUESTS=4",
                             execution_id="run", redis_url=private_redis.url)
        wait_until(lambda: slow_pages(server) >= 10, "10 pages fetched")
        stall(private_redis.proc.pid, 3.0)
        out = crawl.wait(60)
        pages = Counter(p for p in server.paths() if p != "/robots.txt")
    assert_finished(out)
    assert sorted(out.items) == site.expected
    assert (len(pages), set(pages.values())) == (site.pages, {1})  # no lease expired: nothing fetched twice
    assert "WARNING: Slow Redis call: EVALSHA (scheduler sync script) took " in out.log
    assert "(WFCRAWL_REDIS_STALL_WARNING is 2.0 s); renewing this instance's leases now" in out.log
    assert out.stats["wfcrawl/redis/stalls"] >= 1
    assert 2.0 <= out.stats["wfcrawl/redis/stall_max"] < 4.0
    assert out.stats.get("wfcrawl/scheduler/leases_lost", 0) == 0


def test_a_timed_out_command_is_not_sent_again_by_redis_py(private_redis: PrivateRedis) -> None:
    """Three 5 s timeouts in a row were 15 s of silence, and a script call run up to three times."""
    import redis

    client = shared_client(private_redis.url, **{**DEFAULT_PARAMS, "socket_timeout": 0.5})
    client.ping()
    # CLIENT LIST tells the instances apart.
    names = {c["name"] for c in redis.Redis.from_url(private_redis.url).client_list()}
    assert f"wfcrawl/{os.uname().nodename}/{os.getpid()}" in names
    assert private_redis.proc is not None
    os.kill(private_redis.proc.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            client.incr("calls")
        elapsed = time.monotonic() - start
    finally:
        os.kill(private_redis.proc.pid, signal.SIGCONT)
    assert 0.5 <= elapsed < 0.9
    # Sent once: Redis ran it once when it woke up.
    wait_until(lambda: redis.Redis.from_url(private_redis.url).get("calls") == b"1", "the INCR to run", 5)
    client.close()


# --------------------------------------------------------------- lost leases, counted once


def broker(prefix: str, **settings: Any) -> tuple[LeaseBroker, set[Request]]:
    crawler = get_crawler(settings_dict={**DEFAULTS, **settings})
    inprogress: set[Request] = set()
    crawler.engine = SimpleNamespace(_slot=SimpleNamespace(  # type: ignore[assignment]
        inprogress=inprogress, nextcall=SimpleNamespace(schedule=lambda: None)), spider=None)
    config = RedisCrawlConfig.from_settings(crawler.settings)
    store = LeaseStore(redis_client(), Keys.for_run(prefix, "wf", "run"), instance="a", lease_ttl=1.0)
    b = LeaseBroker(crawler, store, config, lambda payload: Request(payload.decode()))
    b._kick = SimpleNamespace(schedule=lambda: None, cancel=lambda: None)  # type: ignore[assignment]
    return b, inprogress


def sync(b: LeaseBroker, *, renew: bool = False) -> None:
    """One call of the broker, made here instead of in its thread (no reactor runs)."""
    if renew:
        b._last_renew = -1e9
    now = time.monotonic()
    local_empty = b.ledger.empty()
    batch, renewed = b._batch(now, b._want())
    b._synced(b.store.sync(batch, b._candidate), batch, now, renewed, local_empty)


def test_a_lost_lease_is_counted_once_and_never_renewed_again(caplog: pytest.LogCaptureFixture) -> None:
    prefix = f"wfcrawl-test-{uuid.uuid4().hex[:8]}"
    try:
        b, inprogress = broker(prefix, CONCURRENT_REQUESTS=2, WFCRAWL_REDIS_PREFETCH=1)
        for url in ("http://a/1", "http://a/2", "http://a/3"):
            b.push(Push(0, (url.encode(),), url.encode()))
        sync(b)
        requests = [b.pop(), b.pop()]  # started: the engine works on them
        inprogress.update(r for r in requests if r is not None)
        assert (len(b.ledger.handed), len(b.ledger.ready)) == (2, 1)
        time.sleep(1.3)  # the instance stalls past its lease TTL; another one takes the leases back
        other = LeaseStore(redis_client(), b.store.keys, instance="b", lease_ttl=30)
        assert other.sync(SyncBatch(token=b._token)).requeued == 3
        stats = b.crawler.stats
        assert stats is not None
        with caplog.at_level(logging.WARNING):
            for _ in range(3):  # renewal after renewal while the started pages run on
                sync(b, renew=True)
        assert stats.get_value("wfcrawl/scheduler/leases_lost") == 3
        assert caplog.text.count("3 leases of this instance expired before they were renewed") == 1
        assert (b.ledger.handed, len(b.ledger.ready)) == ({}, 3)  # the unstarted one dropped; the 3 requeued leased again
        inprogress.clear()
        b._collect_done()
        assert b.ledger.releases == []  # nothing of ours to release
    finally:
        client = redis_client()
        keys = list(client.scan_iter(match=prefix + ":*"))
        if keys:
            client.delete(*keys)


def test_an_instance_frozen_past_its_leases_loses_them_once(tmp_path: Path, private_redis: PrivateRedis) -> None:
    """Another instance takes the leases back; the frozen one, when it wakes, counts each loss once."""
    site = Site.build(tmp_path, 60, 0.3)
    args = ("-s", "CONCURRENT_REQUESTS=4", "-s", "WFCRAWL_REDIS_LEASE_TTL=2")
    with MockServer(sites_dir=site.sites) as server:
        frozen = CrawlProcess(site.workflow, tmp_path, "frozen", server.url, *args, execution_id="run",
                              redis_url=private_redis.url)
        wait_until(lambda: slow_pages(server) >= 4, "4 pages fetched")
        other = CrawlProcess(site.workflow, tmp_path, "other", server.url, *args, execution_id="run",
                             redis_url=private_redis.url)
        store = LeaseStore(redis_client(private_redis.url), Keys.for_run("wfcrawl", "latency", "run"),
                           instance="test", lease_ttl=2)
        os.kill(frozen.pid, signal.SIGSTOP)
        held = sum(1 for inst in store.owners().values() if inst.split("/")[1] == str(frozen.pid))
        time.sleep(4.0)
        os.kill(frozen.pid, signal.SIGCONT)
        outs = [frozen.wait(60), other.wait(60)]
        pages = Counter(p for p in server.paths() if p != "/robots.txt")
    for out in outs:
        assert_finished(out)
    items = [line for out in outs for line in out.items]
    assert sorted(set(items)) == site.expected
    # What the docs promise: the pages the frozen instance had leased may be fetched twice, no others.
    twice = sum(n - 1 for n in pages.values())
    assert twice <= held and len(items) - len(site.expected) <= held, (twice, held)
    lost = outs[0].stats.get("wfcrawl/scheduler/leases_lost", 0)
    assert 1 <= lost <= outs[1].stats.get("wfcrawl/scheduler/requeued", 0) <= held


def test_leases_taken_by_a_call_whose_reply_was_lost_go_back_at_once() -> None:
    prefix = f"wfcrawl-test-{uuid.uuid4().hex[:8]}"
    try:
        b, _ = broker(prefix, CONCURRENT_REQUESTS=2, WFCRAWL_REDIS_PREFETCH=0)
        for url in ("http://a/1", "http://a/2", "http://a/3"):
            b.push(Push(0, (url.encode(),), url.encode()))
        sync(b)
        assert len(b.ledger.ready) == 2
        # The next call runs in Redis, but its reply never comes (a timeout): two leases nobody knows of.
        lost_reply = b.store.sync(SyncBatch(token=b._token, want=2), b._candidate)
        assert len(lost_reply.got) == 1
        b._retried(TimeoutError("Timeout reading from socket"), 0.1)
        sync(b)  # lists this instance's leases: the unknown one goes back
        stats = b.crawler.stats
        assert stats is not None
        assert stats.get_value("wfcrawl/scheduler/orphaned") == 1
        batch, _ = b._batch(time.monotonic(), 0)
        assert b.store.sync(batch, b._candidate).returned == 1
        assert b.store.counts() == (1, 2)  # queued again at once, not after the lease TTL
    finally:
        client = redis_client()
        keys = list(client.scan_iter(match=prefix + ":*"))
        if keys:
            client.delete(*keys)


def test_a_redis_stall_past_the_socket_timeout_is_logged_and_costs_no_lease_ttl(
        tmp_path: Path, private_redis: PrivateRedis) -> None:
    site = Site.build(tmp_path, 60, 0.2)
    assert private_redis.proc is not None
    with MockServer(sites_dir=site.sites) as server:
        crawl = CrawlProcess(site.workflow, tmp_path, "crawl", server.url, "-s", "CONCURRENT_REQUESTS=4",
                             "-s", 'REDIS_PARAMS={"socket_timeout": 1}', execution_id="run",
                             redis_url=private_redis.url)
        wait_until(lambda: slow_pages(server) >= 10, "10 pages fetched")
        start = time.monotonic()
        stall(private_redis.proc.pid, 3.0)
        out = crawl.wait(60)
        after = time.monotonic() - start
        pages = Counter(p for p in server.paths() if p != "/robots.txt")
    assert_finished(out)
    assert sorted(out.items) == site.expected
    assert (len(pages), set(pages.values())) == (site.pages, {1})
    assert "WARNING: Slow Redis call: EVALSHA (scheduler sync script) failed after 1.0 s (TimeoutError: " in out.log
    assert "Redis is unreachable (TimeoutError: " in out.log
    assert out.stats["wfcrawl/redis/stalls"] >= 1
    assert "requests leased by a Redis call whose reply was lost go back to the queue" in out.log
    assert out.stats["wfcrawl/scheduler/orphaned"] >= 1
    # Leases a timed-out call took are given back at once, not after WFCRAWL_REDIS_LEASE_TTL (30 s).
    assert after < 20, after


def test_a_lost_held_release_is_forgotten_not_renewed_again() -> None:
    from tests.test_durability_gate import gate

    g, store, stats = gate()
    store.accept(1)  # an item still buffered: the releases wait
    assert g.finish([b"a", b"b"], now=0.0) == []
    g.forget({b"b", b"x"})
    assert (list(g), stats.values["wfcrawl/scheduler/releases_held"]) == ([b"a"], 1)
