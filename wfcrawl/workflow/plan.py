"""The compiled, immutable form of a workflow: what the spider runs.

Nodes take a :class:`Page` (one response plus its crawl context) and yield
outputs: :class:`Item`, :class:`Link`, :class:`FormSubmit` or :class:`Value`.
Nothing here imports Scrapy; the spider turns outputs into items and requests.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from w3lib.html import get_base_url
from w3lib.url import canonicalize_url

from wfcrawl.workflow.fields import Field, Scope, extract_object, missing_required
from wfcrawl.workflow.selectors import Selection, text_of

logger = logging.getLogger(__name__)

_SKIP_SCHEMES = ("javascript:", "mailto:", "tel:", "data:", "#")


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Item:
    """An item of ``type`` produced by a node or a script."""

    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Link:
    """A discovered link; transitions route it to a phase by its marker."""

    url: str
    marker: str
    page: int | None = None
    #: Render block (plain data) of the node that found the link; None: the target phase's.
    render: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Value:
    """A named value for later nodes on the same response (``var:`` fields)."""

    name: str
    value: Any


@dataclass(frozen=True)
class FormSubmit:
    """Submit a form of the page; the spider builds the FormRequest."""

    node: FormNode


@dataclass(frozen=True)
class NodeFailure:
    """A node raised: what it yielded before stands, the page's other nodes still run."""

    label: str
    #: ``bad_json`` (the node needed JSON and the body is not), else the exception's type name.
    error: str
    #: The exception, when the node ran in this process.
    exc: BaseException | None = None
    #: The formatted traceback, when the node ran in a parse worker (wfcrawl.parsing).
    traceback: str | None = None


class Reporter(Protocol):
    """Where nodes send counts (stats) and once-per-key warnings."""

    def count(self, key: str, count: int = 1) -> None: ...

    def warn_once(self, key: Any, msg: str, *args: Any) -> None: ...


class ResponseLike(Protocol):
    url: str

    @property
    def text(self) -> str: ...


# ---------------------------------------------------------------- page


class NotJSONError(ValueError):
    """The response body is not valid JSON."""


class Page:
    """One response as the nodes see it: lazy HTML root and JSON, crawl context."""

    def __init__(
        self,
        response: Any,
        *,
        phase: str,
        marker: str,
        markers: tuple[str, ...],
        depth: int,
        page_number: int | None,
        reporter: Reporter,
    ) -> None:
        self.response = response
        self.url: str = response.url
        self.phase = phase
        self.marker = marker
        self.markers = markers
        self.depth = depth
        self.page_number = page_number
        self.count = reporter.count
        self.warn_once = reporter.warn_once
        self.values: dict[str, Any] = {}
        self._json: Any = _UNSET
        self._base_url: str | None = None

    @property
    def root(self) -> Any:
        return self.response.selector.root

    @property
    def json(self) -> Any:
        if self._json is _UNSET:
            try:
                self._json = json.loads(self.response.text)
            except ValueError as exc:
                raise NotJSONError(str(exc)) from None
        return self._json

    def context_for(self, selection: Selection | None) -> Any:
        """The document a selection runs on: JSON for JMESPath, else the HTML root."""
        if selection is not None and selection.is_json:
            return self.json
        return self.root

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            text = self.response.text
            # <base href> only matters for HTML; avoid scanning JSON bodies.
            self._base_url = get_base_url(text[:4096], self.url) if "<base" in text[:4096] else self.url
        return self._base_url


_UNSET = object()


# ---------------------------------------------------------------- nodes


@dataclass(frozen=True)
class Node:
    """Common part of every node."""

    label: str
    when_marker: frozenset[str] | None

    def applies(self, page: Page) -> bool:
        return self.when_marker is None or page.marker in self.when_marker

    def run(self, page: Page) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class LinksNode(Node):
    selection: Selection
    attr: str
    marker: str
    limit: int | None
    allow: tuple[re.Pattern[str], ...]
    deny: tuple[re.Pattern[str], ...]
    domains: str  # allowed | same | any
    allowed_domains: tuple[str, ...]
    render: Mapping[str, Any] | None = None  # plain data, see wfcrawl.render.spec

    def run(self, page: Page) -> Iterator[Link]:
        context = page.context_for(self.selection)
        seen: dict[str, None] = {}
        dropped: dict[str, int] = {}
        page_host = urlsplit(page.url).hostname or ""
        for raw in self.selection.apply(context):
            if not self.selection.is_json and not isinstance(raw, str):
                raw = raw.get(self.attr) if hasattr(raw, "get") else text_of(raw)
            if not isinstance(raw, str):
                continue
            href = raw.strip()
            if not href or href.lower().startswith(_SKIP_SCHEMES):
                continue
            url = canonicalize_url(urljoin(page.base_url, href))
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                dropped["scheme"] = dropped.get("scheme", 0) + 1
                continue
            host = parts.hostname or ""
            if self.domains == "same" and host != page_host:
                dropped["domain"] = dropped.get("domain", 0) + 1
                continue
            if self.domains == "allowed" and not host_allowed(host, self.allowed_domains):
                dropped["domain"] = dropped.get("domain", 0) + 1
                continue
            if (self.allow and not any(r.search(url) for r in self.allow)) or any(
                r.search(url) for r in self.deny
            ):
                dropped["filtered"] = dropped.get("filtered", 0) + 1
                continue
            if url in seen:
                continue
            seen[url] = None
        urls = list(seen)
        if self.limit is not None and len(urls) > self.limit:
            dropped["limit"] = len(urls) - self.limit
            urls = urls[: self.limit]
        for reason, n in dropped.items():
            page.count(f"wfcrawl/links/dropped/{reason}", n)
        page.count("wfcrawl/links/extracted", len(urls))
        for url in urls:
            yield Link(url, self.marker, render=self.render)


def host_allowed(host: str, domains: tuple[str, ...]) -> bool:
    if not domains:
        return True
    return any(host == d or host.endswith("." + d) for d in domains)


@dataclass(frozen=True)
class ExtractNode(Node):
    item: str
    rows: Selection | None
    fields: tuple[Field, ...]
    uses_json: bool

    def run(self, page: Page) -> Iterator[Item]:
        context = page.json if self.uses_json else page.root
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


@dataclass(frozen=True)
class PaginateNode(Node):
    url: str
    marker: str
    start: int
    step: int
    stop_when: Any  # compiled JMESPath or None
    max_pages: int | None

    def run(self, page: Page) -> Iterator[Link]:
        current = page.page_number if page.page_number is not None else self.start
        following = current + self.step
        if self.max_pages is not None and following > self.start + (self.max_pages - 1) * self.step:
            return
        if self.stop_when is not None and self.stop_when.search(page.json):
            return
        url = canonicalize_url(urljoin(page.url, self.url.replace("{page}", str(following))))
        page.count("wfcrawl/links/extracted")
        yield Link(url, self.marker, following)


@dataclass(frozen=True)
class FormNode(Node):
    css: str | None
    xpath: str | None
    fields: Mapping[str, str]
    env: Mapping[str, str]
    click: str | None
    phase: str
    marker: str

    def run(self, page: Page) -> Iterator[FormSubmit]:
        yield FormSubmit(self)


@dataclass(frozen=True)
class ScriptContext:
    """What a script node's callable receives besides the response."""

    workflow: str
    phase: str
    marker: str
    markers: tuple[str, ...]
    depth: int
    url: str
    args: Mapping[str, Any]
    values: dict[str, Any]


@dataclass(frozen=True)
class ScriptNode(Node):
    callable_name: str
    function: Callable[..., Any]
    item: str | None
    args: Mapping[str, Any]
    workflow: str

    def run(self, page: Page) -> Iterator[Any]:
        context = ScriptContext(
            self.workflow, page.phase, page.marker, page.markers, page.depth,
            page.url, self.args, page.values,
        )
        result = self.function(page.response, context)
        if result is None:
            return
        if isinstance(result, (Item, Link, Value, dict)):
            result = [result]
        for out in result:
            # Items get a shallow copy: the spider adds _type/_meta to item
            # dicts, and a script may hand the same dict out elsewhere too.
            if isinstance(out, Value):
                page.values[out.name] = out.value
            elif isinstance(out, Link):
                yield out
            elif isinstance(out, Item):
                yield Item(out.type, dict(out.data))
            elif isinstance(out, dict) and self.item is not None:
                yield Item(self.item, dict(out))
            else:
                raise TypeError(
                    f"script {self.callable_name} returned {type(out).__name__}; "
                    "expected Item, Link, Value (or dict with the node's `item` set)"
                )


# ---------------------------------------------------------------- plan


@dataclass(frozen=True)
class Transition:
    markers: frozenset[str]
    to: str
    url: re.Pattern[str] | None
    priority: int

    def matches(self, link: Link) -> bool:
        return link.marker in self.markers and (self.url is None or self.url.search(link.url) is not None)


@dataclass(frozen=True)
class Phase:
    name: str
    nodes: tuple[Node, ...]
    transitions: tuple[Transition, ...]
    when_marker: frozenset[str] | None
    render: Mapping[str, Any] | None = None  # plain data, see wfcrawl.render.spec

    def route(self, link: Link) -> Transition | None:
        for transition in self.transitions:
            if transition.matches(link):
                return transition
        return None

    def run(self, page: Page) -> Iterator[Item | Link | FormSubmit | NodeFailure]:
        """The outputs of the phase's nodes on ``page``, in node order; a failing
        node yields a :class:`NodeFailure` instead of stopping the page."""
        for node in self.nodes:
            if not node.applies(page):
                continue
            try:
                yield from node.run(page)
            except NotJSONError:
                yield NodeFailure(node.label, "bad_json")
            except Exception as exc:
                yield NodeFailure(node.label, type(exc).__name__, exc)

    @property
    def offloadable(self) -> bool:
        """Whether a parse worker (another process) can run this phase: only nodes
        that need nothing but the page. Script nodes get the live response and run
        user code; form nodes build requests from it: both run in the crawl process."""
        return all(isinstance(node, (LinksNode, ExtractNode, PaginateNode)) for node in self.nodes)


@dataclass(frozen=True)
class StartURL:
    url: str
    phase: str
    marker: str


@dataclass(frozen=True)
class ItemSpec:
    """Storage and validation of one item type (the document's ``items:`` section)."""

    type: str
    key: tuple[str, ...] = ()
    table: str | None = None
    schema: Mapping[str, Any] | None = None
    validator: Any = None  # the compiled JSON Schema validator (jsonschema), or None


@dataclass(frozen=True)
class Webhook:
    """A URL notified of execution events (the document's ``webhooks:`` list)."""

    url: str
    events: frozenset[str]
    #: Environment variable holding this hook's HMAC secret; None: WFCRAWL_WEBHOOKS_SECRET.
    secret_env: str | None = None


@dataclass(frozen=True)
class Schedule:
    """When ``wfcrawl scheduler`` launches the workflow (the ``schedule:`` block)."""

    cron: str
    timezone: str = "UTC"
    catch_up: str = "latest"  # latest | all | none (docs/operations.md)
    enabled: bool = True


@dataclass(frozen=True)
class Plan:
    """Everything the spider knows about a workflow."""

    name: str
    source: str
    start_urls: tuple[StartURL, ...]
    phases: Mapping[str, Phase]
    max_depth: int | None
    allowed_domains: tuple[str, ...]
    delay: float | None
    concurrency: int | None
    user_agent: str | None
    obey_robots: bool | None
    env_names: tuple[str, ...] = field(default=())
    items: Mapping[str, ItemSpec] = field(default_factory=dict)
    webhooks: tuple[Webhook, ...] = ()
    schedule: Schedule | None = None
