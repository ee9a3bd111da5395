"""What nodes see and what they produce.

A :class:`Page` is one response plus its crawl context; nodes yield outputs:
:class:`Item`, :class:`Link`, :class:`FormSubmit`, :class:`Value` (and, for a
node that raised, :class:`NodeFailure`). Nothing here imports Scrapy; the
spider turns outputs into items and requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from w3lib.html import get_base_url

from wfcrawl.workflow.fields import Field, Scope

if TYPE_CHECKING:
    from wfcrawl.workflow.nodes.form import FormNode
    from wfcrawl.workflow.selectors import Selection


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
    #: Values handed to the linked page (added to the variables of the page that found it).
    values: Mapping[str, Any] | None = None
    #: Fetch the URL even if it was fetched before, at most this many more times (per marker).
    refetch: int | None = None
    #: ``items`` or ``links``: follow only if the page gave an item (a link) its phase had not seen.
    if_new: str | None = None


@dataclass(frozen=True)
class Value:
    """A named value for later nodes on the same response (``var:`` fields)."""

    name: str
    value: Any


@dataclass(frozen=True)
class FormSubmit:
    """Submit a form of the page with these values; the spider builds the request."""

    node: FormNode
    #: The <form> element (lxml) of the page.
    form: Any
    #: Form field -> value (templates filled; environment values are added by the spider).
    data: Mapping[str, str]
    #: Values handed to the response's page (the iterated values, with ``<name>_label``).
    values: Mapping[str, Any]
    #: The submit control to click (an lxml element), None for the first, False for none.
    click: Any = None


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


class NotJSONError(ValueError):
    """The response body is not valid JSON."""


_UNSET = object()


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
        variables: Mapping[str, Any] | None = None,
        settings: Any = None,
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
        #: Values the request brought (link ``values``, form iterations), handed on to its links.
        self.variables: Mapping[str, Any] = variables or {}
        #: What ``var:`` reads: the variables, then values set by script nodes on this page.
        self.values: dict[str, Any] = dict(self.variables)
        #: The crawler's settings, for script nodes (None in a parse worker: no script runs there).
        self.settings = settings
        self._json: Any = _UNSET
        self._embedded: dict[int, Any] = {}
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

    def context_for(self, selection: Selection | None, json_from: Field | None = None) -> Any:
        """The document a selection runs on: JSON for JMESPath (the body, or the
        JSON embedded in the page that ``json_from`` selects), else the HTML root."""
        if selection is not None and selection.is_json:
            return self.json_document(json_from)
        return self.root

    def json_document(self, json_from: Field | None = None) -> Any:
        """The JSON JMESPath expressions read: the body, or the JSON ``json_from`` finds in the page."""
        return self.json if json_from is None else self.embedded_json(json_from)

    def embedded_json(self, source: Field) -> Any:
        """The JSON text ``source`` extracts from the page (a script tag), decoded
        once per page; None when the page has no such text."""
        key = id(source)
        if key not in self._embedded:
            text = source.extract(self.root, Scope(self.values, self.base_url))
            if text is None:
                self._embedded[key] = None
            else:
                try:
                    self._embedded[key] = json.loads(text)
                except ValueError as exc:
                    raise NotJSONError(str(exc)) from None
        return self._embedded[key]

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            text = self.response.text
            # <base href> only matters for HTML; avoid scanning JSON bodies.
            self._base_url = get_base_url(text[:4096], self.url) if "<base" in text[:4096] else self.url
        return self._base_url
