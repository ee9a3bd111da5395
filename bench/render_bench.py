#!/usr/bin/env python3
"""Rendered pages per second and browser memory over a long rendered crawl.

Serves ``tests/sites/js/bench.html`` (a page whose heading and 20 rows exist only
after its script fetched JSON and built them) with the test suite's MockServer,
and crawls ``--pages`` distinct URLs of it (``?n=1..N``) with a workflow whose
phase renders, as a ``scrapy crawl`` child process. While it runs, every 0.5 s it
samples the memory of the crawl's process tree from /proc: the Chromium processes
(PSS summed: shared pages counted once), the Playwright driver, and the crawl
itself, and records how many pages the browser had requested by then. At the end
it checks that every page produced its exact item, and prints pages/s, peak
browser memory and browser memory after each fifth of the pages (a leak shows as
a rising line). ``--plain`` also crawls the same URLs without rendering (Scrapy's
HTTP path) for comparison.

    .venv/bin/python bench/render_bench.py [--pages 500] [--concurrency 4] [--plain] [--json out.json]

Needs Chromium (Debian: apt-get install chromium) and scrapy-playwright.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mockserver import MockServer  # noqa: E402

MIB = 1024 * 1024


def workflow(pages: int, render: bool) -> dict[str, Any]:
    phase: dict[str, Any] = {
        "nodes": [{
            "type": "extract", "item": "page",
            "fields": {
                "title": {"css": "h1.title::text", "required": True},
                "rows": {"xpath": "count(//li[@class='row'])", "type": "int"},
            },
        }],
    }
    if render:
        phase["render"] = {"wait_for": "li.row"}
    return {
        "name": "renderbench",
        "obey_robots": False,
        "start_urls": [f"/js/bench.html?n={n}" for n in range(1, pages + 1)],
        "phases": {"page": phase},
    }


# ---------------------------------------------------------------- /proc sampling


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def sample(pid: int) -> dict[str, int]:
    """PSS of the crawl (python), the Playwright driver (node) and Chromium (all processes)."""
    out = {"crawl": _pss(pid), "driver": 0, "browser": 0, "browser_processes": 0}
    for child in _descendants(pid):
        cmd = _cmd(child)
        if "chrom" in cmd.split(" ", 1)[0]:
            out["browser"] += _pss(child)
            out["browser_processes"] += 1
        elif "node" in cmd.split(" ", 1)[0] or "playwright" in cmd:
            out["driver"] += _pss(child)
    return out


# ---------------------------------------------------------------- one crawl


def crawl(server: MockServer, pages: int, render: bool, concurrency: int, workdir: Path) -> dict[str, Any]:
    doc = workdir / f"workflow-{'render' if render else 'plain'}.yaml"
    doc.write_text(yaml.safe_dump(workflow(pages, render), sort_keys=False))
    items_file, stats_file = workdir / "items.jsonl", workdir / "stats.json"
    cmd = [
        sys.executable, "-m", "scrapy", "crawl", "workflow", "-a", f"workflow={doc}", "-a", f"base_url={server.url}",
        "-O", f"{items_file}:jsonlines", "-s", f"WFCRAWL_STATS_FILE={stats_file}", "-s", "LOG_LEVEL=WARNING",
        "-s", f"WFCRAWL_RENDER_CONCURRENCY={concurrency}",
    ]
    server.clear()
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read() if proc.stderr else ""))
    reader.start()
    while proc.poll() is None:
        done = sum(1 for r in server.requests if r.path.startswith("/js/bench.html"))
        samples.append({"t": round(time.monotonic() - started, 2), "pages_requested": done, **sample(proc.pid)})
        time.sleep(0.5)
    wall = time.monotonic() - started
    reader.join()
    if proc.returncode != 0:
        raise SystemExit(f"crawl failed ({proc.returncode}):\n{''.join(stderr)[-3000:]}")
    stats = json.loads(stats_file.read_text())
    items = [json.loads(line) for line in items_file.read_text().splitlines()]
    got = sorted((i.get("title"), i.get("rows")) for i in items)
    expected = sorted((f"Page {n}", 20) for n in range(1, pages + 1)) if render else []
    if render and got != expected:
        raise SystemExit(f"wrong items: {len(items)} items, first differences {sorted(set(got) ^ set(expected))[:5]}")
    if not render and items:
        raise SystemExit(f"a plain crawl of the bench page found {len(items)} items (expected none)")
    elapsed = float(stats["elapsed_time_seconds"])
    result: dict[str, Any] = {
        "mode": "rendered" if render else "plain",
        "pages": pages,
        "concurrency": concurrency if render else None,
        "items": len(items),
        "wall_s": round(wall, 2),
        "crawl_s": round(elapsed, 2),
        "pages_per_s": round(pages / elapsed, 1),
        "crawl_rss_max_mib": round(stats.get("memusage/max", 0) / MIB, 1),
    }
    if render:
        browser = [s for s in samples if s["browser_processes"]]
        result["browser_pss_peak_mib"] = round(max(s["browser"] for s in browser) / MIB, 1)
        result["browser_processes_peak"] = max(s["browser_processes"] for s in browser)
        result["driver_pss_peak_mib"] = round(max(s["driver"] for s in samples) / MIB, 1)
        # Browser memory once each fifth of the pages had been requested (the first sample past it).
        marks = {}
        for fifth in range(1, 6):
            threshold = pages * fifth // 5
            at = next((s for s in browser if s["pages_requested"] >= threshold), browser[-1])
            marks[str(threshold)] = round(at["browser"] / MIB, 1)
        result["browser_pss_mib_after_pages"] = marks
        result["pages_closed"] = (stats.get("playwright/page_count"), stats.get("playwright/page_count/closed"))
        if result["pages_closed"][0] != result["pages_closed"][1]:
            raise SystemExit(f"pages opened/closed differ: {result['pages_closed']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4, help="WFCRAWL_RENDER_CONCURRENCY")
    parser.add_argument("--plain", action="store_true", help="also crawl the same URLs without rendering")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = []
    with MockServer() as server, tempfile.TemporaryDirectory() as tmp:
        results.append(crawl(server, args.pages, True, args.concurrency, Path(tmp)))
        if args.plain:
            results.append(crawl(server, args.pages, False, args.concurrency, Path(tmp)))
    for r in results:
        print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
