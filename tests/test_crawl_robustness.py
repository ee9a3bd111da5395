"""Bad pages never stop a crawl: each case is counted by reason, good pages still yield."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import Crawl, stat_items
from tests.mockserver import MockServer

BROKEN = """\
name: broken
base_url: http://localhost
start_urls: [/broken/index.html]
obey_robots: false
phases:
  index:
    nodes:
      - {type: extract_links, css: ul.links a, marker: page}
    transitions:
      - {marker: page, to: json, url: json}
      - {marker: page, to: page}
  page:
    nodes:
      - type: extract
        item: page
        fields:
          name: {css: h1.name, required: true}
      - {type: extract_links, css: a.ok, marker: page}
    transitions:
      - {marker: page, to: page}
  json:
    nodes:
      - type: extract
        item: data
        fields:
          page: {jmespath: page}
"""

# Outcomes every run shares: binary, empty, invalid JSON, 404, 500 (after Scrapy's
# 2 retries) and the endless redirect, each counted once by reason.
COMMON = {
    "pages/error/not_text": 1, "pages/error/empty": 1, "pages/error/bad_json": 1,
    "pages/failed/http_404": 1, "pages/failed/http_500": 1, "pages/failed/max_redirects": 1,
    "pages/index": 1, "pages/json": 1,
    "links/extracted": 10, "links/scheduled": 10,
    # The start request, and a succeeded outcome: bad pages are counted, not fatal (wfcrawl.outcome).
    "start_requests/fetched": 1, "outcome": "succeeded",
    "nodes/matched/index/extract_links#0": 1, "nodes/matched/page/extract_links#1": 1,
}


def matches(items: int, without_ok_link: int) -> dict[str, int]:
    """Per-node counts of the page phase: the extract node matched on each page with an item; the
    a.ok link is on one page (the error pages never reach the nodes, the JSON one raised)."""
    return {"nodes/matched/page/extract#0": items, "nodes/nomatch/page/extract_links#1": without_ok_link}


#: One laptop card has no price: its item is dropped, counted and logged once.
REQUIRED = """\
name: required
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
          price: {css: span.price, type: float, required: true}
"""


def test_broken_pages_are_counted_and_the_crawl_goes_on(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl(BROKEN, base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stats["finish_reason"] == "finished"
    # Broken markup still yields; the 3 MB page is content, not an error.
    assert result.fields("page") == [{"name": "Huge page"}, {"name": "OK page"}, {"name": "Still here"}]
    assert result.of_type("data") == []
    stats = stat_items(result.stats, "wfcrawl/")
    assert {k: v for k, v in stats.items() if k not in ("workflow", "execution_id") and not k.startswith("phases/")} == {
        **COMMON, **matches(3, 2), "pages/failed": 3, "pages/page": 5, "items/page": 3,
    }
    assert result.stats["retry/count"] == 2


def test_page_over_the_size_limit_is_a_counted_failure(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl(BROKEN, "-s", "DOWNLOAD_MAXSIZE=1000000", base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("page") == [{"name": "OK page"}, {"name": "Still here"}]
    stats = stat_items(result.stats, "wfcrawl/")
    assert {k: v for k, v in stats.items() if k not in ("workflow", "execution_id") and not k.startswith("phases/")} == {
        **COMMON, **matches(2, 1), "pages/failed": 4, "pages/failed/DownloadCancelledError": 1, "pages/page": 4,
        "items/page": 2,
    }


def test_required_field_drop_is_counted_and_logged_once(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl(REQUIRED, base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("card") == [
        {"name": "Aero 13 Laptop", "price": 1299.0}, {"name": "Budget Book 15", "price": 399.0},
        {"name": "Nimbus 14", "price": 849.0}, {"name": "Titan 17 Workstation", "price": 2499.99},
    ]
    assert result.stats["wfcrawl/items/dropped/missing_required/card"] == 1
    assert result.stderr.count("required field(s) price empty") == 1


def test_phase_when_marker_turns_other_markers_away(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    # Category links (marker `category`) and the about page (marker `other`) both
    # route to `page`; only category pages are processed there.
    workflow = """\
    name: markers
    base_url: http://localhost
    start_urls: [/shop/index.html]
    obey_robots: false
    phases:
      home:
        nodes:
          - {type: extract_links, css: ul.categories a, marker: category}
          - {type: extract_links, css: "a[href$='about.html']", marker: other}
        transitions:
          - {marker: [category, other], to: page}
      page:
        when_marker: category
        nodes:
          - type: extract
            item: page
            fields:
              title: {css: title, required: true}
    """
    result = crawl(workflow, base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("page") == [
        {"title": "Laptops (page 1) | Demo Shop"}, {"title": "Phones (page 1) | Demo Shop"},
    ]
    assert result.stats["wfcrawl/pages/page"] == 3
    assert result.stats["wfcrawl/pages/skipped/marker"] == 1
    assert {i["_meta"]["markers"][-1] for i in result.items} == {"category"}
