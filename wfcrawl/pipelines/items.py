"""The item envelope and stable item keys.

A WorkflowSpider item is a dict: the extracted fields plus ``_type`` (item
type), ``_meta`` (provenance, shared read-only by the items of one response)
and, once the first wfcrawl pipeline has seen it, ``_key`` (its stable key).

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
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

TYPE, META, KEY = "_type", "_meta", "_key"
ENVELOPE = frozenset({TYPE, META, KEY})
MAX_KEY_LENGTH = 512


def fields_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """The extracted fields (the item without its envelope)."""
    fields = dict(item)
    for name in ENVELOPE:
        fields.pop(name, None)
    return fields


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
        item_type = str(item.get(TYPE, ""))
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

    def assign(self, item: dict[str, Any]) -> list[str]:
        """Set ``item["_key"]`` (unless the item brings its own); returns missing key fields."""
        key, missing = self.key(item)
        if not (isinstance(item.get(KEY), str) and item[KEY]):
            item[KEY] = key
        return missing


def provenance(item: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = item.get(META)
    return meta if isinstance(meta, Mapping) else {}
