"""An execution's items, where the dashboard can reach them: the default sink's JSON lines file.

A launcher with no item store configured writes each execution's items to
``WFCRAWL_LAUNCHER_ITEMS_DIR/<execution id>.jsonl`` (``params.items_file``): each
line an item with ``_type`` and ``_meta`` (its provenance). Reads are bounded:
the last items from the file's end, fill rates from its first bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Bytes read for fill rates (a larger file's first items stand for it).
FILL_RATE_BYTES = 16 * 1024 * 1024


def last_items(path: str | None, count: int = 20, max_bytes: int = 256 * 1024) -> list[dict[str, Any]] | None:
    """The last items of the default sink's JSON lines file (None: no such file here)."""
    if not path:
        return None
    file = Path(path)
    try:
        with file.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return None
    lines = data.decode("utf-8", "replace").splitlines()
    if size > max_bytes:
        lines = lines[1:]  # the first may be cut
    items = []
    for line in lines[-count:]:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            meta = item.pop("_meta", {})
            items.append({"type": item.pop("_type", ""), "fields": item, "meta": meta if isinstance(meta, dict) else {}})
    return items[::-1]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def item_fill_rates(path: Any, max_bytes: int = FILL_RATE_BYTES) -> dict[str, float]:
    """``type.field`` -> the fraction of the type's items in which the field is not empty,
    from the items file (empty: no such file here)."""
    if not isinstance(path, str) or not path:
        return {}
    counts: dict[str, int] = {}
    filled: dict[str, int] = {}
    try:
        with Path(path).open("rb") as f:
            data = f.read(max_bytes)
    except OSError:
        return {}
    lines = data.splitlines()
    if len(data) == max_bytes:
        lines = lines[:-1]  # the last may be cut
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        item_type = str(item.get("_type", "item"))
        counts[item_type] = counts.get(item_type, 0) + 1
        for name, value in item.items():
            if not name.startswith("_"):
                key = f"{item_type}.{name}"
                filled[key] = filled.get(key, 0) + (0 if _empty(value) else 1)
    return {key: filled[key] / counts[key.split(".", 1)[0]] for key in sorted(filled)}
