"""Every example in workflows/ validates, and each runs against the fixture sites
with its exact item set (the demo and shop examples have their own tests)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, Crawl, stat_items
from tests.mockserver import MockServer
from wfcrawl.commands.validate import validate_files

EXAMPLES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "workflows").glob("*.yaml"))


def test_examples_exist_for_every_node_type() -> None:
    text = "".join((ROOT / p).read_text() for p in EXAMPLES)
    for node_type in ("extract_links", "extract", "paginate", "form", "script"):
        assert f"type: {node_type}\n" in text, node_type


@pytest.mark.parametrize("path", EXAMPLES)
def test_example_validates(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_files([str(ROOT / path)]) == 0
    assert capsys.readouterr().err == ""


def test_api_example(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/api.yaml", base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("listing") == [
        {"id": 1, "name": "Widget Alpha", "price": 12.5, "tags": ["tools", "sale"]},
        {"id": 2, "name": "Widget Beta", "price": 8.0, "tags": ["tools"]},
        {"id": 3, "name": "Gadget Gamma", "price": 23.75, "tags": []},
        {"id": 4, "name": "Gadget Delta", "price": 99.99, "tags": ["electronics", "new"]},
        {"id": 5, "name": "Gizmo Epsilon", "price": 5.0, "tags": ["sale"]},
        {"id": 6, "name": "Gizmo Zeta", "price": 42.0, "tags": ["electronics"]},
    ]
    assert result.fields("product") == [
        {"id": 1, "name": "Widget Alpha", "price": 12.5, "specs": {"weight": "120 g", "color": "red"}, "seller": {"name": "Acme Electronics"}},
        {"id": 2, "name": "Widget Beta", "price": 8.0, "specs": {"weight": "95 g", "color": "blue"}, "seller": {"name": "Acme Electronics"}},
        {"id": 3, "name": "Gadget Gamma", "price": 23.75, "specs": {"weight": "300 g", "battery": "2000 mAh"}, "seller": {"name": "Bolt Gadgets"}},
        {"id": 4, "name": "Gadget Delta", "price": 99.99, "specs": {"weight": "1.1 kg", "battery": "5000 mAh", "color": "black"}, "seller": {"name": "Bolt Gadgets"}},
        {"id": 5, "name": "Gizmo Epsilon", "price": 5.0, "specs": {"weight": "40 g"}, "seller": {"name": "Acme Electronics"}},
        {"id": 6, "name": "Gizmo Zeta", "price": 42.0, "specs": {"weight": "650 g", "color": "green"}, "seller": {"name": "Bolt Gadgets"}},
    ]
    # The seller URLs are built from each product's seller.id: 2 sellers, each fetched once.
    assert result.fields("seller") == [
        {"id": "acme", "name": "Acme Electronics", "rating": 4.5, "products": [1, 2, 5]},
        {"id": "bolt", "name": "Bolt Gadgets", "rating": 3.9, "products": [3, 4, 6]},
    ]
    # Pages 1-3: page 3 says has_next=false, so page 4 is never requested.
    assert stat_items(result.stats, "wfcrawl/pages/") == {"pages": 3, "detail": 6, "seller": 2}
    pages = sorted(i["_meta"]["url"].rsplit("=", 1)[1] for i in result.of_type("listing"))
    assert pages == ["1", "1", "2", "2", "3", "3"]


def test_login_example(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl(
        "workflows/login.yaml", base_url=fresh_server.url,
        env={"SHOP_USER": "demo", "SHOP_PASSWORD": "s3cret"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("user") == [{"name": "demo"}]
    assert result.fields("order") == [{"id": "A-1", "total": 10.0}, {"id": "A-2", "total": 25.5}]
    assert result.fields("order_detail") == [
        {"id": "A-1", "total": 10.0, "lines": [{"item": "USB cable", "qty": 2}, {"item": "Screen wipe", "qty": 1}]},
        {"id": "A-2", "total": 25.5, "lines": [{"item": "Phone case", "qty": 1}]},
    ]
    requests = [(r.method, r.path) for r in fresh_server.requests]
    assert requests[:3] == [("GET", "/login"), ("POST", "/login"), ("GET", "/account")]
    assert sorted(requests[3:]) == [("GET", "/account/order/A-1"), ("GET", "/account/order/A-2")]
    post = fresh_server.requests[1]
    form = dict(pair.split("=", 1) for pair in post.body.decode().split("&"))
    assert form["username"] == "demo" and form["password"] == "s3cret"
    assert form["__VIEWSTATE"] == "dDwtMTA4MTg0NzQ5Nzs7Pg%3D%3D" and len(form["csrf_token"]) == 32
    assert result.stats["wfcrawl/forms/submitted"] == 1


def test_login_example_without_credentials_refuses_to_start(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/login.yaml", base_url=server.url, env={"SHOP_USER": "demo"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "workflows/login.yaml: form values come from environment variable(s) that are not set: SHOP_PASSWORD"
    )
    assert result.items == []


def test_script_example(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/script.yaml", base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    lamp = {"@context": "https://schema.org", "@type": "Product", "name": "Lamp", "sku": "L-1",
            "offers": {"@type": "Offer", "price": "19.90", "priceCurrency": "EUR"}}
    shade = {"@type": "Product", "name": "Shade", "sku": "S-2",
             "offers": {"@type": "Offer", "price": "4.50", "priceCurrency": "EUR"}}
    assert result.fields("product") == [lamp, shade]
    assert result.fields("page") == [{
        "title": "Structured data",
        "structured_objects": [lamp, {"@type": "BreadcrumbList", "itemListElement": []}, shade],
    }]


def test_links_example(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/links.yaml", base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("page") == [{"title": "Laptops (page 1) | Demo Shop", "heading": "Laptops"}]
    assert stat_items(result.stats, "wfcrawl/links/") == {
        # home: 5 links -> external dropped (domain), about denied (filtered),
        # 3 remain, limit keeps 2: index (no transition matches its URL) and laptops-1.
        "dropped/domain": 1, "dropped/filtered": 1, "dropped/limit": 1,
        "dropped/no_transition": 1,
        # laptops-1: 3 product links at depth 2 > max_depth 1.
        "dropped/max_depth": 3,
        "extracted": 5, "scheduled": 1,
    }


def test_polite_example(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/polite.yaml", base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(i["n"] for i in result.items) == list(range(1, 11))
    records = [r for r in fresh_server.requests if r.path != "/robots.txt"]
    assert len(records) == 11
    assert {r.headers.get("User-Agent") for r in records} == {"wfcrawl-example/1.0 (+https://example.com/bot)"}
    gaps = [b.time - a.time for a, b in itertools.pairwise(records)]
    # The server timestamps requests when it reads them: one request sent late by a busy
    # machine shortens the gap after it. The delay holds on average, and no two requests
    # ever come together (without the delay the gaps are a few ms).
    assert sum(gaps) / len(gaps) >= 0.25 and min(gaps) >= 0.25 / 2, gaps
    assert fresh_server.paths()[0] == "/robots.txt"


def test_cli_overrides_workflow_policy(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/polite.yaml", "-s", "DOWNLOAD_DELAY=0", "-s", "USER_AGENT=override/2",
                   base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.items) == 10
    assert {r.headers.get("User-Agent") for r in fresh_server.requests} == {"override/2"}


def test_examples_all_tested() -> None:
    tested = {"workflows/api.yaml", "workflows/login.yaml", "workflows/script.yaml", "workflows/links.yaml",
              "workflows/polite.yaml", "workflows/shop.yaml", "workflows/demo.yaml",
              # tests/test_crawl_language.py, tests/test_crawl_forms.py, tests/test_scripts.py:
              "workflows/quotes.yaml", "workflows/numbered.yaml", "workflows/refetch.yaml",
              "workflows/embedded.yaml", "workflows/search.yaml", "workflows/tables.yaml",
              "workflows/emails.yaml"}
    assert set(EXAMPLES) == tested, "a new example needs a test that runs it"


def test_example_paths_are_relative() -> None:
    assert all(not Path(p).is_absolute() for p in EXAMPLES)
