#!/usr/bin/env python3
"""Benchmark of the distributed (Redis) scheduler against Scrapy's in-memory one.

On the generated benchmark shop (bench/gensite.py, served by nginx), with a
private redis-server on a unix socket (so its command counts are ours alone):

  memory   one process, Scrapy's in-memory scheduler (no REDIS_URL)
  redis    one process, REDIS_URL set (scrapy-redis + wfcrawl's leased queue)
  redis x2 two processes sharing one crawl (same execution id)

runs interleaved (memory, redis, memory, redis, ...), then the 2-process runs.
Throughput is pages / crawl time, the crawl time from the processes' stats
(spider opened -> closed; for two processes: first start -> last finish), so
interpreter start-up is not counted. Each run must produce every product once.

Redis cost per page: round trips (client calls: one EVALSHA each) and commands
executed by the server (from INFO commandstats, including the commands the Lua
scripts run). Then the dupefilter's memory at 1M URLs (set and Bloom modes) and
a queued request's memory.

    .venv/bin/python bench/redis_bench.py [--products 2000] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import gensite  # noqa: E402
from common import scrapy_cli_args  # noqa: E402
from server import NginxServer  # noqa: E402

WORKFLOW = BENCH / "shop.yaml"
CACHE = BENCH / ".cache" / "redis-bench"
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class PrivateRedis:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wfcrawl-redis-bench-"))
        self.socket = self.dir / "redis.sock"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(self.socket), "--dir", str(self.dir),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        import redis

        self.url = f"unix://{self.socket}?db=0"
        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def cpu(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def commands(self) -> int:
        """Commands executed so far (all kinds), less the INFO calls made to read this."""
        stats = self.client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def ensure_site(products: int) -> Path:
    root = CACHE / f"site-v{gensite.GENERATOR_VERSION}-n{products}"
    stamp = CACHE / f"site-v{gensite.GENERATOR_VERSION}-n{products}.done"
    if not stamp.is_file():
        log(f"generating site: {products} products ...")
        gensite.generate(root, products)
        stamp.write_text("ok\n")
    return root


def _time(stats: dict[str, Any], key: str) -> float:
    return datetime.fromisoformat(str(stats[key])).timestamp()


def crawl(base_url: str, work: Path, processes: int, redis_url: str | None, *extra: str) -> dict[str, Any]:
    execution_id = uuid.uuid4().hex[:12]
    procs = []
    for i in range(processes):
        stats_file = work / f"stats-{i}.json"
        items_file = work / f"items-{i}.jsonl"
        for f in (stats_file, items_file):
            f.unlink(missing_ok=True)
        cmd = [PYTHON, "-m", "scrapy", "crawl", "workflow", "-a", f"workflow={WORKFLOW}",
               "-a", f"base_url={base_url}", "-a", f"execution_id={execution_id}",
               "-O", f"{items_file}:jsonlines", "-s", f"WFCRAWL_STATS_FILE={stats_file}",
               "-s", "WFCRAWL_SUMMARY_ENABLED=False", *scrapy_cli_args(), *extra]
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        if redis_url:
            env["REDIS_URL"] = redis_url
        log_file = work / f"log-{i}.txt"
        with log_file.open("wb") as err:
            procs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err),
                          stats_file, items_file, log_file))
    stats, items, cpu = [], 0, 0.0
    for proc, stats_file, items_file, log_file in procs:
        # wait4: the child's own CPU time, a figure the other load on the machine barely moves
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        if proc.returncode != 0 or not stats_file.exists():
            raise RuntimeError(f"crawl failed ({proc.returncode}):\n{log_file.read_text()[-3000:]}")
        stats.append(json.loads(stats_file.read_text()))
        items += sum(1 for _ in items_file.open())
    pages = sum(int(s.get("response_received_count", 0)) for s in stats)
    seconds = max(_time(s, "finish_time") for s in stats) - min(_time(s, "start_time") for s in stats)
    return {
        "pages": pages, "items": items, "seconds": seconds, "pages_per_s": pages / seconds,
        "cpu_ms_per_page": cpu * 1000 / pages,
        "round_trips": sum(int(s.get("wfcrawl/redis/calls", 0)) for s in stats),
        "pages_by_process": [int(s.get("response_received_count", 0)) for s in stats],
    }


def dupefilter_memory(redis: PrivateRedis, urls: int) -> dict[str, float]:
    from wfcrawl.distributed.config import BloomSize

    client = redis.client
    client.flushall()
    pipe = client.pipeline(transaction=False)
    for i in range(urls):
        pipe.sadd("set", secrets.token_bytes(20))  # a Scrapy fingerprint: 20 bytes
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    set_bytes = int(client.memory_usage("set", samples=0))
    size = BloomSize.for_capacity(urls, 0.001)
    client.execute_command("BITFIELD", "bloom", "SET", "u1", size.bits - 1, 1)  # full size at once
    bloom_bytes = int(client.memory_usage("bloom", samples=0))
    client.flushall()
    return {"set_bytes_per_url": set_bytes / urls, "bloom_bytes_per_url": bloom_bytes / urls,
            "bloom_bits": size.bits, "bloom_hashes": size.hashes}


def queue_memory(redis: PrivateRedis, n: int = 10_000) -> float:
    from scrapy import Request, Spider

    from wfcrawl.distributed import serializer
    from wfcrawl.distributed.config import Keys
    from wfcrawl.distributed.ops import LeaseStore, Push, SyncBatch

    class S(Spider):
        name = "workflow"

        def parse(self, response: Any) -> None: ...

        def on_error(self, failure: Any) -> None: ...

    spider, keys = S(), Keys.for_run("bench", "shop", "q")
    store = LeaseStore(redis.client, keys, instance="bench", lease_ttl=30)
    meta = {"wfcrawl_phase": "product", "wfcrawl_marker": "product", "wfcrawl_markers": ["start", "category",
            "product"], "wfcrawl_depth": 3, "depth": 3}
    pushes = [Push(0, (secrets.token_bytes(20),), serializer.dumps(Request(
        f"http://127.0.0.1:8080/product/{i:06d}-some-product-name.html", callback=spider.parse,
        errback=spider.on_error, meta=meta).to_dict(spider=spider))) for i in range(n)]
    store.sync(SyncBatch(pushes=pushes), "t")
    used = sum(int(redis.client.memory_usage(k, samples=0)) for k in (keys.queue, keys.data))
    redis.client.flushall()
    return used / n


PICKUP_WORKFLOW = """\
name: pickup
start_urls: [/index]
obey_robots: false
phases:
  index:
    nodes:
      - {type: extract_links, css: a, marker: page}
    transitions:
      - {marker: page, to: page}
  page:
    nodes:
      - {type: extract, item: page, fields: {n: {css: p, type: int}}}
"""


def pickup_latency(redis: PrivateRedis, work: Path, index_delay: float = 4.0) -> float:
    """Seconds from the moment instance A gets the start page (30 links) to the first
    request of instance B, idle until then (A takes one request at a time)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    log: list[tuple[float, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/index":
                time.sleep(index_delay)  # B starts and goes idle meanwhile
                body = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(30))
            else:
                body = f"<p>{self.path.rsplit('/', 1)[-1]}</p>"
                time.sleep(0.2)
            log.append((time.monotonic(), self.path, self.headers.get("User-Agent", "")))
            data = f"<html><body>{body}</body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    workflow = work / "pickup.yaml"
    workflow.write_text(PICKUP_WORKFLOW)
    execution_id = uuid.uuid4().hex[:12]
    env = {**os.environ, "REDIS_URL": redis.url}
    procs = []
    try:
        for name, extra in (("A", ["-s", "CONCURRENT_REQUESTS=1", "-s", "WFCRAWL_REDIS_PREFETCH=0"]), ("B", [])):
            procs.append(subprocess.Popen(
                [PYTHON, "-m", "scrapy", "crawl", "workflow", "-a", f"workflow={workflow}",
                 "-a", f"base_url=http://127.0.0.1:{httpd.server_port}", "-a", f"execution_id={execution_id}",
                 "-s", f"USER_AGENT={name}", "-s", "LOG_LEVEL=WARNING", *extra],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.0)  # A first: it must be the one that takes the start page
        for proc in procs:
            proc.wait(timeout=120)
    finally:
        httpd.shutdown()
    index_done = next(t for t, path, _ in log if path == "/index")
    # B's first request was sent before the server logged it (0.2 s later).
    first_b = min(t for t, path, ua in log if ua == "B") - 0.2
    return first_b - index_done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--urls", type=int, default=1_000_000, help="URLs for the dupefilter memory figures")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    site = ensure_site(args.products)
    expected = len(gensite.expected_items(args.products))
    redis = PrivateRedis()
    work = Path(tempfile.mkdtemp(prefix="wfcrawl-redis-bench-work-"))
    results: dict[str, list[dict[str, Any]]] = {"memory": [], "redis": [], "redis x2": []}
    try:
        with NginxServer(site, access_log=False) as nginx:
            plan = [("memory", 1, None), ("redis", 1, redis.url)] * args.runs + [("redis x2", 2, redis.url)] * args.runs
            for name, processes, url in plan:
                before, cpu_before = redis.commands(), redis.cpu()
                run = crawl(nginx.base_url, work, processes, url)
                run["server_commands"] = redis.commands() - before if url else 0
                run["redis_cpu_ms_per_page"] = (redis.cpu() - cpu_before) * 1000 / run["pages"] if url else 0
                if run["items"] != expected:
                    raise RuntimeError(f"{name}: {run['items']} items, expected {expected}")
                results[name].append(run)
                log(f"{name:9s} {run['pages']:6d} pages {run['seconds']:6.2f} s {run['pages_per_s']:7.1f} pages/s "
                    f"cpu {run['cpu_ms_per_page']:.2f} ms/page "
                    f"round trips/page {run['round_trips'] / run['pages']:.3f} "
                    f"server commands/page {run['server_commands'] / run['pages']:.2f} "
                    f"split {run['pages_by_process']}")
        pickups = [pickup_latency(redis, work) for _ in range(3)]
        log(f"pickup latency of an idle instance: {[round(p, 3) for p in pickups]} s")
        memory = dupefilter_memory(redis, args.urls)
        per_request = queue_memory(redis)
    finally:
        redis.close()
        shutil.rmtree(work, ignore_errors=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    def per_page(name: str, key: str) -> float:
        return statistics.median(r[key] / r["pages"] for r in results[name])

    def per_page_value(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    summary = {
        "products": args.products, "runs": args.runs,
        "pages_per_s": {name: median(name, "pages_per_s") for name in results},
        "redis_vs_memory": median("redis", "pages_per_s") / median("memory", "pages_per_s"),
        # Adjacent runs see about the same background load: their ratio is steadier.
        "redis_vs_memory_paired": statistics.median(
            r["pages_per_s"] / m["pages_per_s"] for r, m in zip(results["redis"], results["memory"], strict=True)),
        "cpu_redis_vs_memory_paired": statistics.median(
            r["cpu_ms_per_page"] / m["cpu_ms_per_page"] for r, m in zip(results["redis"], results["memory"], strict=True)),
        "cpu_ms_per_page": {name: median(name, "cpu_ms_per_page") for name in results},
        "redis_server_cpu_ms_per_page": {n: per_page_value(n, "redis_cpu_ms_per_page") for n in ("redis", "redis x2")},
        "two_vs_one": median("redis x2", "pages_per_s") / median("redis", "pages_per_s"),
        "round_trips_per_page": {n: per_page(n, "round_trips") for n in ("redis", "redis x2")},
        "server_commands_per_page": {n: per_page(n, "server_commands") for n in ("redis", "redis x2")},
        "idle_pickup_s": statistics.median(pickups),
        "dupefilter_at": args.urls, **memory, "queued_request_bytes": per_request,
        "runs_detail": results,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs_detail"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
