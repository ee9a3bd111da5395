"""The compiled, immutable form of a workflow: what the spider runs.

A :class:`Plan` holds phases; a :class:`Phase` holds its nodes (see
:mod:`wfcrawl.workflow.nodes`) and the transitions that route the links its
nodes find. Nothing here imports Scrapy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from wfcrawl.workflow.nodes import Node
from wfcrawl.workflow.page import FormSubmit, Item, Link, NodeFailure, NotJSONError, Page
from wfcrawl.workflow.regex import Regex
from wfcrawl.workflow.stats import node_stat

#: Field values that are nothing (an item of only these matched nothing on its page).
EMPTY_VALUES: tuple[Any, ...] = (None, "", [], {})


def _something(out: Any) -> bool:
    """Whether a node's output is a match: anything but an item whose fields are all empty."""
    return not isinstance(out, Item) or any(v not in EMPTY_VALUES for v in out.data.values())


@dataclass(frozen=True)
class Transition:
    markers: frozenset[str]
    to: str
    url: Regex | None
    priority: int

    def matches(self, link: Link) -> bool:
        return link.marker in self.markers and (self.url is None or self.url.search(link.url) is not None)


@dataclass(frozen=True)
class Phase:
    name: str
    nodes: tuple[Node, ...]
    transitions: tuple[Transition, ...]
    when_marker: frozenset[str] | None
    render: Mapping[str, Any] | None = None  # plain data, see wfcrawl.workflow.render

    def route(self, link: Link) -> Transition | None:
        for transition in self.transitions:
            if transition.matches(link):
                return transition
        return None

    def run(self, page: Page) -> Iterator[Item | Link | FormSubmit | NodeFailure]:
        """The outputs of the phase's nodes on ``page``, in node order; a failing
        node yields a :class:`NodeFailure` instead of stopping the page."""
        for node, matched, nomatch in self._node_stats:
            if not node.applies(page):
                continue
            found = False
            try:
                for out in node.run(page):
                    found = found or _something(out)
                    yield out
            except NotJSONError:
                yield NodeFailure(node.label, "bad_json")
                continue
            except Exception as exc:
                yield NodeFailure(node.label, type(exc).__name__, exc)
                continue
            # Per node and page: a node that never matches is a broken selector (wfcrawl.outcome).
            page.count(matched if found else nomatch)

    @cached_property
    def _node_stats(self) -> tuple[tuple[Node, str, str], ...]:
        # Stat keys built once per phase, not per page.
        return tuple((n, node_stat("matched", self.name, n.label), node_stat("nomatch", self.name, n.label))
                     for n in self.nodes)

    @property
    def offloadable(self) -> bool:
        """Whether a parse worker (another process) can run this phase: only nodes
        that need nothing but the page. Script nodes get the live response and run
        user code; form nodes build requests from it: both run in the crawl process."""
        return all(node.offloadable for node in self.nodes)


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
    #: Drop an item whose key an earlier item of this type had (in this crawl process).
    unique: bool = False


@dataclass(frozen=True)
class Webhook:
    """A URL notified of execution events (the document's ``webhooks:`` list)."""

    url: str
    events: frozenset[str]
    #: Environment variable holding this hook's HMAC secret; None: WFCRAWL_WEBHOOKS_SECRET.
    secret_env: str | None = None
    #: Where the document names it (``file:line:col: $.webhooks[0]``), for problems found later.
    line: int = 1
    column: int = 1
    path: str = "$"


#: Events a webhook receives unless it names its own: how an execution ended.
DEFAULT_WEBHOOK_EVENTS = ("succeeded", "degraded", "failed")


def webhook_events(names: Iterable[str]) -> frozenset[str]:
    """The events of a webhook's ``events`` list; ``finished`` (documents written before
    outcomes) stands for ``succeeded`` and ``degraded``."""
    out = set(names)
    if "finished" in out:
        out.discard("finished")
        out |= {"succeeded", "degraded"}
    return frozenset(out)


@dataclass(frozen=True)
class Schedule:
    """When ``wfcrawl scheduler`` launches the workflow (the ``schedule:`` block)."""

    cron: str
    timezone: str = "UTC"
    catch_up: str = "latest"  # latest | all | none (docs/operations.md)
    enabled: bool = True


@dataclass(frozen=True)
class ItemExpectation:
    """What the crawl must produce of one item type (``expect.items.<type>``)."""

    min_count: int | None = None
    #: Field -> least fraction (0..1) of the type's items in which it is not empty.
    fill_rates: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseExpectation:
    """``expect.phases.<phase>``: at least this many pages; nodes allowed never to match."""

    min_pages: int | None = None
    optional_nodes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Expectations:
    """What a successful crawl of the workflow looks like (the ``expect:`` block), with
    the facts of the document the default checks need (see :mod:`wfcrawl.outcome`)."""

    items: Mapping[str, ItemExpectation] = field(default_factory=dict)
    phases: Mapping[str, PhaseExpectation] = field(default_factory=dict)
    #: Largest failed pages / (pages + failed pages); None: no limit.
    max_error_rate: float | None = None
    #: The error rate is checked while the crawl runs once this many pages were fetched or failed.
    error_rate_after: int = 100
    #: Status of an unmet ``expect:`` entry: ``failed`` or ``degraded``.
    on_unmet: str = "failed"
    #: Item types the document declares (its ``items:`` section and extract nodes).
    item_types: tuple[str, ...] = ()
    #: (phase, node label) of every node, in document order.
    nodes: tuple[tuple[str, str], ...] = ()


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
    #: Headers sent with every request (DEFAULT_REQUEST_HEADERS, on top of Scrapy's).
    headers: Mapping[str, str] = field(default_factory=dict)
    env_names: tuple[str, ...] = field(default=())
    items: Mapping[str, ItemSpec] = field(default_factory=dict)
    webhooks: tuple[Webhook, ...] = ()
    schedule: Schedule | None = None
    expect: Expectations = field(default_factory=Expectations)
