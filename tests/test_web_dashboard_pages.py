"""The dashboard's execution pages over HTTP: the list (filters, search, pages, bulk cancel)
and one execution (live fragment, phases, chart, funnel, reasons, checks, comparison,
items, log, cancel, re-run). Every action is CSRF-checked, refused to read-only keys and
audited. The other pages: tests/test_web_dashboard_admin.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from parsel import Selector

from tests.launcher_support import final, make_launcher, web_server
from tests.test_web_dashboard import ADMIN, KEYS, SECRET, VIEWER, Dashboard
from wfcrawl.demo.site import serve as demo_site
from wfcrawl.launcher.registry import MemoryWorkflowRegistry
from wfcrawl.storage.executions import Execution, MemoryExecutionStore

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)
EXPECTING = """name: shop
start_urls: [https://example.com/]
expect:
  items:
    product: {min_count: 10, fill_rates: {price: 0.9}}
phases:
  listing:
    nodes:
      - {type: extract, item: product, fields: {name: h1, price: .price}}
"""


def serve_pages(tmp_path: Path) -> Iterator[tuple[Dashboard, Any, MemoryWorkflowRegistry]]:
    """The dashboard on a memory store, with the bundled workflows registered by name."""
    store = MemoryExecutionStore()
    registry = MemoryWorkflowRegistry(bundled=True)
    launcher = make_launcher(tmp_path, store, registry)
    server = web_server(tmp_path, launcher, KEYS, WFCRAWL_WEB_SECRET_KEY=SECRET)
    yield Dashboard(server.url, store, None), launcher, registry
    server.stop()
    launcher.shutdown()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Dashboard, Any, MemoryWorkflowRegistry]]:
    yield from serve_pages(tmp_path)


def signed_in(d: Dashboard, key: str = ADMIN) -> requests.Session:
    browser = d.browser()
    assert d.sign_in(browser, key).status_code == 303
    return browser


def table(page: str, css: str) -> list[list[str]]:
    return [[" ".join(" ".join(td.css("::text").getall()).split()) for td in tr.css("td")]
            for tr in Selector(page).css(f"{css} tbody tr")]


def post(d: Dashboard, browser: requests.Session, path: str, data: dict[str, Any], page: str = "/") -> requests.Response:
    return browser.post(d.url + path, data={"csrf_token": d.csrf(browser, page), **data}, allow_redirects=False)


def flash_of(browser: requests.Session, d: Dashboard, path: str) -> str | None:
    return Selector(browser.get(d.url + path).text).css(".flash::text").get()


def test_the_list_filters_searches_pages_and_shows_counts(served: Any) -> None:
    d, _, _ = served
    stats = {"response_received_count": 12, "robotstxt/response_count": 1, "item_scraped_count": 30,
             "log_count/ERROR": 2, "wfcrawl/pages/failed": 1}
    for i in range(30):
        workflow, status = ("shop", "succeeded") if i % 3 else ("news", "failed")
        reasons = [] if i % 3 else [{"code": "no_pages", "message": "no page was fetched"}]
        d.store.create(Execution(f"e{i:02d}", workflow, status=status, reasons=reasons, stats=stats if i == 29 else {},
                                 created_at=T0 + timedelta(minutes=i), started_at=T0 + timedelta(minutes=i),
                                 finished_at=T0 + timedelta(minutes=i, seconds=75)))
    browser = signed_in(d)
    first = browser.get(d.url + "/").text
    rows = table(first, "table.executions")
    assert len(rows) == 25
    assert rows[0] == ["", "e29", "shop", "succeeded", "2026-06-01 08:29:00 UTC", "1 min 15 s", "11", "30", "3"]
    assert rows[1][1:4] == ["e28", "shop", "succeeded"]
    assert Selector(first).css(".pager a::text").getall() == ["Older →"]
    second = browser.get(d.url + "/?page=2").text
    assert [r[1] for r in table(second, "table.executions")] == ["e04", "e03", "e02", "e01", "e00"]
    assert Selector(second).css(".pager a::text").getall() == ["← Newer"]
    news = table(browser.get(d.url + "/?workflow=news").text, "table.executions")
    assert [r[1] for r in news] == [f"e{i:02d}" for i in range(27, -1, -3)]
    assert news[0][3] == "failed no_pages no page was fetched"
    assert [r[1] for r in table(browser.get(d.url + "/?status=failed&q=E0").text, "table.executions")] == [
        "e09", "e06", "e03", "e00"]
    assert [r[1] for r in table(browser.get(d.url + "/?q=no_pages+e1").text, "table.executions")] == [
        "e18", "e15", "e12"]
    empty = browser.get(d.url + "/?q=nothing-like-this").text
    assert Selector(empty).css(".empty::text").get().strip() == "No executions match these filters."
    options = Selector(first).css("select#workflow option::attr(value)").getall()
    assert options == ["", "api", "demo", "emails", "embedded", "links", "login", "news", "numbered", "polite",
                       "quotes", "refetch", "script", "search", "shop", "tables"]


def test_bulk_cancel_cancels_what_runs_and_says_what_it_did_not(served: Any) -> None:
    d, _, _ = served
    for i, status in enumerate(["running", "queued", "succeeded"]):
        d.store.create(Execution(f"b{i}", "shop", status=status, created_at=T0 + timedelta(minutes=i)))
    browser = signed_in(d)
    page = browser.get(d.url + "/").text
    assert Selector(page).css("td.tick input::attr(value)").getall() == ["b1", "b0"]  # the final one has no box
    refused = browser.post(d.url + "/executions/cancel", data={"id": ["b0"]}, allow_redirects=False)
    assert refused.status_code == 403 and d.store.get("b0").status == "running"
    done = post(d, browser, "/executions/cancel", {"id": ["b0", "b1", "b2"], "back": "/?workflow=shop"})
    assert (done.status_code, done.headers["location"]) == (303, "/?workflow=shop")
    assert [d.store.get(f"b{i}").status for i in range(3)] == ["cancelled", "cancelled", "succeeded"]
    assert flash_of(browser, d, "/?workflow=shop") == (
        "Cancelled 2 execution(s); not cancelled: b2 (execution b2 is already succeeded)")
    assert flash_of(browser, d, "/") is None  # shown once
    assert [(e.actor, e.action, e.target) for e in d.store.list_audit(limit=2)] == [
        ("key:admin", "execution.cancelled", "b1"), ("key:admin", "execution.cancelled", "b0")]
    viewer = signed_in(d, VIEWER)
    assert Selector(viewer.get(d.url + "/").text).css("td.tick").getall() == []
    d.store.create(Execution("b3", "shop", status="running"))
    assert post(d, viewer, "/executions/cancel", {"id": ["b3"]}).status_code == 403
    assert d.store.get("b3").status == "running"


def _stats() -> dict[str, Any]:
    return {
        "response_received_count": 9, "item_scraped_count": 8, "downloader/request_count": 11,
        "wfcrawl/links/extracted": 14,
        "downloader/response_status_count/200": 8, "downloader/response_status_count/404": 1,
        "wfcrawl/pages/listing": 2, "wfcrawl/pages/product": 7, "wfcrawl/phases/listing/requests": 2,
        "wfcrawl/phases/listing/scheduled": 2, "wfcrawl/phases/product/requests": 8,
        "wfcrawl/phases/product/scheduled": 12, "wfcrawl/phases/product/duplicates": 1,
        "wfcrawl/phases/product/items": 8, "wfcrawl/items/product": 8, "wfcrawl/fields/filled/product/price": 6,
        "wfcrawl/fields/filled/product/name": 8, "wfcrawl/links/dropped/max_depth": 4,
        "wfcrawl/items/dropped/missing_required/product": 1, "wfcrawl/pages/failed": 1,
        "wfcrawl/pages/failed/http_404": 1, "log_count/ERROR": 1, "log_count/WARNING": 3, "log_count/INFO": 50,
        "wfcrawl/launcher/samples": "2:2:0 4:6:4 6:9:8",
        "wfcrawl/launcher/log_tail": "first line\nsecond ERROR line\nthird WARNING line",
    }


def test_one_execution_shows_everything_and_refreshes_only_while_it_runs(served: Any, tmp_path: Path) -> None:
    d, _, registry = served
    registry.put("shop", EXPECTING)
    items = tmp_path / "e2.jsonl"
    items.write_text("".join(json.dumps({"name": f"P{i}", "price": i, "_type": "product", "_meta": {
        "url": f"https://example.com/p/{i}", "phase": "product", "depth": 2, "markers": ["start", "product"]}}) + "\n"
        for i in range(12)))
    before = {"response_received_count": 10, "item_scraped_count": 10, "wfcrawl/items/product": 10,
              "wfcrawl/fields/filled/product/price": 10}
    d.store.create(Execution("e1", "shop", status="succeeded", stats=before, created_at=T0,
                             started_at=T0, finished_at=T0 + timedelta(seconds=5)))
    reasons = [{"code": "items_below_expectation", "message": "8 product item(s), expected at least 10"}]
    d.store.create(Execution("e2", "shop", status="failed", stats=_stats(), reasons=reasons, error="8 product item(s)",
                             params={"items_file": str(items), "origin": "api"}, created_at=T0 + timedelta(hours=1),
                             started_at=T0 + timedelta(hours=1), finished_at=T0 + timedelta(hours=1, seconds=6)))
    browser = signed_in(d)
    page = browser.get(d.url + "/executions/e2").text
    s = Selector(page)
    assert s.css("#live::attr(hx-get)").get() is None  # ended: no refresh
    assert [s.css(f"#{i}::text").get() for i in ("status", "pages", "items", "errors")] == ["failed", "9", "8", "2"]
    assert s.css("#outcome h2::text").get() == "Outcome: failed"
    assert [" ".join(li.css("::text").getall()) for li in s.css("#outcome ul.reasons li")] == [
        "items_below_expectation  8 product item(s), expected at least 10"]
    assert table(page, "#phases") == [["listing", "2", "0", "2", "0", "0", "0.33"],
                                      ["product", "7", "8", "8", "1", "3", "1.17"]]
    assert table(page, "#error-reasons") == [["failed pages", "http_404", "1"], ["log lines", "WARNING", "3"],
                                             ["log lines", "ERROR", "1"]]
    assert table(page, "#drop-reasons") == [["links dropped", "max_depth", "4"],
                                            ["items dropped", "missing_required/product", "1"]]
    assert s.css("#funnel .value::text").getall() == ["14", "11", "9", "8", "8"]
    assert s.css("#funnel .tag::text").getall() == ["200: 8", "404: 1"]
    # What was lost after each step, by reason.
    assert [st.css(".drop::text").getall() for st in s.css("#funnel .step")] == [
        ["\u2212 4 max_depth"], [], ["\u2212 1 http_404"], ["\u2212 1 missing_required/product"], []]
    assert table(page, "#checks") == [["product items", "≥ 10", "8", "not met"],
                                      ["product.price filled", "≥ 90%", "75%", "not met"]]
    assert table(page, "#compare") == [["pages", "9", "10", "-1"], ["items", "8", "10", "-2"],
                                       ["errors", "2", "0", "+2"], ["product.name filled", "100%", "", ""],
                                       ["product.price filled", "75%", "100%", "-25 pts"]]
    assert s.css("svg.chart polyline::attr(points)").get() == "4.0,75.0 121.3,75.0 238.7,4.0 356.0,39.5"  # 1, 2, 1.5 pages/s
    assert [r[:3] for r in table(page, "#last-items")] == [
        [str(n), "product", f"name P{i} price {i}"] for n, i in zip(range(1, 11), range(11, 1, -1), strict=True)]
    assert s.css("#item-1 td.prov a::attr(href)").get() == "https://example.com/p/11"
    assert s.css("ol.log li::attr(id)").getall() == ["L1", "L2", "L3"]
    assert s.css("ol.log li span::attr(class)").getall() == ["", "bad", "warn"]
    live = browser.get(d.url + "/executions/e2/live").text
    assert Selector(live).css("#live #status::text").get() == "failed" and "<html" not in live

    d.store.create(Execution("e3", "shop", status="running", created_at=T0 + timedelta(hours=2), started_at=T0))
    running = Selector(browser.get(d.url + "/executions/e3").text)
    assert running.css("#live::attr(hx-get)").get() == "/executions/e3/live"
    assert running.css("#live::attr(hx-trigger)").get() == "every 2s"
    assert running.css("#cancel::text").get() == "Cancel"
    assert running.css("#phases").get() is None and running.css(".pulse::text").get() == "live"
    # The session ended while htmx refreshes: the whole page goes to the sign-in form.
    ended = requests.get(d.url + "/executions/e3/live", allow_redirects=False, headers={
        "HX-Request": "true", "HX-Current-URL": d.url + "/executions/e3"})
    assert (ended.status_code, ended.headers["hx-redirect"], ended.text) == (200, "/login?next=/executions/e3", "")
    missing = browser.get(d.url + "/executions/nope")
    assert (missing.status_code, Selector(missing.text).css("main p::text").getall()[1]) == (404, "no execution 'nope'")


def test_cancel_from_the_page_is_checked_and_audited(served: Any) -> None:
    d, _, _ = served
    d.store.create(Execution("c1", "shop", status="running"))
    d.store.create(Execution("c2", "shop", status="failed"))
    browser = signed_in(d)
    assert browser.post(d.url + "/executions/c1/cancel", allow_redirects=False).status_code == 403
    done = post(d, browser, "/executions/c1/cancel", {})
    assert (done.status_code, done.headers["location"]) == (303, "/executions/c1")
    assert d.store.get("c1").status == "cancelled"
    assert d.store.get("c1").reasons == [{"code": "cancelled", "message": "cancelled by an operator"}]
    assert flash_of(browser, d, "/executions/c1") == "Execution c1 cancelled."
    again = post(d, browser, "/executions/c2/cancel", {})
    assert (again.status_code, Selector(again.text).css("main p::text").getall()[1]) == (
        409, "execution c2 is already failed")
    assert [(e.action, e.target) for e in d.store.list_audit(limit=1)] == [("execution.cancelled", "c1")]
    assert post(d, signed_in(d, VIEWER), "/executions/c1/cancel", {}).status_code == 403


def test_rerun_with_the_same_document_or_the_latest(served: Any) -> None:
    d, _launcher, registry = served
    browser = signed_in(d)
    with demo_site() as site:
        launched = post(d, browser, "/workflows/demo/launch", {"base_url": site}, "/workflows/demo")
        first = launched.headers["location"].rsplit("/", 1)[1]
        assert final(d.store, first).status == "succeeded"
        page = Selector(browser.get(d.url + f"/executions/{first}").text)
        assert page.css(".actions button::text").getall() == ["Re-run", "Re-run with the latest document"]
        registry.put("demo", (Path(__file__).parent.parent / "workflows" / "demo.yaml").read_text().replace(
            "max_depth: 4", "max_depth: 1"))
        same = post(d, browser, f"/executions/{first}/rerun", {"document": "same"})
        again = same.headers["location"].rsplit("/", 1)[1]
        latest = post(d, browser, f"/executions/{first}/rerun", {"document": "latest"})
        newest = latest.headers["location"].rsplit("/", 1)[1]
        assert final(d.store, again).stats["item_scraped_count"] == 72  # the document as it ran
        assert final(d.store, newest).stats["item_scraped_count"] == 18  # max_depth 1: first listing pages only
    # Compared with the run before it; fill rates from the items files (the demo counts none).
    compared = table(browser.get(d.url + f"/executions/{newest}").text, "#compare")
    assert compared[:6] == [["pages", "4", "43", "-39"], ["items", "18", "72", "-54"], ["errors", "0", "0", "="],
                            ["offer.name filled", "100%", "100%", "="], ["offer.price filled", "100%", "100%", "="],
                            ["offer.url filled", "100%", "100%", "="]]
    assert compared[9] == ["product.reviews filled", "", "67%", ""]  # no product this time
    rerun = d.store.get(again)
    assert (rerun.params["rerun_of"], rerun.params["origin"], rerun.params["base_url"]) == (first, "dashboard", site)
    assert [(e.action, e.target, e.details) for e in d.store.list_audit(limit=3)] == [
        ("execution.launched", newest, {"workflow": "demo", "origin": "dashboard", "rerun_of": first}),
        ("execution.launched", again, {"workflow": "demo", "origin": "dashboard", "rerun_of": first}),
        ("execution.launched", first, {"workflow": "demo", "origin": "dashboard"})]
    d.store.create(Execution("old", "gone", status="failed"))
    refused = post(d, browser, "/executions/old/rerun", {"document": "same"})
    assert (refused.status_code, Selector(refused.text).css("main p::text").getall()[1]) == (
        409, "the document execution old ran is not kept on this machine: re-run it with the latest document")
    assert post(d, browser, "/executions/old/rerun", {"document": "latest"}).status_code == 409


def test_fill_rates_from_the_items_file(tmp_path: Path) -> None:
    from wfcrawl.web.items import item_fill_rates

    items = tmp_path / "items.jsonl"
    lines = [{"_type": "product", "name": "A", "price": 1, "tags": []}, {"_type": "product", "name": "", "price": 2},
             {"_type": "offer", "url": "/a"}, "not json", {"_type": "product", "name": "C", "price": None}]
    items.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    assert item_fill_rates(str(items)) == {"offer.url": 1.0, "product.name": 2 / 3, "product.price": 2 / 3,
                                           "product.tags": 0.0}
    assert item_fill_rates(str(tmp_path / "missing.jsonl")) == {} and item_fill_rates(None) == {}
