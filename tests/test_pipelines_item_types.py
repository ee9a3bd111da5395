"""Items of a host project's own types (scrapy.Item, dataclass) through validation, PostgreSQL and GCS.

A project pipeline placed before wfcrawl's turns the shop crawl's dict items into a
``scrapy.Item`` class (cards, without a ``_key`` field) and a dataclass (products,
with one). The rows, objects and quarantine must be exactly those of the dict items.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_crawl
from tests.mockserver import MockServer
from tests.services import GcsEmulator, TempDatabase
from tests.test_pipelines_gcs import check_items, emulator, gcs_args, objects  # noqa: F401 - fixture
from tests.test_pipelines_postgres import (
    EXPECTED_ITEMS,
    EXPECTED_QUARANTINE,
    SHOP,
    item_rows,
    quarantine_rows,
    storage_args,
)

pytestmark = pytest.mark.requires_postgres

PROJECT_ITEMS = '''\
import dataclasses
from typing import Any

import scrapy


class Card(scrapy.Item):
    name = scrapy.Field()
    price = scrapy.Field()
    _type = scrapy.Field()
    _meta = scrapy.Field()


@dataclasses.dataclass
class Product:
    sku: Any
    name: Any
    price: Any
    tags: Any
    _type: str
    _meta: Any
    _key: Any = None


class ToProjectItems:
    def process_item(self, item):
        return Product(**item) if item["_type"] == "product" else Card(**item)
'''


def test_scrapy_items_and_dataclasses_are_validated_and_stored_like_dicts(
    database: TempDatabase, emulator: GcsEmulator, server: MockServer, tmp_path: Path,  # noqa: F811
) -> None:
    (tmp_path / "projectitems.py").write_text(PROJECT_ITEMS)
    schema, execution = f"t_{uuid.uuid4().hex[:8]}", "types-1"
    pipelines = json.dumps({"projectitems.ToProjectItems": 50})
    result = run_crawl(
        SHOP, *storage_args(database.dsn, schema, execution), *gcs_args(emulator, "types", execution),
        "-s", f"ITEM_PIPELINES={pipelines}", base_url=server.url_for("/"), tmp_path=tmp_path,
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ToProjectItems" in result.stderr  # the project pipeline did run
    assert item_rows(database.dsn, schema, server) == EXPECTED_ITEMS
    assert quarantine_rows(database.dsn, schema) == EXPECTED_QUARANTINE
    check_items(objects(emulator, f"types/shopstore/{execution}"), server)
    stats = {k: v for k, v in result.stats.items()
             if k.startswith(("wfcrawl/validation/", "wfcrawl/postgres/items/", "wfcrawl/gcs/items/"))}
    assert stats == {
        "wfcrawl/validation/invalid": 1,
        "wfcrawl/validation/invalid/product/type": 1,
        "wfcrawl/postgres/items/inserted": 15,
        "wfcrawl/postgres/items/updated": 0,
        "wfcrawl/postgres/items/quarantined": 1,
        "wfcrawl/postgres/items/superseded": 0,
        "wfcrawl/gcs/items/written": 15,
        "wfcrawl/gcs/items/quarantined": 1,
    }
    # The feed got the 15 valid items, in the project's types (exported through itemadapter).
    assert sorted(i.get("sku") or i["name"] for i in result.items) == sorted(
        [*(row[6].get("sku") or row[6]["name"] for row in EXPECTED_ITEMS)])
