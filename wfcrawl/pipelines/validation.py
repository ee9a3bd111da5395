"""Item keys and JSON Schema validation: the first wfcrawl item pipeline.

For every item (any type ``itemadapter`` reads: dict, ``scrapy.Item``,
dataclass, attrs, pydantic) it sets ``_key`` (see :mod:`wfcrawl.items`), then
checks the item's fields against the JSON Schema its workflow attaches to the
item type (``items: {product: {schema: {...}}}``). An invalid item, or one
missing a key field, is dropped with :class:`InvalidItem`: counted by reason
(``wfcrawl/validation/invalid/<type>/<reason>``), logged once per reason, and
quarantined by the storage pipelines (which listen to ``item_dropped``), so it
is kept, never silently lost.

Active when the workflow has an ``items:`` section or a storage back end
(``DATABASE_URL``, ``GCS_BUCKET``) is configured; otherwise items pass
untouched (no ``_key``). An object that is not an item passes untouched too,
counted in ``wfcrawl/validation/unsupported`` and logged once per type.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem, NotConfigured

from wfcrawl.context import CrawlContext
from wfcrawl.items import ItemKeys, UnsupportedItems, adapt, fields_of, provenance, type_of
from wfcrawl.settings.table import read

logger = logging.getLogger(__name__)


class InvalidItem(DropItem):
    """An item that failed validation; ``errors`` are ``{"path", "validator", "message"}`` dicts."""

    def __init__(self, item_type: str, errors: list[dict[str, str]]) -> None:
        self.item_type = item_type
        self.errors = errors
        self.reasons = sorted({e["validator"] for e in errors})
        shown = "; ".join(f"{e['path']}: {e['message']}" for e in errors[:3])
        # Logged once per reason by the pipeline, not once per item by Scrapy.
        super().__init__(f"invalid {item_type} item: {shown}", log_level="DEBUG")


def storage_configured(settings: Any) -> bool:
    return bool(read(settings, "DATABASE_URL")) or bool(read(settings, "GCS_BUCKET"))


class ItemValidationPipeline:
    def __init__(self, crawler: Crawler, specs: dict[str, Any], validate: bool) -> None:
        self.crawler = crawler
        self.specs = specs
        self.validate = validate
        self.keys = ItemKeys({t: s.key for t, s in specs.items() if s.key})
        self._warned: set[tuple[str, str]] = set()
        self.unsupported = UnsupportedItems(crawler.stats, "wfcrawl/validation/unsupported",
                                            "not keyed nor validated", logger)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ItemValidationPipeline:
        specs = dict(CrawlContext.of(crawler).item_specs)
        if not specs and not storage_configured(crawler.settings):
            raise NotConfigured  # nothing to key or validate
        return cls(crawler, specs, read(crawler.settings, "WFCRAWL_VALIDATION_ENABLED"))

    def process_item(self, item: Any) -> Any:
        adapter = adapt(item)
        if adapter is None:
            self.unsupported.refuse(item, self.crawler.spider)
            return item
        missing = self.keys.assign(adapter)
        item_type = type_of(adapter)
        errors = [
            {"path": f"$.{name}", "validator": "key", "message": f"key field {name!r} is missing or empty"}
            for name in missing
        ]
        spec = self.specs.get(item_type)
        if self.validate and spec is not None and spec.validator is not None:
            found = sorted(spec.validator.iter_errors(fields_of(adapter)), key=lambda e: (e.json_path, e.validator))
            errors.extend({"path": e.json_path, "validator": str(e.validator), "message": e.message} for e in found)
        if errors:
            self._invalid(adapter, item_type, errors)
        return item

    def _invalid(self, item: Mapping[str, Any], item_type: str, errors: list[dict[str, str]]) -> None:
        exc = InvalidItem(item_type, errors)
        stats = self.crawler.stats
        assert stats is not None
        stats.inc_value("wfcrawl/validation/invalid")
        for reason in exc.reasons:
            stats.inc_value(f"wfcrawl/validation/invalid/{item_type}/{reason}")
            if (item_type, reason) not in self._warned:
                self._warned.add((item_type, reason))
                example = next(e for e in errors if e["validator"] == reason)
                logger.warning(
                    "Invalid %s items (%s), e.g. at %s: %s: %s (counted in wfcrawl/validation/invalid/%s/%s)",
                    item_type, reason, provenance(item).get("url", "?"), example["path"], example["message"],
                    item_type, reason, extra={"spider": self.crawler.spider},
                )
        raise exc
