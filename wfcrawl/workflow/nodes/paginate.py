"""``paginate``: the next page of a numbered sequence, until a stop condition.

The stop conditions are checked on the current page: ``stop_when`` (a
JMESPath expression that is truthy, or a CSS/XPath selector that matches),
``stop_when_empty`` (a selector that matches nothing), ``max_pages``; and
``stop_when_no_new``, which the spider checks once the page's other outputs
are known (it needs to remember what earlier pages gave).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from w3lib.url import canonicalize_url

from wfcrawl.workflow.compiler import Compiler
from wfcrawl.workflow.fields import Field, Scope, extract_object
from wfcrawl.workflow.fieldspec import compile_json_from, compile_values, uses_json
from wfcrawl.workflow.nodes.base import Node, NodeType, register
from wfcrawl.workflow.page import Link, Page
from wfcrawl.workflow.selectors import Selection
from wfcrawl.workflow.source import DocPath
from wfcrawl.workflow.template import Template

STOP_KEYS = ("stop_when", "stop_when_empty", "stop_when_no_new", "max_pages")


def matches(selection: Selection, page: Page, json_from: Field | None = None) -> bool:
    """Whether ``selection`` finds something truthy on the page (an element, a
    non-empty string, a true or non-zero JMESPath/XPath result)."""
    return any(
        not (isinstance(v, (bool, int, float, str, list, dict)) and not v) and v is not None
        for v in selection.apply(page.context_for(selection, json_from))
    )


@dataclass(frozen=True)
class PaginateNode(Node):
    offloadable = True

    url: Template
    marker: str
    start: int
    step: int
    stop_when: Selection | None
    max_pages: int | None
    stop_when_empty: Selection | None = None
    #: ``items`` or ``links``: the spider drops the next-page link when the page gave none new.
    stop_when_no_new: str | None = None
    values: tuple[Field, ...] = ()
    values_json: bool = False
    refetch: int | None = None
    json_from: Field | None = None

    def run(self, page: Page) -> Iterator[Link]:
        current = page.page_number if page.page_number is not None else self.start
        following = current + self.step
        if self.max_pages is not None and following > self.start + (self.max_pages - 1) * self.step:
            return
        if self.stop_when is not None and matches(self.stop_when, page, self.json_from):
            return
        if self.stop_when_empty is not None and not matches(self.stop_when_empty, page, self.json_from):
            return
        values: dict[str, Any] = {}
        if self.values:
            context = page.json_document(self.json_from) if self.values_json else page.root
            values = extract_object(self.values, context, Scope(page.values, page.base_url))
        href = self.url.expand({**values, "page": following})
        if href is None:
            page.count("wfcrawl/links/dropped/missing_value")
            return
        url = canonicalize_url(urljoin(page.url, href))
        page.count("wfcrawl/links/extracted")
        yield Link(url, self.marker, following, values=values or None, refetch=self.refetch,
                   if_new=self.stop_when_no_new)


def compile_paginate(
    c: Compiler, spec: dict[str, Any], path: DocPath, label: str, when: frozenset[str] | None
) -> PaginateNode | None:
    stop = None
    if "stop_when" in spec:
        condition = spec["stop_when"]
        # A string is JMESPath (as it always was); an object names css, xpath or jmespath.
        stop = c.compile_selection("jmespath", condition, (*path, "stop_when")) if isinstance(condition, str) \
            else c.selection_value(condition, (*path, "stop_when"))
    empty = c.selection_value(spec["stop_when_empty"], (*path, "stop_when_empty")) \
        if "stop_when_empty" in spec else None
    if not any(k in spec for k in STOP_KEYS):
        c.error(path, "paginate needs a stop condition (stop_when, stop_when_empty, stop_when_no_new) "
                "or max_pages (or several), or it never stops")
    values = compile_values(c, spec.get("values"), (*path, "values"))
    url = c.template(spec["url"], (*path, "url"), ["page", *(f.short_name for f in values)])
    json_from = compile_json_from(c, spec.get("json_from"), (*path, "json_from"))
    if json_from is not None and not (uses_json(values) or any(s is not None and s.is_json for s in (stop, empty))):
        c.error((*path, "json_from"), "json_from needs JMESPath in stop_when, stop_when_empty or values "
                "(it is the JSON they read)")
    if url is None:
        return None
    return PaginateNode(
        label, when, url, spec["marker"], spec.get("start", 1), spec.get("step", 1),
        stop, spec.get("max_pages"), empty, spec.get("stop_when_no_new"), values, uses_json(values),
        spec.get("refetch"), json_from,
    )


register(NodeType("paginate", compile_paginate, routes="marker"))
