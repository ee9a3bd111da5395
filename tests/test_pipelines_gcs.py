"""Real crawls into Google Cloud Storage (gcsfs against gcp-storage-emulator).

The emulator runs in this process on a port the kernel chose; crawls run as
child processes and write to it. Objects, their names and their contents are
checked exactly; an injected upload failure must cost nothing.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scrapy.settings import Settings

from tests.conftest import require_service, run_crawl
from tests.mockserver import MockServer
from tests.services import GcsEmulator
from tests.test_pipelines_postgres import SHOP
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.settings.defaults import DEFAULTS
from wfcrawl.storage.config import GcsConfig
from wfcrawl.storage.gcs import GcsObjectWriter

BUCKET = "wfcrawl-test"

CARDS = {
    "/shop/category/laptops-1.html#0": {"name": "Aero 13 Laptop", "price": 1299.0},
    "/shop/category/laptops-1.html#1": {"name": "Titan 17 Workstation", "price": 2499.99},
    "/shop/category/laptops-1.html#2": {"name": "Nimbus 14", "price": 849.0},
    "/shop/category/laptops-2.html#0": {"name": "Pixel Slate 12", "price": None},
    "/shop/category/laptops-2.html#1": {"name": "Budget Book 15", "price": 399.0},
    "/shop/category/phones-1.html#0": {"name": "Nova Phone 6", "price": 699.0},
    "/shop/category/phones-1.html#1": {"name": "Nova Phone 6 Pro", "price": 1099.0},
    "/shop/category/phones-1.html#2": {"name": "Pocket Mini", "price": 249.5},
}
PRODUCTS = {
    "LP-001": {"sku": "LP-001", "name": "Aero 13 Laptop", "price": 1299.0, "tags": ["ultrabook", "sale"]},
    "LP-002": {"sku": "LP-002", "name": "Titan 17 Workstation", "price": 2499.99, "tags": ["workstation", "pro", "17-inch"]},
    "LP-003": {"sku": "LP-003", "name": "Nimbus 14", "price": 849.0, "tags": ["student"]},
    "LP-005": {"sku": "LP-005", "name": "Budget Book 15", "price": 399.0, "tags": ["budget", "sale"]},
    "PH-001": {"sku": "PH-001", "name": "Nova Phone 6", "price": 699.0, "tags": ["5g"]},
    "PH-002": {"sku": "PH-002", "name": "Nova Phone 6 Pro", "price": 1099.0, "tags": ["5g", "pro", "flagship"]},
    "PH-003": {"sku": "PH-003", "name": "Pocket Mini", "price": 249.5, "tags": ["compact"]},
}
PAGES = sorted([
    "/shop/index.html", "/shop/category/laptops-1.html", "/shop/category/laptops-2.html",
    "/shop/category/phones-1.html",
    *(f"/shop/product/{sku}.html" for sku in ("lp-001", "lp-002", "lp-003", "lp-004", "lp-005", "ph-001", "ph-002", "ph-003")),
])


@pytest.fixture(scope="module")
def emulator() -> Iterator[GcsEmulator]:
    import importlib.util

    found = all(importlib.util.find_spec(m) for m in ("gcsfs", "gcp_storage_emulator"))
    require_service("GCS emulator", found, "pip install gcsfs gcp-storage-emulator")
    with GcsEmulator() as emu:
        emu.filesystem().mkdir(BUCKET)
        yield emu


def gcs_args(emu: GcsEmulator, prefix: str, execution: str, *extra: str) -> list[str]:
    return ["-s", f"GCS_BUCKET={BUCKET}", "-s", f"WFCRAWL_GCS_ENDPOINT={emu.url}", "-s", "WFCRAWL_GCS_TOKEN=anon",
            "-s", f"WFCRAWL_GCS_PREFIX={prefix}", "-s", "WFCRAWL_GCS_INSTANCE=i1", "-s", "WFCRAWL_GCS_MAX_ITEMS=3",
            "-s", "WFCRAWL_SUMMARY_ENABLED=False", "-a", f"execution_id={execution}", *extra]


def objects(emu: GcsEmulator, folder: str) -> dict[str, list[dict[str, Any]]]:
    """Object name (relative to ``folder``) -> its JSON lines."""
    fs = emu.filesystem()
    out = {}
    for path in sorted(fs.find(f"{BUCKET}/{folder}")):
        data = fs.cat_file(path)
        name = path.removeprefix(f"{BUCKET}/{folder}/")
        text = gzip.decompress(data).decode() if name.endswith(".gz") else data.decode()
        out[name] = [json.loads(line) for line in text.splitlines()] if name.endswith(".gz") else [json.loads(text)]
    return out


def relative(url: str, server: MockServer) -> str:
    return url.removeprefix(server.url_for("/").rstrip("/"))


def check_items(found: dict[str, list[dict[str, Any]]], server: MockServer) -> None:
    """The exact item lines: key, type, fields and provenance."""
    cards = [line for name, lines in found.items() if name.startswith("card/") for line in lines]
    assert {relative(c["_key"], server): {k: v for k, v in c.items() if not k.startswith("_")} for c in cards} == CARDS
    assert len(cards) == len(CARDS)
    products = [line for name, lines in found.items() if name.startswith("product/") for line in lines]
    assert {p["_key"]: {k: v for k, v in p.items() if not k.startswith("_")} for p in products} == PRODUCTS
    assert len(products) == len(PRODUCTS)
    assert {p["_type"] for p in products} == {"product"} and {c["_type"] for c in cards} == {"card"}
    lp5 = next(p for p in products if p["_key"] == "LP-005")["_meta"]
    assert (relative(lp5["url"], server), lp5["phase"], lp5["depth"], lp5["markers"]) == (
        "/shop/product/lp-005.html", "product", 3, ["start", "category", "next", "product"])
    [quarantined] = found["_quarantine/product/part-i1-000000.jsonl.gz"]
    assert {k: quarantined[k] for k in ("_type", "_key", "errors", "item")} == {
        "_type": "product", "_key": "LP-004",
        "errors": [{"path": "$.price", "validator": "type", "message": "None is not of type 'number'"}],
        "item": {"sku": "LP-004", "name": "Pixel Slate 12", "price": None, "tags": []},
    }


def test_objects_layout_and_contents(emulator: GcsEmulator, server: MockServer, tmp_path: Path) -> None:
    result = run_crawl(SHOP, *gcs_args(emulator, "crawls", "g1", "-s", "WFCRAWL_GCS_ARCHIVE_PAGES=True"),
                       base_url=server.url_for("/"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = objects(emulator, "crawls/shopstore/g1")
    # Rotation by count (WFCRAWL_GCS_MAX_ITEMS=3): exact object names and sizes.
    assert {name: len(lines) for name, lines in found.items()} == {
        "_instances/i1.json": 1,
        "_pages/part-i1-000000.jsonl.gz": 3, "_pages/part-i1-000001.jsonl.gz": 3,
        "_pages/part-i1-000002.jsonl.gz": 3, "_pages/part-i1-000003.jsonl.gz": 3,
        "_quarantine/product/part-i1-000000.jsonl.gz": 1,
        "card/part-i1-000000.jsonl.gz": 3, "card/part-i1-000001.jsonl.gz": 3, "card/part-i1-000002.jsonl.gz": 2,
        "product/part-i1-000000.jsonl.gz": 3, "product/part-i1-000001.jsonl.gz": 3,
        "product/part-i1-000002.jsonl.gz": 1,
    }
    check_items(found, server)
    pages = [line for name, lines in found.items() if name.startswith("_pages/") for line in lines]
    assert sorted(relative(p["url"], server) for p in pages) == PAGES
    lp1 = next(p for p in pages if p["url"].endswith("/lp-001.html"))
    assert (lp1["status"], lp1["phase"], lp1["marker"], lp1["depth"], lp1["encoding"]) == (200, "product", "product", 2, "utf-8")
    assert '<h1 class="name">Aero 13 Laptop</h1>' in lp1["text"]
    assert found["_instances/i1.json"][0]["execution_id"] == "g1"
    stats = {k: v for k, v in result.stats.items() if k.startswith("wfcrawl/gcs/") and k != "wfcrawl/gcs/bytes"}
    assert stats == {"wfcrawl/gcs/objects": 11, "wfcrawl/gcs/items/written": 15,
                     "wfcrawl/gcs/items/quarantined": 1, "wfcrawl/gcs/pages/archived": 12}


def test_failed_uploads_are_retried_and_lose_nothing(emulator: GcsEmulator, server: MockServer, tmp_path: Path) -> None:
    emulator.failed.clear()
    emulator.fail_uploads(2, skip=2)  # the instance marker and one object go through, then two uploads fail
    # WFCRAWL_GCS_MAX_BYTES=1: rotation by size, every line closes its object.
    result = run_crawl(SHOP, *gcs_args(emulator, "retry", "g2", "-s", "WFCRAWL_STORAGE_RETRY_DELAY=0.1",
                                       "-s", "WFCRAWL_GCS_MAX_BYTES=1"),
                       base_url=server.url_for("/"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(emulator.failed) == 2
    found = objects(emulator, "retry/shopstore/g2")
    assert {name: len(lines) for name, lines in found.items()} == {
        "_instances/i1.json": 1, "_quarantine/product/part-i1-000000.jsonl.gz": 1,
        **{f"card/part-i1-{i:06d}.jsonl.gz": 1 for i in range(8)},
        **{f"product/part-i1-{i:06d}.jsonl.gz": 1 for i in range(7)},
    }
    check_items(found, server)
    assert (result.stats["wfcrawl/gcs/retries"], result.stats["wfcrawl/gcs/errors/OSError"]) == (2, 2)
    assert result.stats["wfcrawl/gcs/items/written"] == 15
    assert "GCS upload failed (OSError: Forbidden: " in result.stderr


def test_objects_are_closed_after_max_age(emulator: GcsEmulator, server: MockServer, tmp_path: Path) -> None:
    # Pages 0.2 s apart, objects closed 0.1 s after their first line: time, not
    # count (1000) or size, closes them, so one object cannot hold every card.
    result = run_crawl(SHOP, *gcs_args(emulator, "aged", "g3", "-s", "WFCRAWL_GCS_MAX_ITEMS=1000",
                                       "-s", "WFCRAWL_GCS_MAX_AGE=0.1", "-s", "DOWNLOAD_DELAY=0.2",
                                       "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1"),
                       base_url=server.url_for("/"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = objects(emulator, "aged/shopstore/g3")
    check_items(found, server)
    cards = sorted(name for name in found if name.startswith("card/"))
    assert len(cards) >= 2
    assert cards == [f"card/part-i1-{i:06d}.jsonl.gz" for i in range(len(cards))]


def test_bucket_problems_are_clear_errors(emulator: GcsEmulator) -> None:
    with pytest.raises(ConfigurationError) as exc:
        GcsObjectWriter("missing-bucket", endpoint=emulator.url, token="anon").open("x/_instances/i.json", {})
    assert str(exc.value) == f"GCS bucket gs://missing-bucket at {emulator.url} does not exist (GCS_BUCKET)"
    emulator.fail_uploads(1)  # e.g. a service account without write permission
    with pytest.raises(ConfigurationError) as exc:
        GcsObjectWriter(BUCKET, endpoint=emulator.url, token="anon").open("x/_instances/i.json", {})
    assert str(exc.value) == (
        f"cannot write to GCS bucket gs://{BUCKET} at {emulator.url} (GCS_BUCKET): "
        f"Forbidden: {emulator.url}/upload/storage/v1/b/{BUCKET}/o"
    )

    with pytest.raises(ConfigurationError) as exc:
        GcsConfig.from_settings(Settings({**DEFAULTS, "GCS_BUCKET": "gs://Bad_Bucket!"}))
    assert str(exc.value) == "GCS_BUCKET 'Bad_Bucket!' is not a valid bucket name"
