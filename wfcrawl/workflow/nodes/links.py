"""``extract_links``: links of the page, canonicalised and filtered, with a marker."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from w3lib.url import canonicalize_url

from wfcrawl.workflow.compiler import SELECTION_KEYS, Compiler
from wfcrawl.workflow.fields import Field, Scope, extract_object
from wfcrawl.workflow.fieldspec import compile_json_from, compile_values, uses_json
from wfcrawl.workflow.nodes.base import Node, NodeType, register
from wfcrawl.workflow.page import Link, Page
from wfcrawl.workflow.regex import Regex
from wfcrawl.workflow.selectors import Selection, text_of
from wfcrawl.workflow.source import DocPath
from wfcrawl.workflow.template import Template

_SKIP_SCHEMES = ("javascript:", "mailto:", "tel:", "data:", "#")


def host_allowed(host: str, domains: tuple[str, ...]) -> bool:
    if not domains:
        return True
    return any(host == d or host.endswith("." + d) for d in domains)


@dataclass(frozen=True)
class LinksNode(Node):
    offloadable = True

    selection: Selection | None  # None: the URL comes from the `url` template
    attr: str
    marker: str
    limit: int | None
    allow: tuple[Regex, ...]
    deny: tuple[Regex, ...]
    domains: str  # allowed | same | any
    allowed_domains: tuple[str, ...]
    render: Mapping[str, Any] | None = None  # plain data, see wfcrawl.workflow.render
    rows: Selection | None = None
    url: Template | None = None
    values: tuple[Field, ...] = ()
    json_from: Field | None = None
    refetch: int | None = None
    values_json: bool = False  # the values are JMESPath: evaluated on the JSON document

    def _keep(self, url: str, page_host: str, dropped: dict[str, int]) -> bool:
        parts = urlsplit(url)
        reason = None
        if parts.scheme not in ("http", "https"):
            reason = "scheme"
        elif self.domains == "same" and (parts.hostname or "") != page_host:
            reason = "domain"
        elif self.domains == "allowed" and not host_allowed(parts.hostname or "", self.allowed_domains):
            reason = "domain"
        elif (self.allow and not any(r.search(url) for r in self.allow)) or any(r.search(url) for r in self.deny):
            reason = "filtered"
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
        return reason is None

    def _hrefs(self, page: Page, dropped: dict[str, int]) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """(href, values) for each link the page holds, before filtering."""
        scope = Scope(page.values, page.base_url)
        if self.rows is not None:
            contexts = self.rows.apply(page.context_for(self.rows, self.json_from))
        else:  # one context: the page (its JSON when the values are JMESPath)
            contexts = [page.json_document(self.json_from) if self.values_json else page.root]
        for context in contexts:
            values = extract_object(self.values, context, scope) if self.values else None
            if self.url is not None:
                href = self.url.expand(values or {})
                if href is None:
                    dropped["missing_value"] = dropped.get("missing_value", 0) + 1
                else:
                    yield href, values
                continue
            assert self.selection is not None
            found = self.selection.apply(context if self.rows is not None else
                                         page.context_for(self.selection, self.json_from))
            for raw in found[:1] if self.rows is not None else found:
                if not self.selection.is_json and not isinstance(raw, str):
                    raw = raw.get(self.attr) if hasattr(raw, "get") else text_of(raw)
                if isinstance(raw, str):
                    yield raw, values

    def run(self, page: Page) -> Iterator[Link]:
        seen: dict[str, dict[str, Any] | None] = {}
        dropped: dict[str, int] = {}
        page_host = urlsplit(page.url).hostname or ""
        for raw, values in self._hrefs(page, dropped):
            href = raw.strip()
            if not href or href.lower().startswith(_SKIP_SCHEMES):
                continue
            url = canonicalize_url(urljoin(page.base_url, href))
            if url not in seen and self._keep(url, page_host, dropped):
                seen[url] = values
        urls = list(seen)
        if self.limit is not None and len(urls) > self.limit:
            dropped["limit"] = len(urls) - self.limit
            urls = urls[: self.limit]
        for reason, n in dropped.items():
            page.count(f"wfcrawl/links/dropped/{reason}", n)
        page.count("wfcrawl/links/extracted", len(urls))
        for url in urls:
            yield Link(url, self.marker, render=self.render, values=seen[url], refetch=self.refetch)


def compile_links(
    c: Compiler, spec: dict[str, Any], path: DocPath, label: str, when: frozenset[str] | None
) -> LinksNode | None:
    values = compile_values(c, spec.get("values"), (*path, "values"))
    json_from = compile_json_from(c, spec.get("json_from"), (*path, "json_from"))
    rows = c.selection_value(spec["rows"], (*path, "rows")) if "rows" in spec else None
    url = None
    sel: Selection | None = None
    if "url" in spec:
        given = [k for k in (*SELECTION_KEYS, "attr") if k in spec]
        if given:
            c.error((*path, given[0]), f"give either {given[0]!r} (where the links are) or 'url' (a template)",
                    key=True)
        url = c.template(spec["url"], (*path, "url"), (f.short_name for f in values))
        if url is None:
            return None
    else:
        sel = c.selection(spec, path, default="a")
        if sel is None:
            return None
    json_values = uses_json(values)
    if values and rows is not None and rows.is_json != json_values:
        c.error((*path, "values"), "rows and values must both be JMESPath (JSON) or both CSS/XPath (HTML)")
    if json_from is not None and not (json_values or (rows is not None and rows.is_json) or (sel and sel.is_json)):
        c.error((*path, "json_from"), "json_from needs JMESPath in rows, jmespath or values (it is the JSON they read)")
    return LinksNode(
        label, when, sel, spec.get("attr", "href"), spec["marker"], spec.get("limit"),
        c.regexes(spec.get("allow"), (*path, "allow")), c.regexes(spec.get("deny"), (*path, "deny")),
        spec.get("domains", "allowed"), c.allowed_domains, c.render(spec, path),
        rows, url, values, json_from, spec.get("refetch"), json_values,
    )


register(NodeType("extract_links", compile_links, routes="marker"))
