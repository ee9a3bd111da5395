"""The item envelope, stable item keys, and items of any type read alike.

A WorkflowSpider item is a dict: the extracted fields plus ``_type`` (item
type), ``_meta`` (provenance, shared read-only by the items of one response)
and, once the first wfcrawl pipeline has seen it, ``_key`` (its stable key).

Items of a project's own spiders may be of any type ``itemadapter`` knows
(dict, ``scrapy.Item``, dataclass, attrs, pydantic): pipelines read every item
through :func:`adapt`. Such an item's type is its ``_type`` field or else its
class name; an item class without a ``_key`` field cannot hold its key, which
each store then computes again the same way (from its key fields, or the hash
of its fields: such items rarely carry ``_meta``).

The key makes storage idempotent (upserts, no duplicate rows on retries or
re-crawls). It is, per item type:

- the workflow's key fields (``items: {product: {key: [sku]}}``): the value
  itself for one string field, else the compact JSON list of the values;
- otherwise ``<url>#<position>``: the item's position among the items of its
  type extracted from that page (URLs are canonical, without fragments);
- for items without provenance (not from a WorkflowSpider): ``sha256:`` + the
  hash of the item's JSON.

Keys longer than :data:`MAX_KEY_LENGTH` become ``sha256:<hex digest>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping
from typing import Any

from itemadapter import ItemAdapter

TYPE, META, KEY = "_type", "_meta", "_key"
ENVELOPE = frozenset({TYPE, META, KEY})
MAX_KEY_LENGTH = 512


def adapt(item: Any) -> MutableMapping[str, Any] | None:
    """The item as a mapping: a dict as it is, any other item type through
    :class:`~itemadapter.ItemAdapter`; ``None`` for an object that is not an item."""
    if isinstance(item, dict):
        return item
    if ItemAdapter.is_item(item):
        return ItemAdapter(item)
    return None


def type_of(item: Mapping[str, Any]) -> str:
    """The item type: ``_type``; for an item class without one, the class name."""
    if isinstance(item, ItemAdapter):
        value = item.get(TYPE)
        return type(item.item).__name__ if value is None else str(value)
    return str(item.get(TYPE, ""))


def record_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """The whole item as plain data (nested items too), envelope included."""
    return item.asdict() if isinstance(item, ItemAdapter) else dict(item)


def fields_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """The extracted fields (the item without its envelope)."""
    fields = record_of(item)
    for name in ENVELOPE:
        fields.pop(name, None)
    return fields


class UnsupportedItems:
    """What a pipeline does with an object that is not an item: it passes it on
    untouched, counts it in ``stat`` and logs once per type what was not done."""

    def __init__(self, stats: Any, stat: str, consequence: str, log: logging.Logger) -> None:
        self.stats = stats
        self.stat = stat
        self.consequence = consequence
        self.log = log
        self._seen: set[str] = set()

    def refuse(self, item: Any, spider: Any) -> None:
        self.stats.inc_value(self.stat)
        name = f"{type(item).__module__}.{type(item).__qualname__}"
        if name not in self._seen:
            self._seen.add(name)
            self.log.warning(
                "%s objects are not items (itemadapter reads dicts, scrapy.Item, dataclass, attrs and pydantic "
                "objects): %s (counted in %s)", name, self.consequence, self.stat, extra={"spider": spider},
            )


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


def _bounded(key: str) -> str:
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


class ItemKeys:
    """Computes ``_key`` for items in the order the spider produced them.

    Positions are counted per response (its ``_meta`` object) and item type;
    the last ``remember`` responses are tracked, which is plenty since the
    items of one response arrive together.
    """

    def __init__(self, key_fields: Mapping[str, tuple[str, ...]], *, remember: int = 1024) -> None:
        self.key_fields = dict(key_fields)
        self.remember = remember
        # id(_meta) -> (_meta, {type: next position}); holding _meta keeps its id unique.
        self._pages: OrderedDict[int, tuple[Any, dict[str, int]]] = OrderedDict()

    def _position(self, meta: Any, item_type: str) -> int:
        entry = self._pages.get(id(meta))
        if entry is None or entry[0] is not meta:
            entry = (meta, {})
            self._pages[id(meta)] = entry
            if len(self._pages) > self.remember:
                self._pages.popitem(last=False)
        counters = entry[1]
        position = counters.get(item_type, 0)
        counters[item_type] = position + 1
        return position

    def key(self, item: Mapping[str, Any]) -> tuple[str, list[str]]:
        """``(key, missing key fields)``; with missing fields the key is the positional one."""
        item_type = type_of(item)
        meta = item.get(META)
        url = meta.get("url") if isinstance(meta, Mapping) else None
        position = self._position(meta, item_type) if url else None
        fields = self.key_fields.get(item_type, ())
        missing = [f for f in fields if _empty(item.get(f))]
        if fields and not missing:
            values = [item[f] for f in fields]
            key = values[0] if len(values) == 1 and isinstance(values[0], str) else _compact(values)
        elif url:
            key = f"{url}#{position}"
        else:
            key = "sha256:" + hashlib.sha256(_compact(fields_of(item)).encode("utf-8", "surrogatepass")).hexdigest()
        return _bounded(key), missing

    def assign(self, item: MutableMapping[str, Any]) -> list[str]:
        """Set ``item["_key"]`` (unless the item brings its own, or its class has no
        ``_key`` field); returns missing key fields."""
        key, missing = self.key(item)
        if not (isinstance(item.get(KEY), str) and item[KEY]):
            try:
                item[KEY] = key
            except KeyError:  # ItemAdapter: "<class> does not support field: _key"
                pass
        return missing


def provenance(item: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = item.get(META)
    return meta if isinstance(meta, Mapping) else {}
