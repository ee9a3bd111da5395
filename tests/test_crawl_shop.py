"""End-to-end: workflows/shop.yaml crawls the fixture shop; exact items, provenance, stats."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Crawl, stat_items
from tests.mockserver import MockServer


def shop_products(BASE: str) -> list[dict[str, Any]]:  # noqa: N803
    """The 7 products of tests/sites/shop (lp-004 has no price: dropped as required)."""
    return \
        [{'name': 'Aero 13 Laptop',
          'sku': 'LP-001',
          'price': 1299.0,
          'available': True,
          'released': '2024-03-01',
          'attributes': {'Weight': '1.2 kg', 'Screen': '13.3 in', 'Color': 'Silver'},
          'specs': {'CPU': 'M3', 'RAM': '16 GB', 'Storage': '512 GB SSD'},
          'seller': {'name': 'Acme Electronics',
                     'rating': 4.5,
                     'profile': BASE + '/shop/seller/acme.html'},
          'reviews': [{'author': 'Alice', 'stars': 5, 'text': 'Fast and light.'},
                      {'author': 'Bob', 'stars': 4, 'text': 'Battery could be better.'}],
          'tags': ['ultrabook', 'sale']},
         {'name': 'Titan 17 Workstation',
          'sku': 'LP-002',
          'price': 2499.99,
          'available': True,
          'released': '2023-11-15',
          'attributes': {'Weight': '3.1 kg', 'Screen': '17.3 in', 'Color': 'Graphite', 'Ports': '4x USB-C'},
          'specs': {'CPU': 'i9-13900H', 'RAM': '64 GB', 'Storage': '2 TB SSD', 'GPU': 'RTX 4080'},
          'seller': {'name': 'Bolt Gadgets',
                     'rating': 3.9,
                     'profile': BASE + '/shop/seller/bolt.html'},
          'reviews': [{'author': 'Carol', 'stars': 5, 'text': 'A beast for rendering.'},
                      {'author': 'Dan', 'stars': 3, 'text': 'Heavy and loud.'},
                      {'author': 'Erin', 'stars': 4, 'text': 'Great screen.'}],
          'tags': ['workstation', 'pro', '17-inch']},
         {'name': 'Nimbus 14',
          'sku': 'LP-003',
          'price': 849.0,
          'available': False,
          'released': '2024-01-20',
          'attributes': {'Weight': '1.5 kg', 'Screen': '14 in', 'Color': 'Blue'},
          'specs': {'CPU': 'Ryzen 5 7530U', 'RAM': '8 GB', 'Storage': '256 GB SSD'},
          'seller': {'name': 'Acme Electronics',
                     'rating': 4.5,
                     'profile': BASE + '/shop/seller/acme.html'},
          'reviews': [],
          'tags': ['student']},
         {'name': 'Budget Book 15',
          'sku': 'LP-005',
          'price': 399.0,
          'available': True,
          'released': '2023-06-30',
          'attributes': {'Weight': '1.9 kg', 'Screen': '15.6 in', 'Color': 'Black', 'Battery': '6 h'},
          'specs': {'CPU': 'Celeron N4500', 'RAM': '4 GB', 'Storage': '64 GB eMMC'},
          'seller': {'name': 'Acme Electronics',
                     'rating': 4.5,
                     'profile': BASE + '/shop/seller/acme.html'},
          'reviews': [{'author': 'Gina', 'stars': 4, 'text': 'Does the job.'},
                      {'author': 'Hank', 'stars': 3, 'text': 'Slow but cheap.'}],
          'tags': ['budget', 'sale']},
         {'name': 'Nova Phone 6',
          'sku': 'PH-001',
          'price': 699.0,
          'available': True,
          'released': '2024-02-10',
          'attributes': {'Weight': '172 g', 'Screen': '6.1 in', 'Color': 'Midnight'},
          'specs': {'CPU': 'Nova A1', 'RAM': '8 GB', 'Storage': '128 GB'},
          'seller': {'name': 'Bolt Gadgets',
                     'rating': 3.9,
                     'profile': BASE + '/shop/seller/bolt.html'},
          'reviews': [{'author': 'Ivy', 'stars': 5, 'text': 'Best camera I have owned.'}],
          'tags': ['5g']},
         {'name': 'Nova Phone 6 Pro',
          'sku': 'PH-002',
          'price': 1099.0,
          'available': True,
          'released': '2024-02-10',
          'attributes': {'Weight': '205 g', 'Screen': '6.7 in', 'Color': 'Titanium', 'Water resistance': 'IP68'},
          'specs': {'CPU': 'Nova A1 Pro', 'RAM': '12 GB', 'Storage': '256 GB'},
          'seller': {'name': 'Bolt Gadgets',
                     'rating': 3.9,
                     'profile': BASE + '/shop/seller/bolt.html'},
          'reviews': [{'author': 'Jack', 'stars': 5, 'text': 'Worth every cent.'},
                      {'author': 'Kim', 'stars': 4, 'text': 'Pricey.'},
                      {'author': 'Liam', 'stars': 5, 'text': 'Battery lasts two days.'}],
          'tags': ['5g', 'pro', 'flagship']},
         {'name': 'Pocket Mini',
          'sku': 'PH-003',
          'price': 249.5,
          'available': True,
          'released': '2021-12-01',
          'attributes': {'Weight': '135 g', 'Screen': '5.4 in', 'Color': 'Green'},
          'specs': {'CPU': 'Snap 480', 'RAM': '4 GB', 'Storage': '64 GB'},
          'seller': {'name': 'Acme Electronics',
                     'rating': 4.5,
                     'profile': BASE + '/shop/seller/acme.html'},
          'reviews': [],
          'tags': ['compact']}]


@pytest.fixture(scope="module")
def shop_crawl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Crawl, str]:
    from tests.conftest import run_crawl

    with MockServer() as server:
        base = server.url
        result = run_crawl("workflows/shop.yaml", base_url=base, tmp_path=tmp_path_factory.mktemp("shop"))
        paths = server.paths()
    assert result.returncode == 0, result.stderr[-3000:]
    # Each page fetched once: robots.txt, home, 3 listings, 8 products, 2 sellers.
    assert sorted(paths) == sorted(set(paths)) and len(paths) == 15
    return result, base


def test_exact_products(shop_crawl: tuple[Crawl, str]) -> None:
    crawl, base = shop_crawl
    assert crawl.fields("product") == sorted(shop_products(base), key=lambda d: json.dumps(d, sort_keys=True))


def test_exact_sellers(shop_crawl: tuple[Crawl, str]) -> None:
    crawl, _ = shop_crawl
    assert crawl.fields("seller") == [{"name": "Acme Electronics"}, {"name": "Bolt Gadgets"}]
    assert len(crawl.items) == 9


def test_provenance(shop_crawl: tuple[Crawl, str]) -> None:
    crawl, base = shop_crawl
    by_url = {i["_meta"]["url"]: i["_meta"] for i in crawl.items}
    lp001 = by_url[f"{base}/shop/product/lp-001.html"]
    assert {k: v for k, v in lp001.items() if k not in ("fetched_at", "execution_id")} == {
        "workflow": "shop", "url": f"{base}/shop/product/lp-001.html", "phase": "product",
        "markers": ["start", "category", "product"], "depth": 2,
    }
    # Reached through the second listing page: the chain records the `next` hop.
    lp005 = by_url[f"{base}/shop/product/lp-005.html"]
    assert (lp005["markers"], lp005["depth"]) == (["start", "category", "next", "product"], 3)
    seller = by_url[f"{base}/shop/seller/acme.html"]
    assert (seller["phase"], seller["markers"]) == ("seller", ["start", "category", "product", "seller"])
    assert len({m["execution_id"] for m in by_url.values()}) == 1
    assert all(m["fetched_at"].endswith("+00:00") for m in by_url.values())


def test_stats(shop_crawl: tuple[Crawl, str]) -> None:
    crawl, _ = shop_crawl
    assert crawl.stats["finish_reason"] == "finished"
    assert stat_items(crawl.stats, "wfcrawl/") == {
        "workflow": "shop",
        "execution_id": crawl.items[0]["_meta"]["execution_id"],
        "pages/home": 1, "pages/listing": 3, "pages/product": 8, "pages/seller": 2,
        "items/product": 7, "items/seller": 2,
        "items/dropped/missing_required": 1, "items/dropped/missing_required/product": 1,
        "links/extracted": 19, "links/scheduled": 19,
        # Per phase (wfcrawl.observability.progress.PhaseStats): the seller page of every product is one of 2.
        "phases/home/scheduled": 1, "phases/home/requests": 1,
        "phases/listing/scheduled": 3, "phases/listing/requests": 3,
        "phases/product/scheduled": 8, "phases/product/requests": 8, "phases/product/items": 7,
        "phases/seller/scheduled": 8, "phases/seller/duplicates": 6, "phases/seller/requests": 2,
        "phases/seller/items": 2,
        # Pages where each node produced something or nothing (wfcrawl.outcome): the listing's
        # last pages have no next link, the product page without a price gives no item.
        "nodes/matched/home/extract_links#0": 1,
        "nodes/matched/listing/product links": 3,
        "nodes/matched/listing/next page": 1, "nodes/nomatch/listing/next page": 2,
        "nodes/matched/product/extract#0": 7, "nodes/nomatch/product/extract#0": 1,
        "nodes/matched/product/extract_links#1": 8,
        "nodes/matched/seller/extract#0": 2,
        "start_requests/fetched": 1,
        "outcome": "succeeded",
    }
