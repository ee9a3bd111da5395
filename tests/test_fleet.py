"""Instances as separate hosts: a fleet in network namespaces, cut off, restarted under.

Each test builds its own fleet (:mod:`tests.fleet`): a bridge on a random 10.x.y.0/24,
one network namespace per crawl instance, a private redis-server and PgBouncer on the
bridge address (a private PostgreSQL behind PgBouncer), and a generated site whose pages
answer after a fixed latency (its ground truth: every product). Instances reach Redis and
PgBouncer only over the bridge, so nftables rules inside one namespace cut that instance
off alone. Needs root; in CI a missing tool fails.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.fleet import Fleet, missing_tools
from tests.services import wait_until
from tests.test_scheduler_distributed import RATE_TOLERANCE, Outcome

pytestmark = pytest.mark.requires_root
#: Leases live 3 s: a cut-off instance's pages come back to the others within seconds.
LEASE_TTL = 3.0
SETTINGS = ("-s", f"WFCRAWL_REDIS_LEASE_TTL={LEASE_TTL}", "-s", "WFCRAWL_REDIS_PREFETCH=1")


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    missing = missing_tools()
    require_service("network namespaces", not missing, f"missing: {', '.join(missing)} (tools/test-services.sh)")


def wait_all(fleet: Fleet, timeout: float = 90) -> list[Outcome]:
    return [proc.wait(timeout) for proc in fleet.procs if proc is not None]


def assert_exact_products(fleet: Fleet) -> None:
    rows = fleet.products()
    assert Counter(rows).most_common(1)[0][1] == 1, "duplicate rows"
    assert set(rows) == fleet.site.truth()
    assert len(rows) == fleet.site.products


def test_an_instance_cut_off_longer_than_the_lease_is_healed(tmp_path: Path) -> None:
    """10 instances; one loses Redis and PostgreSQL for 2 lease TTLs mid-crawl, then comes back."""
    with Fleet(tmp_path, instances=10, products=1500) as fleet:
        for i in range(10):
            fleet.launch(i, *SETTINGS)
        wait_until(lambda: fleet.site.fetched() >= 300, 60, "300 pages fetched")
        # The instance that fetched most lately (it holds leases right now).
        recent = Counter(fleet.instance_of(h.client) for h in fleet.site.log()[-60:])
        victim = recent.most_common(1)[0][0]
        fleet.cut(victim)
        time.sleep(2 * LEASE_TTL)
        fleet.heal(victim)
        outs = wait_all(fleet)
        for out in outs:
            assert out.returncode == 0, out.log[-3000:]
            assert out.stats["finish_reason"] == "finished"
        cut = outs[victim]
        assert cut.stats.get("wfcrawl/scheduler/leases_lost", 0) >= 1, cut.log[-3000:]
        # Its leases were reclaimed by the others.
        assert sum(o.stats.get("wfcrawl/scheduler/requeued", 0) for i, o in enumerate(outs) if i != victim) >= 1
        assert_exact_products(fleet)
        assert fleet.execution() == ("succeeded", "finished")
        # Pages fetched twice: only what the cut-off instance held (its concurrency, prefetch
        # and held releases: at most its leases, each renewed and then lost).
        twice = sum(n - 1 for n in Counter(h.path for h in fleet.site.log()).values())
        assert twice <= cut.stats["wfcrawl/scheduler/leases_lost"] + cut.stats.get(
            "wfcrawl/scheduler/releases_held_max", 0) + 4


def test_redis_restarted_without_its_data_fails_the_execution(tmp_path: Path) -> None:
    with Fleet(tmp_path, instances=4, products=600) as fleet:
        for i in range(4):
            fleet.launch(i, *SETTINGS)
        wait_until(lambda: fleet.site.fetched() >= 100, 60, "100 pages fetched")
        fleet.redis.restart()
        outs = wait_all(fleet, timeout=60)
        for out in outs:
            assert out.returncode == 1, out.log[-3000:]
            assert out.stats["finish_reason"] == "redis_state_lost"
            assert "ERROR: Distributed crawl failed (redis_state_lost): the crawl's state in Redis is gone" in out.log
            assert out.stats["wfcrawl/outcome"] == "failed"
        assert fleet.execution() == ("failed", "redis_state_lost")
        assert fleet.site.fetched() < fleet.site.pages  # stopped, not started over


#: Instances of the PostgreSQL restart test, 2 writer connections each: 10 in the suite;
#: ``FLEET_RESTART_INSTANCES=100`` restarts it under 100 instances (200 writers) (docs/performance.md).
RESTART_INSTANCES = int(os.environ.get("FLEET_RESTART_INSTANCES", "10"))


def test_postgres_restarted_under_many_writers(tmp_path: Path) -> None:
    n = RESTART_INSTANCES
    with Fleet(tmp_path, instances=n, products=150 * n) as fleet:
        for i in range(n):
            fleet.launch(i, *SETTINGS)
        # Every instance crawling, then 15 pages each more (at most a quarter of what is left:
        # a hundred instances on two cores take minutes to start) before PostgreSQL goes.
        def fetching() -> int:
            return len({fleet.instance_of(hit.client) for hit in fleet.site.log()})

        wait_until(lambda: fetching() == n, 10 + 3 * n, "every instance fetching")
        fetched = fleet.site.fetched()
        target = fetched + min(15 * n, (fleet.site.pages - fetched) // 4)
        wait_until(lambda: fleet.site.fetched() >= target, 60, "pages fetched by the whole fleet")
        fleet.postgres.stop("fast")
        time.sleep(2)
        fleet.postgres.start()
        # The writers' retries get through within seconds (PgBouncer's server_login_retry = 1 s).
        rows = len(fleet.products())
        wait_until(lambda: len(fleet.products()) > rows, 6 + 0.2 * n, "rows written after the restart")
        outs = wait_all(fleet, 90 + 3 * n)
        for out in outs:
            assert out.returncode == 0, out.log[-3000:]
            assert out.stats["finish_reason"] == "finished"
        assert sum(o.stats.get("wfcrawl/postgres/items/spilled", 0) for o in outs) == 0
        assert_exact_products(fleet)
        assert fleet.execution() == ("succeeded", "finished")


def test_the_per_domain_delay_holds_across_the_fleet_with_a_late_waker(tmp_path: Path) -> None:
    """6 instances, delay d: the site sees requests >= d - 100 ms apart; one instance is
    SIGSTOPped for a second, so its waits end late (it must reserve again, not send).

    Twice the usual tolerance: the woken process has a second of events to catch up on, and
    a request that passed its check can still leave tens of ms late (seen: 50.8 ms on a
    loaded CI machine). Before the reservation was re-taken, two requests went 0.1 ms apart."""
    delay = 0.15
    with Fleet(tmp_path, instances=6, products=100, delay=delay, concurrency=2, per_list=25) as fleet:
        for i in range(6):
            fleet.launch(i, *SETTINGS)
        wait_until(lambda: fleet.site.fetched() >= 30, 60, "30 pages fetched")
        recent = Counter(fleet.instance_of(h.client) for h in fleet.site.log()[-12:])
        sleeper = recent.most_common(1)[0][0]
        proc = fleet.procs[sleeper]
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGCONT)
        outs = wait_all(fleet)
        for out in outs:
            assert out.returncode == 0, out.log[-3000:]
        assert_exact_products(fleet)
        log = fleet.site.log()
        assert len(log) == fleet.site.pages
        gaps = sorted((b.time - a.time, a.path, b.path) for a, b in itertools.pairwise(log))
        assert gaps[0][0] >= delay - 2 * RATE_TOLERANCE, gaps[:5]
        assert outs[sleeper].stats.get("wfcrawl/ratelimit/late", 0) >= 1
        assert sum(o.stats.get("wfcrawl/ratelimit/reservations", 0) for o in outs) >= fleet.site.pages


def test_the_last_live_instance_ends_the_execution(tmp_path: Path) -> None:
    """One instance killed (-9: its record stays ``running``, its heartbeat stops), then Redis
    goes away: the survivor gives up (``redis_unavailable``, its own end) and, being the last
    live instance, records the execution's end instead of leaving it ``running`` for ever."""
    interval = 1.0
    dead_after = 2 * interval + 10
    with Fleet(tmp_path, instances=2, products=600) as fleet:
        for i in range(2):
            fleet.launch(i, *SETTINGS, "-s", f"WFCRAWL_EXECUTIONS_INTERVAL={interval}",
                         "-s", f"WFCRAWL_REDIS_UNAVAILABLE_TIMEOUT={dead_after + 2}")
        wait_until(lambda: fleet.site.fetched() >= 40, 60, "40 pages fetched")
        killed, survivor = fleet.procs
        assert killed is not None and survivor is not None
        killed.kill()
        fleet.redis.stop()
        out = survivor.wait(90)
        assert out.stats["finish_reason"] == "redis_unavailable", out.log[-3000:]
        assert out.returncode == 1
        assert out.stats["wfcrawl/outcome"] == "failed"
        assert "is the last live one" in out.log
        assert fleet.execution() == ("failed", "redis_unavailable")
        [(reasons,)] = fleet.query(f"SELECT reasons FROM wfcrawl.executions WHERE id = '{fleet.execution_id}'")
        assert [r["code"] for r in reasons] == ["distributed_state_lost"]
        assert sorted(fleet.query("SELECT status FROM wfcrawl.execution_instances")) == [("closed",), ("running",)]
