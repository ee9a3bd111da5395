"""``extract``: an item (or one per row) from the page's fields."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from wfcrawl.workflow.compiler import Compiler
from wfcrawl.workflow.fields import Field, Scope, extract_object, missing_required
from wfcrawl.workflow.fieldspec import compile_fields, compile_json_from, uses_json
from wfcrawl.workflow.nodes.base import Node, NodeType, register
from wfcrawl.workflow.page import Item, Page
from wfcrawl.workflow.selectors import Selection
from wfcrawl.workflow.source import DocPath

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractNode(Node):
    offloadable = True

    item: str
    rows: Selection | None
    fields: tuple[Field, ...]
    uses_json: bool
    json_from: Field | None = None

    def run(self, page: Page) -> Iterator[Item]:
        context = page.json_document(self.json_from) if self.uses_json else page.root
        contexts = self.rows.apply(context) if self.rows is not None else [context]
        for row in contexts:
            scope = Scope(page.values, page.base_url)
            data = extract_object(self.fields, row, scope)
            for name in scope.invalid:
                page.count(f"wfcrawl/fields/invalid/{self.item}")
                logger.debug("Invalid value for field %s of %s at %s", name, self.item, page.url)
            missing = missing_required(self.fields, data)
            if missing:
                page.count("wfcrawl/items/dropped/missing_required")
                page.count(f"wfcrawl/items/dropped/missing_required/{self.item}")
                page.warn_once(
                    ("missing", self.item, tuple(missing)),
                    "Dropped %s item(s): required field(s) %s empty (first seen at %s)",
                    self.item, ", ".join(missing), page.url,
                )
                continue
            yield Item(self.item, data)


def compile_extract(
    c: Compiler, spec: dict[str, Any], path: DocPath, label: str, when: frozenset[str] | None
) -> ExtractNode:
    rows = c.selection_value(spec["rows"], (*path, "rows")) if "rows" in spec else None
    fields = compile_fields(c, spec["fields"], (*path, "fields"))
    json_fields = uses_json(fields)
    if rows is not None and rows.is_json != json_fields and fields:
        c.error((*path, "rows"), "rows and fields must all be JMESPath (JSON) or all CSS/XPath (HTML)")
    uses = json_fields or bool(rows and rows.is_json)
    json_from = compile_json_from(c, spec.get("json_from"), (*path, "json_from"))
    if json_from is not None and not uses:
        c.error((*path, "json_from"), "json_from needs JMESPath in rows or fields (it is the JSON they read)")
    return ExtractNode(label, when, spec["item"], rows, fields, uses, json_from)


register(NodeType("extract", compile_extract))
