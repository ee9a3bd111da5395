#!/usr/bin/env python3
"""Fleet benchmark: N crawl instances share one crawl of a latency-bound site (needs root).

For each N of ``--instances``, a fleet of ``tests/fleet.py`` (the one the fleet tests
use): a bridge and one network namespace per instance, a private redis-server and a
private PgBouncer in front of a private PostgreSQL, and the generated site of
``tests/fleet_site.py`` whose pages answer after ``--latency`` seconds. Every instance
is ``scrapy crawl workflow`` with the Redis scheduler and the PostgreSQL pipeline
(``CONCURRENT_REQUESTS = --concurrency``), so an instance is bound by the site's latency
and what is measured is the coordination: Redis, PgBouncer, the end of the crawl.

Reported per N:

- pages/s (site's first request to its last answer) against the ideal
  ``N x concurrency / latency`` (or ``1 / politeness`` when a per-domain delay is set):
  scaling efficiency; also in steady state (from the moment the last instance to start
  asked for its first page: start-up excluded; none when that window is under 5 s);
- Redis commands per page (``INFO commandstats``: every command, those run by the Lua
  scripts included, minus the benchmark's own) and Redis CPU per page (``INFO cpu``);
- client connections per instance, at their peak: Redis (``CLIENT LIST``) and PgBouncer
  (``SHOW CLIENTS``);
- seconds from the last page answered to every instance exited;
- exact items: products missing from and duplicate rows in PostgreSQL against the site's
  ground truth; the execution's status;
- peak RSS per instance (median and largest), and the start-up spread (launch of all to
  the first request of the last instance to ask);
- with ``--politeness``: the smallest gap between two requests at the site and the gaps
  under the delay minus 50 ms, for the whole run and in steady state.

    sudo .venv/bin/python bench/fleet_bench.py --instances 1,10,50,100 --latency 0.2 --concurrency 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fleet import Fleet, missing_tools  # noqa: E402

#: The fleet-wide delay's tolerance (docs/distributed.md).
TOLERANCE = 0.05


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Probe:
    """Redis and PgBouncer, as seen from outside the fleet."""

    def __init__(self, fleet: Fleet) -> None:
        import psycopg2

        self.redis = fleet.redis.client()
        self.bouncer = psycopg2.connect(host=fleet.pgbouncer.host, port=fleet.pgbouncer.port, dbname="pgbouncer",
                                        user="postgres")
        self.bouncer.autocommit = True
        self.own_commands = 0  # commands this probe sent to Redis (not the fleet's)

    def commands(self) -> int:
        self.own_commands += 1
        return sum(int(v["calls"]) for v in self.redis.info("commandstats").values())

    def cpu(self) -> float:
        self.own_commands += 1
        info = self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def redis_clients(self) -> int:
        self.own_commands += 1
        return len(self.redis.client_list()) - 1  # this probe's own

    def bouncer_clients(self) -> int:
        with self.bouncer.cursor() as cur:
            cur.execute("SHOW CLIENTS")
            return len(cur.fetchall()) - 1  # this probe's own

    def close(self) -> None:
        self.redis.close()
        self.bouncer.close()


def run(n: int, args: argparse.Namespace) -> dict[str, Any]:
    products = args.products or max(300, min(100 * n, 5000))
    with tempfile.TemporaryDirectory(prefix="wfcrawl-fleet-bench-") as tmp, Fleet(
        Path(tmp), instances=n, products=products, latency=args.latency, delay=args.politeness,
        concurrency=args.concurrency, pg_max_connections=200, pool_size=40,
    ) as fleet:
        probe = Probe(fleet)
        commands0, cpu0 = probe.commands(), probe.cpu()
        extra = ["-s", f"WFCRAWL_EXECUTIONS_INTERVAL={args.stats_interval}", "-s", "LOG_LEVEL=INFO"]
        for setting in args.setting:
            extra += ["-s", setting]
        launched = time.monotonic()
        for i in range(n):
            fleet.launch(i, *extra)
        exited: dict[int, float] = {}
        rss: dict[int, float] = {}
        peak_redis = peak_bouncer = 0
        while len(exited) < n:
            now = time.monotonic()
            if now - launched > args.timeout:
                raise SystemExit(f"N={n}: not finished after {args.timeout} s")
            for i, proc in enumerate(fleet.procs):
                assert proc is not None
                if i in exited:
                    continue
                if proc.popen.poll() is not None:
                    exited[i] = now
                else:
                    rss[i] = max(rss.get(i, 0.0), rss_mb(proc.pid))
            peak_redis = max(peak_redis, probe.redis_clients())
            peak_bouncer = max(peak_bouncer, probe.bouncer_clients())
            time.sleep(0.5)
        commands = probe.commands() - commands0 - probe.own_commands + 1
        cpu = probe.cpu() - cpu0
        outs = [proc.wait(10) for proc in fleet.procs if proc is not None]
        hits = fleet.site.log()
        first_by_instance: dict[int, float] = {}
        for hit in hits:
            first_by_instance.setdefault(fleet.instance_of(hit.client), hit.time)
        pages = len(hits)
        start, last = hits[0].time, hits[-1].time + args.latency
        rate = pages / (last - start)
        # Steady state: once every instance had asked for its first page (start-up excluded).
        all_started = max(first_by_instance.values())
        steady_pages = sum(1 for h in hits if h.time >= all_started)
        steady = steady_pages / (last - all_started) if last - all_started >= 5 else None
        ideal = n * args.concurrency / args.latency
        if args.politeness > 0:
            ideal = min(ideal, 1 / args.politeness)
        rows = fleet.products()
        truth = fleet.site.truth()
        gaps = [b.time - a.time for a, b in itertools.pairwise(hits)]
        steady_gaps = [b.time - a.time for a, b in itertools.pairwise(hits) if a.time >= all_started]
        status = fleet.execution()[0]
        probe.close()
        result = {
            "instances": n, "products": products, "pages": pages, "fetched_twice": pages - len({h.path for h in hits}),
            "pages_per_s": round(rate, 1), "ideal_pages_per_s": round(ideal, 1),
            "efficiency": round(rate / ideal, 3),
            "steady_pages_per_s": round(steady, 1) if steady else None,
            "steady_efficiency": round(steady / ideal, 3) if steady else None,
            "redis_commands_per_page": round(commands / pages, 2),
            "redis_cpu_ms_per_page": round(cpu * 1000 / pages, 3),
            "redis_clients_per_instance": round(peak_redis / n, 2),
            "pgbouncer_clients_per_instance": round(peak_bouncer / n, 2),
            "last_page_to_all_exited_s": round(max(exited.values()) - last, 2),
            "startup_spread_s": round(max(first_by_instance.values()) - launched, 2),
            "instances_that_fetched": len(first_by_instance),
            "missing": len(truth - set(rows)), "duplicate_rows": len(rows) - len(set(rows)),
            "execution": status, "exit_codes": dict(Counter(o.returncode for o in outs)),
            "rss_mb_median": round(statistics.median(rss.values()), 1), "rss_mb_max": round(max(rss.values()), 1),
            "min_gap_s": round(min(gaps), 4) if gaps else None,
            # With a per-domain delay: gaps under delay - 50 ms (the documented tolerance), all / steady.
            "gaps_under_tolerance": sum(1 for g in gaps if g < args.politeness - TOLERANCE),
            "steady_min_gap_s": round(min(steady_gaps), 4) if steady_gaps else None,
            "steady_gaps_under_tolerance": sum(1 for g in steady_gaps if g < args.politeness - TOLERANCE),
        }
        log(json.dumps(result))
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", default="1,10,50,100", help="comma-separated fleet sizes")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds every page takes to answer")
    parser.add_argument("--concurrency", type=int, default=2, help="CONCURRENT_REQUESTS per instance")
    parser.add_argument("--politeness", type=float, default=0.0,
                        help="per-domain delay (workflow rate_limit.delay, fleet-wide); 0: none")
    parser.add_argument("--products", type=int, default=0,
                        help="site size (default: 100 x N products, at least 300, at most 5,000)")
    parser.add_argument("--stats-interval", type=float, default=5.0, help="WFCRAWL_EXECUTIONS_INTERVAL")
    parser.add_argument("--setting", action="append", default=[], help="NAME=VALUE for every instance")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        raise SystemExit(f"fleet_bench needs {', '.join(missing)} (tools/test-services.sh installs the tools)")
    results = [run(int(n), args) for n in args.instances.split(",")]
    columns = [
        ("N", "instances"), ("pages", "pages"), ("pages/s", "pages_per_s"), ("ideal", "ideal_pages_per_s"),
        ("efficiency", "efficiency"), ("steady pages/s", "steady_pages_per_s"),
        ("steady efficiency", "steady_efficiency"), ("Redis cmds/page", "redis_commands_per_page"),
        ("Redis CPU ms/page", "redis_cpu_ms_per_page"), ("Redis conns/inst", "redis_clients_per_instance"),
        ("PgBouncer conns/inst", "pgbouncer_clients_per_instance"),
        ("last page -> all exited (s)", "last_page_to_all_exited_s"), ("start-up spread (s)", "startup_spread_s"),
        ("missing", "missing"), ("dup rows", "duplicate_rows"), ("fetched twice", "fetched_twice"),
        ("execution", "execution"), ("RSS/inst MB (median, max)", "rss"),
        ("min gap (s), all / steady", "gap"), ("gaps < delay - 50 ms, all / steady", "under"),
    ]
    print("| " + " | ".join(c for c, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for r in results:
        r = {**r, "rss": f"{r['rss_mb_median']}, {r['rss_mb_max']}",
             "gap": f"{r['min_gap_s']} / {r['steady_min_gap_s']}",
             "under": f"{r['gaps_under_tolerance']} / {r['steady_gaps_under_tolerance']}"}
        print("| " + " | ".join(str(r[k]) for _, k in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["missing"] == r["duplicate_rows"] == 0 and r["execution"] == "succeeded" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
