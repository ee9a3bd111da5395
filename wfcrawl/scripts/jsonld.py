"""Structured data (schema.org JSON-LD) from ``<script type="application/ld+json">``.

``wfcrawl.scripts.jsonld:objects`` yields one item per JSON-LD object whose
``@type`` is in ``args.types`` (all objects when absent), of the node's item
type, and sets the value ``jsonld`` (the list of all objects) for later
nodes' ``var: jsonld`` fields. Malformed blocks are skipped and counted by
the caller's stats as node output, never fatal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from wfcrawl.workflow import ScriptContext, Value


def _flatten(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, list):
        for entry in data:
            yield from _flatten(entry)
    elif isinstance(data, dict):
        if "@graph" in data:
            yield from _flatten(data["@graph"])
        else:
            yield data


def objects(response: Any, context: ScriptContext) -> Iterator[Any]:
    wanted = context.args.get("types")
    found: list[dict[str, Any]] = []
    for text in response.xpath('//script[@type="application/ld+json"]/text()').getall():
        try:
            found.extend(_flatten(json.loads(text)))
        except ValueError:
            continue
    yield Value("jsonld", found)
    for obj in found:
        kind = obj.get("@type")
        kinds = kind if isinstance(kind, list) else [kind]
        if wanted is None or any(k in wanted for k in kinds):
            yield obj
