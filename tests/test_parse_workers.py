"""Parse workers (WFCRAWL_PARSE_WORKERS): the same crawl outcome as parsing in the
crawl process, and no page lost when a worker dies.

End to end: crawls run twice, without and with workers, and must give the same
items and the same wfcrawl stats. The pool itself is tested in this process
against real worker processes: killed while holding pages, replaced, given up.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Crawl, run_crawl, stat_items
from tests.mockserver import MockServer
from tests.test_crawl_robustness import BROKEN, REQUIRED
from tests.test_crawl_shop import shop_products
from wfcrawl.parsing.pool import ParsePool, ParsePoolUnavailableError, ParseWorkerCrashedError
from wfcrawl.workflow.page import Item, Link, Page

WORKERS = ("-s", "WFCRAWL_PARSE_WORKERS=2")

FAILING_NODE = """\
name: failing
base_url: http://localhost
start_urls: [/shop/category/laptops-1.html, /shop/category/laptops-2.html]
obey_robots: false
phases:
  cards:
    nodes:
      - type: extract
        item: card
        rows: div.product-card
        fields:
          name: a.title::text
      # Fails on pages with product cards only (an XPath that fails on every page
      # is refused at load): the regular expression becomes "(x" there.
      - type: extract
        item: broken
        fields:
          flag: {xpath: "re:test('x', concat(substring('(', 1, count(//div[contains(@class, 'product-card')])), 'x'))"}
      - {type: extract, item: title, fields: {title: title}}
"""



def _sorted(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """In the order of Crawl.fields()."""
    return sorted(items, key=lambda d: json.dumps(d, sort_keys=True))


def _comparable(result: Crawl) -> tuple[list[Any], dict[str, Any]]:
    """Items without the per-run parts of provenance, and the wfcrawl stats
    without the run's id and the parse workers' own counters.

    A page that several pages link to (each product links its seller) is fetched once, by
    whichever link reached the dupefilter first; its items' path (`markers`, `depth`)
    depends on that race, in a plain crawl as much as in a pooled one, so for the phases
    that saw duplicate links only the path's last step is compared."""
    raced = {k.split("/")[2] for k, v in result.stats.items()
             if k.startswith("wfcrawl/phases/") and k.endswith("/duplicates") and v}
    items = []
    for item in result.items:
        meta = {k: v for k, v in item["_meta"].items() if k not in ("fetched_at", "execution_id")}
        if meta["phase"] in raced:
            meta["markers"] = meta["markers"][-1:]
            del meta["depth"]
        items.append({**item, "_meta": meta})
    items.sort(key=repr)
    stats = {k: v for k, v in stat_items(result.stats, "wfcrawl/").items()
             if k != "execution_id" and not k.startswith("parse_workers/")}
    return items, stats


def _parsed_pages(stats: dict[str, Any], phases: list[str]) -> int:
    """Pages of these phases that reached the nodes (not skipped, binary or empty)."""
    reached = sum(stats.get(f"wfcrawl/pages/{p}", 0) for p in phases)
    return int(reached - sum(stats.get(f"wfcrawl/pages/{k}", 0) for k in ("skipped/marker", "error/not_text", "error/empty")))


@pytest.mark.parametrize(
    ("workflow", "offloaded"),
    [
        ("workflows/shop.yaml", ["home", "listing", "product", "seller"]),
        ("workflows/api.yaml", ["pages", "detail", "seller"]),
        ("workflows/links.yaml", ["home", "page"]),
        (BROKEN, ["index", "page", "json"]),
        (REQUIRED, ["cards"]),
        (FAILING_NODE, ["cards"]),
        # Script nodes run in the crawl process: no phase of this example is offloaded.
        ("workflows/script.yaml", []),
        # Values handed on to linked pages, unique items, pages that give nothing new, embedded JSON.
        ("workflows/quotes.yaml", ["listing", "author"]),
        ("workflows/numbered.yaml", ["quotes", "catalog"]),
        ("workflows/embedded.yaml", ["page", "author"]),
    ],
    ids=["shop", "api", "links", "broken", "required", "failing_node", "script", "quotes", "numbered", "embedded"],
)
def test_same_outcome_with_parse_workers(
    workflow: str, offloaded: list[str], server: MockServer, tmp_path: Path,
) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "pooled").mkdir()
    plain = run_crawl(workflow, base_url=server.url, tmp_path=tmp_path / "plain")
    pooled = run_crawl(workflow, *WORKERS, base_url=server.url, tmp_path=tmp_path / "pooled")
    for result in (plain, pooled):
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stats["finish_reason"] == "finished"
    assert plain.items, "the comparison needs items"
    assert _comparable(pooled) == _comparable(plain)
    assert stat_items(plain.stats, "wfcrawl/parse_workers/") == {}
    expected = _parsed_pages(plain.stats, offloaded)
    assert stat_items(pooled.stats, "wfcrawl/parse_workers/") == ({"pages": expected} if expected else {})
    # Once-per-key warnings and node errors: logged once, as in-process.
    for text in ("required field(s) price empty", "expected JSON at", "Node extract#1 of phase cards failed at"):
        assert pooled.stderr.count(text) == plain.stderr.count(text), text


def test_shop_exact_items_with_parse_workers(server: MockServer, tmp_path: Path) -> None:
    result = run_crawl("workflows/shop.yaml", *WORKERS, base_url=server.url, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.fields("product") == _sorted(shop_products(server.url))
    assert "Parsing the pages of phase(s) home, listing, product, seller in 2 parse worker(s)" in result.stderr


def test_failing_node_is_counted_and_logged_once_from_a_worker(server: MockServer, tmp_path: Path) -> None:
    result = run_crawl(FAILING_NODE, *WORKERS, base_url=server.url, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # The nodes before and after the failing one still yield on both pages.
    assert len(result.of_type("card")) == 5 and len(result.of_type("title")) == 2
    assert result.of_type("broken") == []
    assert result.stats["wfcrawl/nodes/error/RegexError"] == 2  # an RE2 pattern computed from the page
    assert result.stderr.count("Node extract#1 of phase cards failed at") == 1
    assert "(in a parse worker)" in result.stderr
    assert "wfcrawl.workflow.regex.RegexError: missing ): (x" in result.stderr


def _worker_pids(marker: str) -> list[int]:
    """Parse workers whose parent's command line contains ``marker``."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            if b"wfcrawl.parsing.worker" not in cmdline:
                continue
            ppid = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1]
            if marker.encode() in Path(f"/proc/{ppid}/cmdline").read_bytes():
                pids.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return pids


def test_killed_worker_loses_no_page(fresh_server: MockServer, tmp_path: Path) -> None:
    """SIGKILL the only worker mid-crawl: its pages go to a new worker; same items."""
    server = fresh_server
    killed: list[int] = []
    done = threading.Event()

    def killer() -> None:
        while not done.is_set():
            pids = _worker_pids(str(tmp_path))
            # A product page requested: the worker parsed the home and listing pages
            # (it was ready: one killed before it is ready means workers cannot start).
            if pids and any("/product/" in p for p in server.paths()):
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = run_crawl(
            "workflows/shop.yaml", "-s", "WFCRAWL_PARSE_WORKERS=1", "-s", "DOWNLOAD_DELAY=0.15",
            "-s", "RANDOMIZE_DOWNLOAD_DELAY=False", base_url=server.url, tmp_path=tmp_path,
        )
    finally:
        done.set()
        thread.join()
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(killed) == 1
    assert result.fields("product") == _sorted(shop_products(server.url))
    assert result.stats["wfcrawl/parse_workers/lost"] == 1
    assert "wfcrawl/pages/error/parse_worker" not in result.stats
    # Every page parsed in a worker, the first one or its replacement.
    assert result.stats["wfcrawl/parse_workers/pages"] == 14
    assert f"(pid {killed[0]}) died" in result.stderr


def test_invalid_reactor_setting_is_refused(server: MockServer, tmp_path: Path) -> None:
    result = run_crawl(
        "workflows/links.yaml", *WORKERS, "-s", "TWISTED_REACTOR=twisted.internet.epollreactor.EPollReactor",
        base_url=server.url, tmp_path=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "WFCRAWL_PARSE_WORKERS needs Scrapy's asyncio reactor" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.items == []


# ---------------------------------------------------------------- the pool


PAGE_WORKFLOW = """\
name: pool
start_urls: [http://shop.test/]
phases:
  product:
    nodes:
      - {type: extract_links, css: a, marker: next}
      - type: extract
        item: product
        fields:
          name: h1
          price: {css: span.price, type: float}
    transitions:
      - {marker: next, to: product}
"""


def _page(n: int) -> tuple[Any, Any]:
    from scrapy.http import HtmlResponse

    body = (f"<html><h1>Product {n}</h1><span class=price>{n}.50</span>"
            f"<a href=/p/{n + 1}>next</a><a href=/p/{n + 2}>skip</a></html>").encode()
    response = HtmlResponse(f"http://shop.test/p/{n}", body=body, headers={"Content-Type": "text/html"})

    class Quiet:
        def count(self, key: str, count: int = 1) -> None: ...
        def warn_once(self, key: Any, msg: str, *args: Any) -> None: ...

    page = Page(response, phase="product", marker="next", markers=("next",), depth=1, page_number=None,
                reporter=Quiet())
    return response, page


def _expected(n: int) -> list[Any]:
    return [Link(f"http://shop.test/p/{n + 1}", "next"), Link(f"http://shop.test/p/{n + 2}", "next"),
            Item("product", {"name": f"Product {n}", "price": n + 0.5})]


def _pool(counts: Counter[str], size: int = 1, max_restarts: int = 3, text: str = PAGE_WORKFLOW) -> Any:
    return ParsePool(
        size, {"text": text, "name": "pool.yaml", "options": {}, "log_level": 20},
        max_restarts=max_restarts, count=lambda key: counts.update([key]),
    )


#: A worker that says it is ready, reads a little, then dies without answering.
CRASHER = (
    "import os, pickle, struct, sys; os.read(0, 1); p = pickle.dumps(('ready', os.getpid())); "
    "os.write(1, struct.pack('>I', len(p)) + p); os.read(0, 1); sys.exit(3)"
)


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_pool_outputs_equal_in_process_outputs() -> None:
    async def main() -> None:
        counts: Counter[str] = Counter()
        pool = _pool(counts, size=2)
        try:
            results = await asyncio.gather(*(pool.parse(*_page(n)) for n in range(40)))
            assert [r.outputs for r in results] == [_expected(n) for n in range(40)]
            # The counts a page reports travel back with it: links, and each node's match.
            assert results[0].counts == {"wfcrawl/links/extracted": 2, "wfcrawl/nodes/matched/product/extract_links#0": 1,
                                         "wfcrawl/nodes/matched/product/extract#1": 1}
            assert len(pool.pids()) == 2
        finally:
            await pool.close()
        assert all(w.process.returncode == 0 for w in pool.workers)  # exited on EOF, reaped
        assert counts == Counter()

    asyncio.run(asyncio.wait_for(main(), 120))


def test_a_failure_outside_the_nodes_comes_back_as_the_error() -> None:
    """The spider raises it, so the page fails as a callback error would; the worker lives on."""
    async def main() -> None:
        pool = _pool(Counter())
        try:
            response, page = _page(0)
            page.phase = "no_such_phase"
            result = await pool.parse(response, page)
            assert (result.outputs, result.counts, result.warnings) == ([], {}, [])
            assert result.error is not None and result.error.rstrip().endswith("KeyError: 'no_such_phase'")
            assert (await pool.parse(*_page(1))).outputs == _expected(1)
        finally:
            await pool.close()

    asyncio.run(asyncio.wait_for(main(), 120))


def test_pages_of_a_killed_worker_go_to_its_replacement() -> None:
    async def main() -> None:
        counts: Counter[str] = Counter()
        pool = _pool(counts)
        try:
            assert (await pool.parse(*_page(0))).outputs == _expected(0)
            first = pool.pids()[0]
            os.kill(first, signal.SIGSTOP)  # holds the next pages without answering
            pending = [asyncio.ensure_future(pool.parse(*_page(n))) for n in range(1, 6)]
            await _until(lambda: len(pool.workers[0].pending) == 5)
            os.kill(first, signal.SIGKILL)
            results = await asyncio.gather(*pending)
            assert [r.outputs for r in results] == [_expected(n) for n in range(1, 6)]
            assert pool.pids() != [first] and len(pool.pids()) == 1
        finally:
            await pool.close()
        assert counts == Counter({"wfcrawl/parse_workers/lost": 1, "wfcrawl/parse_workers/retried": 5})

    asyncio.run(asyncio.wait_for(main(), 120))


def test_page_held_by_two_dying_workers_is_dropped_then_pool_gives_up() -> None:
    async def main() -> None:
        counts: Counter[str] = Counter()
        pool = _pool(counts, max_restarts=2)
        try:
            await pool.parse(*_page(0))
            first = pool.pids()[0]
            os.kill(first, signal.SIGSTOP)
            pending = asyncio.ensure_future(pool.parse(*_page(1)))
            await _until(lambda: len(pool.workers[0].pending) == 1)
            # Replacements say they are ready, then die without answering.
            pool.command = [sys.executable, "-c", CRASHER]
            os.kill(first, signal.SIGKILL)
            with pytest.raises(ParseWorkerCrashedError, match=re.escape("http://shop.test/p/1: two parse workers died")):
                await pending
            # The next page kills the second replacement; restarts are used up.
            with pytest.raises(ParsePoolUnavailableError, match="WFCRAWL_PARSE_WORKER_RESTARTS reached"):
                await pool.parse(*_page(2))
            with pytest.raises(ParsePoolUnavailableError):
                await pool.parse(*_page(3))
        finally:
            await pool.close()
        assert counts["wfcrawl/parse_workers/lost"] == 3
        assert counts["wfcrawl/parse_workers/retried"] == 1

    asyncio.run(asyncio.wait_for(main(), 120))


def test_worker_that_exits_before_it_is_ready_makes_the_pool_unavailable() -> None:
    async def main() -> None:
        counts: Counter[str] = Counter()
        pool = _pool(counts)
        pool.command = [sys.executable, "-c", "import sys; sys.exit(7)"]
        try:
            with pytest.raises(ParsePoolUnavailableError, match=re.escape("exited before it was ready (exit code 7)")):
                await pool.parse(*_page(0))
            assert pool.restarts == 0
        finally:
            await pool.close()
        assert counts == Counter({"wfcrawl/parse_workers/lost": 1})

    asyncio.run(asyncio.wait_for(main(), 120))


def test_worker_that_cannot_start_makes_the_pool_unavailable() -> None:
    async def main() -> None:
        counts: Counter[str] = Counter()
        pool = _pool(counts, text="name: broken\nphases: 3\n")
        try:
            with pytest.raises(ParsePoolUnavailableError, match="a parse worker could not start"):
                await pool.parse(*_page(0))
            assert "WorkflowError" in (pool.unavailable or "")
        finally:
            await pool.close()
        assert counts == Counter()

    asyncio.run(asyncio.wait_for(main(), 120))


def test_worker_ignores_sigint_and_exits_with_the_crawl_process() -> None:
    """Ctrl-C reaches the whole process group; the worker stays until stdin closes."""
    async def main() -> None:
        pool = _pool(Counter())
        try:
            await pool.parse(*_page(0))
            pid = pool.pids()[0]
            os.kill(pid, signal.SIGINT)
            os.kill(pid, signal.SIGTERM)
            assert (await pool.parse(*_page(1))).outputs == _expected(1)
            assert pool.pids() == [pid]
        finally:
            await pool.close()
        assert pool.workers[0].process.returncode == 0

    asyncio.run(asyncio.wait_for(main(), 120))
