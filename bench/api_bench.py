#!/usr/bin/env python3
"""The launch API under load: requests/s and latency of ``wfcrawl serve`` at N concurrent clients.

Starts the real ``wfcrawl serve`` command (``python -m wfcrawl.cli serve --port 0``) as a
child process, seeds it with executions, then runs each scenario at each concurrency:
N client coroutines (aiohttp, one keep-alive connection each, or a new connection per
request with ``--new-connections``) send requests back to back for ``--duration``
seconds after a warm-up. Reported per run: requests/s (answers received within the
measured window), and for the requests sent within it: how many were answered, latency
p50/p99/max, answers by status, and the failures a client sees (connection reset or
refused, time-out after ``--timeout`` s); and the clients that got no answer at all
within the window ("starved": stuck connecting, or waiting behind others).

Scenarios (``--only``):

``launch``    ``POST /v1/executions`` with the bench's workflow document and an
              ``execution_id`` that already exists: the whole launch path (API key, rate
              limit, body, validation and compilation of the document, SSRF check of its
              start URLs, the idempotent create in the store) except starting a process
              (answered 200, ``started: false``).
``validate``  ``POST /v1/validate`` with the same document (validation only).
``list``      ``GET /v1/executions`` (the seeded executions, newest first).

    .venv/bin/python bench/api_bench.py [--concurrency 50,200] [--duration 10] [--only launch,validate,list]
                                        [--store default|memory|sqlite|postgres] [--new-connections]
                                        [--source DIR] [--json out.json]

``--source DIR`` runs the server of another checkout (its ``wfcrawl`` package is imported
from DIR: how the figures "before" were measured). The server runs with rate limits off
(``WFCRAWL_API_RATE_LIMIT=0``) and room for every concurrent launch
(``WFCRAWL_LAUNCHER_MAX_CRAWLS=1000``); ``--store postgres`` uses a database of its own
(created and dropped) on ``--dsn``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEY = "wfk_bench-key-0123456789abcdefghijklmnopqrstuvwxyz01"
SEEDS = 20
DOCUMENT = (ROOT / "workflows" / "shop.yaml").read_text()
#: Nothing listens there: the seeded crawls fail at once (the launch path is what is measured).
BASE_URL = "http://127.0.0.1:9"


def start_server(source: Path, store: str, dsn: str, work: Path) -> tuple[subprocess.Popen[str], str]:
    settings = {
        "WFCRAWL_API_KEYS": f"bench:{hashlib.sha256(KEY.encode()).hexdigest()}",
        "WFCRAWL_API_RATE_LIMIT": "0",
        "WFCRAWL_LAUNCHER_MAX_CRAWLS": "1000",
        "WFCRAWL_LAUNCHER_WORKDIR": str(work / "executions"),
        "WFCRAWL_LAUNCHER_WORKFLOWS_DIR": str(work / "workflows"),
        "WFCRAWL_LAUNCHER_FORWARD_LOGS": "False",
        "WFCRAWL_LAUNCHER_POLL_INTERVAL": "0.2",
        "WFCRAWL_SSRF_ALLOWED_NETWORKS": "127.0.0.0/8",
        "LOG_LEVEL": "WARNING",
    }
    if store == "postgres":
        settings["DATABASE_URL"] = dsn
    elif store == "sqlite":
        settings["WFCRAWL_SQLITE_PATH"] = str(work / "executions.sqlite3")
    elif store == "memory":
        settings["WFCRAWL_SQLITE_PATH"] = ""
    argv = [sys.executable, "-m", "wfcrawl.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    for name, value in settings.items():
        argv += ["-s", f"{name}={value}"]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = subprocess.Popen(argv, cwd=source, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if " listening on " not in line:
        proc.kill()
        raise SystemExit(f"api_bench: the server did not start: {line!r}")
    return proc, line.split(" listening on ", 1)[1].strip()


def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as resp:
        return resp.status, json.loads(resp.read())


def seed(url: str) -> None:
    """SEEDS executions (their crawls fail at once: nothing listens at BASE_URL), all final."""
    for i in range(SEEDS):
        call("POST", url + "/v1/executions", launch_body(i))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = call("GET", url + "/v1/executions?limit=1000")[1]["executions"]
        if len(found) == SEEDS and all(e["status"] in ("finished", "failed", "cancelled") for e in found):
            return
        time.sleep(0.5)
    raise SystemExit("api_bench: the seeded crawls did not end within 300 s")


def launch_body(i: int = 0) -> dict[str, Any]:
    return {"document": DOCUMENT, "args": {"base_url": BASE_URL}, "execution_id": f"bench-seed-{i}"}


SCENARIOS: dict[str, tuple[str, str, Any, int]] = {
    # name: (method, path, JSON body, the status every answer must have)
    "launch": ("POST", "/v1/executions", launch_body(), 200),
    "validate": ("POST", "/v1/validate", {"document": DOCUMENT}, 200),
    "list": ("GET", "/v1/executions", None, 200),
}


async def load(url: str, scenario: str, clients: int, duration: float, warmup: float, timeout: float,
               new_connections: bool) -> dict[str, Any]:
    import aiohttp

    method, path, body, expected = SCENARIOS[scenario]
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {KEY}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    # (start, end, status) of every request: throughput counts the answers that came
    # within the measured window (whenever they were sent), latency is that of every
    # request sent within it (one still waiting when the window closes is awaited).
    answers: list[tuple[float, float, int]] = []
    failures: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=clients, force_close=new_connections)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    t0 = time.monotonic()
    measure_from, stop_at = t0 + warmup, t0 + warmup + duration

    served: Counter[int] = Counter()  # answers received within the window, per client

    async def worker(session: aiohttp.ClientSession, client: int) -> None:
        while (start := time.monotonic()) < stop_at:
            try:
                async with session.request(method, url + path, data=data, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except asyncio.TimeoutError:
                if start >= measure_from:
                    failures["timeout"] += 1
                continue
            except aiohttp.ClientError as exc:
                if start >= measure_from:
                    failures[_failure(exc)] += 1
                await asyncio.sleep(0.01)  # as a client would before it retries
                continue
            end = time.monotonic()
            answers.append((start, end, status))
            if measure_from <= end <= stop_at:
                served[client] += 1

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        await asyncio.gather(*(worker(session, i) for i in range(clients)))
    sent = [(start, end, status) for start, end, status in answers if start >= measure_from]
    latencies = sorted(end - start for start, end, _ in sent)
    statuses = Counter(status for _, _, status in sent)
    in_window = sum(1 for _, end, _ in answers if measure_from <= end <= stop_at)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "scenario": scenario, "clients": clients, "answered": len(latencies),
        "rps": in_window / duration, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "unexpected": sum(n for s, n in statuses.items() if s != expected),
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "failures": dict(sorted(failures.items())),
        # Clients that got no answer at all within the window (stuck connecting or waiting).
        "starved": clients - len(served),
    }


def _failure(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".lower()
    if "reset" in text or "disconnected" in text or "broken pipe" in text:
        return "reset"
    if "refused" in text:
        return "refused"
    return type(exc).__name__


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrency", default="50,200")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--only", default="launch,validate,list")
    parser.add_argument("--store", choices=("default", "memory", "sqlite", "postgres"), default="default")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--new-connections", action="store_true", help="a new connection per request")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout whose server runs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    database = None
    dsn = args.dsn
    if args.store == "postgres":
        import psycopg2

        database = f"api_bench_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(args.dsn)
        admin.autocommit = True
        admin.cursor().execute(f'CREATE DATABASE "{database}"')
        dsn = args.dsn.rsplit("/", 1)[0] + f"/{database}"
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
            proc, url = start_server(args.source.resolve(), args.store, dsn, Path(tmp))
            try:
                seed(url)
                for scenario in args.only.split(","):
                    for clients in (int(c) for c in args.concurrency.split(",")):
                        print(f"api_bench: {scenario} at {clients} clients ...", file=sys.stderr)
                        results.append(asyncio.run(load(url, scenario, clients, args.duration, args.warmup,
                                                        args.timeout, args.new_connections)))
            finally:
                proc.terminate()
                proc.wait(30)
    finally:
        if database is not None:
            admin.cursor().execute(f'DROP DATABASE "{database}" WITH (FORCE)')
            admin.close()
    print(report(results, args))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2))
    return 0


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"`wfcrawl serve` from {args.source.resolve().name}, store {args.store}, "
        f"{'a new connection per request' if args.new_connections else 'keep-alive connections'}, "
        f"{args.duration:g} s per run; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load_avg:.1f} at the end",
        "",
        "| scenario | clients | requests/s | answered | p50 ms | p99 ms | max ms | statuses | 5xx | failures | starved clients |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|",
    ]
    for r in results:
        statuses = ", ".join(f"{s}: {n}" for s, n in r["statuses"].items())
        failures = ", ".join(f"{k}: {n}" for k, n in r["failures"].items()) or "0"
        lines.append(f"| {r['scenario']} | {r['clients']} | {r['rps']:.0f} | {r['answered']} | {r['p50_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {r['max_ms']:.0f} | {statuses} | {r['server_errors']} | {failures} | "
                     f"{r['starved']} |")
    lines.append("")
    lines.append(f"median requests/s over the runs: {statistics.median(r['rps'] for r in results):.0f}"
                 if results else "no runs")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
