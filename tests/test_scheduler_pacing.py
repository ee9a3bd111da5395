"""Redis cost of a latency-bound distributed crawl (real processes, a private redis-server).

Pages answer after a fixed delay, so the crawl is bound by latency, not CPU: the
case where a scheduler that calls Redis for every request it takes or finishes
costs most. The private redis-server (unix socket, nothing on disk) runs only
this crawl, so ``INFO commandstats`` counts exactly its commands, those run by
the Lua scripts included.

Also a measuring tool (docs/distributed.md, "Performance")::

    python -m tests.test_scheduler_pacing --pages 200 --delay 0.2 --concurrency 8 --instances 1 --runs 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from scrapy.settings import Settings

from tests.mockserver import MockServer
from tests.test_scheduler_distributed import CrawlProcess, Outcome, assert_finished
from tests.test_scheduler_failures import PrivateRedis, list_page_workflow
from wfcrawl.distributed.config import RedisCrawlConfig
from wfcrawl.distributed.pacing import MAX_BATCH, Pacer
from wfcrawl.settings.defaults import DEFAULTS

pytestmark = pytest.mark.requires_redis

#: The documented budget (docs/distributed.md): Redis commands per page, Lua included.
MAX_COMMANDS_PER_PAGE = 4
PER_LIST = 20
WORKFLOW = list_page_workflow("latency", "/lat/index.html", 64)


def page_path(i: int, j: int, delay: float) -> str:
    return f"/slow/{j % 10 + 1}?delay={delay}&k={i}-{j}"


@dataclass
class Site:
    workflow: Path
    sites: Path
    expected: list[str]  # the items, as AppendItems writes them
    pages: int  # every page of the crawl: index, lists and slow pages

    @classmethod
    def build(cls, root: Path, pages: int, delay: float) -> Site:
        """``pages`` slow pages behind lists of 20; each list also links 2 pages of the next."""
        lat = root / "sites" / "lat"
        lat.mkdir(parents=True)
        lists = -(-pages // PER_LIST)
        counts = [min(PER_LIST, pages - i * PER_LIST) for i in range(lists)]
        links = "".join(f'<a class="list" href="/lat/list-{i}.html">{i}</a>\n' for i in range(lists))
        (lat / "index.html").write_text(f"<html><body>{links}</body></html>")
        for i in range(lists):
            nxt = (i + 1) % lists
            paths = [page_path(i, j, delay) for j in range(counts[i])]
            paths += [page_path(nxt, j, delay) for j in range(min(2, counts[nxt]))]  # shared: duplicates
            body = "".join(f'<a class="page" href="{p}">p</a>\n' for p in paths)
            (lat / f"list-{i}.html").write_text(f"<html><body>{body}</body></html>")
        workflow = root / "latency.yaml"
        workflow.write_text(WORKFLOW)
        expected = sorted(
            json.dumps({"_path": page_path(i, j, delay), "_type": "page", "n": j % 10 + 1}, sort_keys=True)
            for i in range(lists) for j in range(counts[i])
        )
        return cls(workflow, root / "sites", expected, 1 + lists + pages)


@dataclass
class Measure:
    pages: int
    commands: int
    scripts: int  # EVALSHA/EVAL calls
    seconds: float  # first spider_opened to last spider_closed
    outcomes: list[Outcome]
    fetched: Counter[str]

    @property
    def commands_per_page(self) -> float:
        return self.commands / self.pages

    @property
    def scripts_per_page(self) -> float:
        return self.scripts / self.pages


def command_counts(client: Any) -> Counter[str]:
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in client.info("commandstats").items()})


def _time(stats: dict[str, Any], key: str) -> float:
    return datetime.fromisoformat(str(stats[key])).timestamp()


def measure(root: Path, *, pages: int, delay: float, concurrency: int, instances: int,
            extra: tuple[str, ...] = (), run: str = "run") -> Measure:
    """One crawl of a fresh site by ``instances`` processes on a private redis-server."""
    import redis

    site = Site.build(root, pages, delay)
    server_redis = PrivateRedis(root, persistent=False)
    server_redis.start()
    try:
        client = redis.Redis.from_url(server_redis.url)
        with MockServer(sites_dir=site.sites) as server:
            client.config_resetstat()
            procs = [
                CrawlProcess(site.workflow, root, f"{run}-{i}", server.url, "-s", f"CONCURRENT_REQUESTS={concurrency}",
                             *extra, execution_id=run, redis_url=server_redis.url)
                for i in range(instances)
            ]
            outcomes = [p.wait(120) for p in procs]
            counts = command_counts(client)
            fetched = Counter(p for p in server.paths() if p != "/robots.txt")
        client.close()
    finally:
        server_redis.stop()
    for out in outcomes:
        assert_finished(out)
    items = sorted(line for out in outcomes for line in out.items)
    assert items == site.expected, "the crawl's items differ from the site's"
    counts.pop("info", None)
    counts.pop("config|resetstat", None)
    seconds = max(_time(o.stats, "finish_time") for o in outcomes) - min(_time(o.stats, "start_time") for o in outcomes)
    return Measure(site.pages, sum(counts.values()), counts["evalsha"] + counts["eval"], seconds, outcomes, fetched)


@pytest.mark.parametrize("instances", [1, 3])
def test_latency_bound_crawl_stays_within_the_redis_budget(tmp_path: Path, instances: int) -> None:
    m = measure(tmp_path, pages=120, delay=0.2, concurrency=8, instances=instances)
    # Each page fetched exactly once (no lease expired, nothing re-leased).
    assert (len(m.fetched), set(m.fetched.values())) == (m.pages, {1}), m.fetched.most_common(3)
    assert m.commands_per_page <= MAX_COMMANDS_PER_PAGE, (m.commands, m.scripts, m.pages)
    # Batching must not slow the crawl down much: the ideal is pages x delay / (instances x concurrency).
    ideal = 120 * 0.2 / (instances * 8)
    assert m.seconds < ideal + 6, (m.seconds, ideal)


def test_pacing_caps_the_batch_delay_and_jitters_the_idle_backoff() -> None:
    config = RedisCrawlConfig.from_settings(Settings({**DEFAULTS, "WFCRAWL_REDIS_LEASE_TTL": 3.0}))
    assert config.batch_delay == 0.5  # TTL/6: a waiting release never outlives its lease
    pacer = Pacer(RedisCrawlConfig.from_settings(Settings(DEFAULTS)), random.Random(7))
    assert (pacer.batch_delay, pacer.low) == (1.0, 1)
    pacer.buffered(10.0)
    assert [pacer.flush_due(t, 3, queue_empty=False) for t in (10.5, 11.0)] == [False, True]
    assert pacer.flush_due(10.11, 3, queue_empty=True)  # others may be waiting for these requests
    assert pacer.flush_due(10.0, MAX_BATCH, queue_empty=False)
    pacer.sent()
    assert not pacer.flush_due(99.0, 0, queue_empty=False)
    waits = []
    for _ in range(6):
        pacer.found_nothing(0.0)
        waits.append(pacer._next_poll)
    bases = [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert all(0.75 * base <= w <= 1.25 * base for w, base in zip(waits, bases, strict=True)), waits
    assert len(set(waits[3:])) == 3  # jittered: idle instances do not poll in lockstep
    pacer.found(2)
    pacer.found_nothing(0.0)
    assert pacer._next_poll <= 0.125 and not pacer.poll_due(0.0) and pacer.poll_due(0.125)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a Scrapy setting for every instance")
    args = parser.parse_args(argv)
    extra = tuple(x for s in args.set for x in ("-s", s))
    rows = []
    for r in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="wfcrawl-pacing-") as tmp:
            m = measure(Path(tmp), pages=args.pages, delay=args.delay, concurrency=args.concurrency,
                        instances=args.instances, extra=extra, run=f"run{r}")
        twice = sum(n - 1 for n in m.fetched.values())
        rows.append((m.commands_per_page, m.scripts_per_page, m.seconds))
        print(f"run {r + 1}: {m.pages} pages, {m.commands} commands ({m.commands_per_page:.2f}/page), "
              f"{m.scripts} Lua calls ({m.scripts_per_page:.2f}/page), {m.seconds:.1f} s, "
              f"fetched twice {twice}", flush=True)
    ideal = args.pages * args.delay / (args.instances * args.concurrency)
    print(f"median: {statistics.median(r[0] for r in rows):.2f} commands/page, "
          f"{statistics.median(r[1] for r in rows):.2f} Lua calls/page, "
          f"{statistics.median(r[2] for r in rows):.1f} s (ideal {ideal:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
