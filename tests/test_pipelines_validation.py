"""Item keys, JSON Schema validation and the workflow ``items:`` section."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any

import pytest
import scrapy
from jsonschema import Draft202012Validator
from scrapy.exceptions import NotConfigured
from scrapy.utils.test import get_crawler

from tests.conftest import problems
from wfcrawl.exceptions import WorkflowError
from wfcrawl.items import ItemKeys
from wfcrawl.pipelines.validation import InvalidItem, ItemValidationPipeline
from wfcrawl.spiders.workflow import WorkflowSpider
from wfcrawl.workflow import load_text
from wfcrawl.workflow.plan import ItemSpec

DOC = """\
name: shop
base_url: http://localhost:8000
start_urls: [/]
phases:
  listing:
    nodes:
      - type: extract
        item: card
        rows: div.card
        fields: {name: a::text}
      - type: extract_links
        css: a.product
        marker: product
    transitions:
      - {marker: product, to: detail}
  detail:
    nodes:
      - type: extract
        item: product
        fields:
          sku: .sku::text
          name: h1::text
          price: {css: .price::text, type: float}
items:
  product:
    key: [sku]
    table: products
    schema:
      type: object
      required: [name, price]
      properties:
        price: {type: number, minimum: 0}
        name: {type: string, minLength: 1}
"""


def test_items_section_compiles_into_the_plan() -> None:
    plan = load_text(DOC)
    spec = plan.items["product"]
    assert (spec.type, spec.key, spec.table) == ("product", ("sku",), "products")
    assert spec.validator.is_valid({"name": "x", "price": 1.0})
    assert not spec.validator.is_valid({"name": "x", "price": -1})


def test_items_section_errors_are_located() -> None:
    bad = DOC.replace("key: [sku]", "key: [skuu]").replace("table: products", "table: executions").replace(
        "minimum: 0", "minimum: zero"
    ) + "  offer:\n    key: [id]\n"
    assert problems(bad) == [
        "26:11: $.items.product.key[0]: key field 'skuu' is not a field of $.phases.detail.nodes[0] (fields: sku, name, price)",
        "27:12: $.items.product.table: table name 'executions' is reserved by wfcrawl",
        "32:40: $.items.product.schema.properties.price.minimum: invalid JSON Schema: 'zero' is not of type 'number'",
        "34:3: $.items.offer: no extract or script node produces items of type 'offer'",
    ]


def test_table_names_from_workflows_are_restricted() -> None:
    bad = DOC.replace("table: products", "table: 'x\"; DROP TABLE items; --'")
    assert problems(bad) == [
        "27:12: $.items.product.table: 'x\"; DROP TABLE items; --' does not match the pattern '^[a-z_][a-z0-9_]*$'"
    ]
    with pytest.raises(WorkflowError):
        load_text(bad)


# ---------------------------------------------------------------- keys


def page(url: str) -> dict[str, Any]:
    return {"workflow": "shop", "url": url, "phase": "listing", "markers": ["start"], "depth": 0}


def test_keys_are_key_fields_or_url_and_position() -> None:
    keys = ItemKeys({"product": ("sku",), "pair": ("a", "b")})
    p1, p2 = page("http://x/1"), page("http://x/2")
    assert keys.key({"_type": "card", "_meta": p1, "n": 1}) == ("http://x/1#0", [])
    assert keys.key({"_type": "card", "_meta": p1, "n": 2}) == ("http://x/1#1", [])
    assert keys.key({"_type": "other", "_meta": p1}) == ("http://x/1#0", [])  # positions count per type
    assert keys.key({"_type": "card", "_meta": p2}) == ("http://x/2#0", [])
    assert keys.key({"_type": "product", "_meta": p2, "sku": "A-1"}) == ("A-1", [])
    assert keys.key({"_type": "pair", "_meta": p2, "a": 1, "b": "x"}) == ('[1,"x"]', [])
    # A missing key field: the positional key, and the field reported.
    assert keys.key({"_type": "product", "_meta": p2, "sku": ""}) == ("http://x/2#1", ["sku"])
    long_key = keys.key({"_type": "product", "_meta": p2, "sku": "s" * 600})[0]
    assert long_key == "sha256:" + hashlib.sha256(b"s" * 600).hexdigest()
    no_meta = keys.key({"_type": "x", "a": 1})[0]
    assert no_meta == "sha256:" + hashlib.sha256(b'{"a":1}').hexdigest()


# ---------------------------------------------------------------- pipeline


def pipeline(settings: dict[str, Any] | None = None, doc: str = DOC) -> ItemValidationPipeline:
    crawler = get_crawler(settings_dict={"WFCRAWL_VALIDATION_ENABLED": True, **(settings or {})})
    spider = WorkflowSpider()
    spider.plan, spider.execution_id, spider.execution_id_given = load_text(doc), "e1", True
    crawler.spider = spider
    return ItemValidationPipeline.from_crawler(crawler)


def validation_stats(pipe: ItemValidationPipeline) -> dict[str, Any]:
    stats = pipe.crawler.stats.get_stats()
    return {k: v for k, v in stats.items() if k.startswith("wfcrawl/validation/")}


def test_valid_items_get_their_key_and_pass() -> None:
    pipe = pipeline()
    item = {"sku": "A-1", "name": "Aero", "price": 3.5, "_type": "product", "_meta": page("http://x/p")}
    assert pipe.process_item(item) is item
    assert item["_key"] == "A-1"
    card = {"name": "c", "_type": "card", "_meta": page("http://x/l")}
    assert pipe.process_item(card)["_key"] == "http://x/l#0"


def test_invalid_items_are_dropped_with_reasons_and_counted() -> None:
    pipe = pipeline()
    meta = page("http://x/p")
    with pytest.raises(InvalidItem) as exc:
        pipe.process_item({"sku": "A-2", "name": "", "price": -1, "_type": "product", "_meta": meta})
    assert exc.value.errors == [
        {"path": "$.name", "validator": "minLength", "message": "'' should be non-empty"},
        {"path": "$.price", "validator": "minimum", "message": "-1 is less than the minimum of 0"},
    ]
    with pytest.raises(InvalidItem) as exc:
        pipe.process_item({"sku": None, "name": "N", "_type": "product", "_meta": meta})
    assert exc.value.errors == [
        {"path": "$.sku", "validator": "key", "message": "key field 'sku' is missing or empty"},
        {"path": "$", "validator": "required", "message": "'price' is a required property"},
    ]
    assert exc.value.reasons == ["key", "required"]
    assert validation_stats(pipe) == {
        "wfcrawl/validation/invalid": 2,
        "wfcrawl/validation/invalid/product/minLength": 1,
        "wfcrawl/validation/invalid/product/minimum": 1,
        "wfcrawl/validation/invalid/product/key": 1,
        "wfcrawl/validation/invalid/product/required": 1,
    }


def test_validation_can_be_switched_off_keys_stay() -> None:
    pipe = pipeline({"WFCRAWL_VALIDATION_ENABLED": False})
    item = {"sku": "A-3", "price": -5, "_type": "product", "_meta": page("http://x/p")}
    assert pipe.process_item(item)["_key"] == "A-3"


def test_without_items_section_or_storage_the_pipeline_is_off() -> None:
    plain = DOC[: DOC.index("items:")]
    with pytest.raises(NotConfigured):
        pipeline(doc=plain)
    assert pipeline({"GCS_BUCKET": "b"}, doc=plain).specs == {}


# ---------------------------------------------------------------- item types


class Product(scrapy.Item):
    """A project's item class without a ``_key`` field: it cannot hold its key."""

    sku = scrapy.Field()
    name = scrapy.Field()
    price = scrapy.Field()


@dataclasses.dataclass
class Offer:
    sku: str | None
    price: float | None
    _key: str | None = None


def typed_pipeline() -> ItemValidationPipeline:
    crawler = get_crawler(settings_dict={"WFCRAWL_VALIDATION_ENABLED": True})
    schema = {"type": "object", "required": ["price"], "properties": {"price": {"type": "number", "minimum": 0}}}
    specs = {t: ItemSpec(t, ("sku",), None, schema, Draft202012Validator(schema)) for t in ("Product", "Offer")}
    return ItemValidationPipeline(crawler, specs, True)


def test_items_of_any_itemadapter_type_are_keyed_and_validated() -> None:
    pipe = typed_pipeline()
    offer = Offer(sku="O-1", price=2.5)
    assert pipe.process_item(offer) is offer and offer._key == "O-1"  # its class has the field: keyed
    product = Product(sku="P-1", name="Aero", price=3.5)
    assert pipe.process_item(product) is product and "_key" not in product  # no field: stores compute it
    with pytest.raises(InvalidItem) as exc:
        pipe.process_item(Offer(sku="", price=-1))
    assert exc.value.errors == [
        {"path": "$.sku", "validator": "key", "message": "key field 'sku' is missing or empty"},
        {"path": "$.price", "validator": "minimum", "message": "-1 is less than the minimum of 0"},
    ]
    with pytest.raises(InvalidItem) as exc:
        pipe.process_item(Product(sku="P-2", name="Nimbus"))
    assert exc.value.errors == [{"path": "$", "validator": "required", "message": "'price' is a required property"}]
    assert validation_stats(pipe) == {
        "wfcrawl/validation/invalid": 2,
        "wfcrawl/validation/invalid/Offer/key": 1,
        "wfcrawl/validation/invalid/Offer/minimum": 1,
        "wfcrawl/validation/invalid/Product/required": 1,
    }


def test_objects_that_are_not_items_pass_counted_and_logged_once_per_type(caplog: pytest.LogCaptureFixture) -> None:
    pipe = typed_pipeline()
    with caplog.at_level(logging.WARNING, logger="wfcrawl.pipelines.validation"):
        assert [pipe.process_item(x) for x in ("a", "b", 3)] == ["a", "b", 3]
    assert pipe.crawler.stats.get_value("wfcrawl/validation/unsupported") == 3
    assert [r.getMessage() for r in caplog.records] == [
        f"builtins.{name} objects are not items (itemadapter reads dicts, scrapy.Item, dataclass, attrs and "
        "pydantic objects): not keyed nor validated (counted in wfcrawl/validation/unsupported)"
        for name in ("str", "int")
    ]
