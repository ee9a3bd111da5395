"""The one generic spider: runs a compiled workflow Plan.

Run it the Scrapy way::

    scrapy crawl workflow -a workflow=workflows/shop.yaml -O items.jsonl

Spider arguments: ``workflow`` (path, required), ``base_url`` (overrides the
document's), ``execution_id`` (names this run; generated when absent).

Every request carries its state as plain data in meta (see
``wfcrawl.meta``), so requests survive a trip through Redis, and every
response is handled by :meth:`WorkflowSpider.parse`, which dispatches on the
phase name.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

import wfcrawl
from wfcrawl import meta as meta_keys
from wfcrawl.parsing.pool import ParsePool
from wfcrawl.render.setup import apply_render_policy
from wfcrawl.settings.policy import apply_workflow_policy
from wfcrawl.settings.table import read
from wfcrawl.spiders.forms import form_request
from wfcrawl.spiders.loading import load_for_crawl
from wfcrawl.spiders.memory import CrawlMemory
from wfcrawl.spiders.workers import open_parse_workers, parse_in_worker
from wfcrawl.workflow.page import FormSubmit, Item, Link, NodeFailure, Page
from wfcrawl.workflow.plan import EMPTY_VALUES, Phase, Plan
from wfcrawl.workflow.stats import filled_stat

logger = logging.getLogger(__name__)


def failure_reason(exc: BaseException) -> str:
    """A short, bounded name for why a page failed (a stats key part)."""
    if isinstance(exc, HttpError):
        return f"http_{exc.response.status}"
    if isinstance(exc, IgnoreRequest) and "max redirections" in str(exc):
        # Scrapy's RedirectMiddleware has no exception type of its own for this.
        return "max_redirects"
    return type(exc).__name__


class WorkflowSpider(Spider):
    name = "workflow"

    plan: Plan
    execution_id: str
    execution_id_given: bool
    #: Parse workers (WFCRAWL_PARSE_WORKERS), and the phases they parse.
    parse_pool: ParsePool | None = None
    _offloaded: frozenset[str] = frozenset()
    _parse_document: dict[str, Any]
    memory: CrawlMemory
    _filled: dict[str, tuple[tuple[str, str], ...]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._warned: set[Any] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> WorkflowSpider:
        plan, document = load_for_crawl(crawler.settings, kwargs)
        spider: WorkflowSpider = super().from_crawler(crawler, *args, **kwargs)
        spider.plan = plan
        spider.execution_id = kwargs.get("execution_id") or uuid.uuid4().hex[:12]
        # A distributed crawl (REDIS_URL) needs the same id in every instance: generated is an error there.
        spider.execution_id_given = bool(kwargs.get("execution_id"))
        spider.allowed_domains = list(plan.allowed_domains)  # type: ignore[attr-defined]
        # Before the crawler applies its settings: the workflow's policy takes
        # effect at "spider" priority, so `-s` on the command line still wins.
        apply_workflow_policy(crawler.settings, plan)
        apply_render_policy(crawler.settings, plan)  # before the add-on installs the browser
        spider._parse_document = document
        spider.memory = CrawlMemory(plan)
        # The fields whose fill rate the workflow expects: counted per item (wfcrawl.outcome).
        spider._filled = {
            item_type: tuple((name, filled_stat(item_type, name)) for name in want.fill_rates)
            for item_type, want in plan.expect.items.items() if want.fill_rates
        }
        if read(crawler.settings, "WFCRAWL_PARSE_WORKERS") > 0:
            crawler.signals.connect(spider._open_parse_workers, signal=signals.spider_opened)
        return spider

    def _open_parse_workers(self) -> None:
        opened = open_parse_workers(self, self._parse_document)
        if opened is not None:
            self.parse_pool, self._offloaded = opened
            self.crawler.signals.connect(self._close_parse_workers, signal=signals.spider_closed)

    async def _close_parse_workers(self) -> None:
        assert self.parse_pool is not None
        await self.parse_pool.close()

    # ------------------------------------------------------------ requests

    async def start(self) -> AsyncIterator[Any]:
        self.crawler.stats.set_value("wfcrawl/workflow", self.plan.name)
        self.crawler.stats.set_value("wfcrawl/execution_id", self.execution_id)
        # Which wfcrawl runs: a scrapyd host may hold an installed copy besides the deployed egg.
        logger.info("Crawling workflow %s (execution %s) with wfcrawl %s from %s", self.plan.name, self.execution_id,
                    wfcrawl.__version__, os.path.dirname(os.path.dirname(wfcrawl.__file__ or "")),
                    extra={"spider": self})
        for start in self.plan.start_urls:
            yield self._request(start.url, start.phase, start.marker, (start.marker,), 0, None, 0)

    def _request(
        self, url: str, phase: str, marker: str, markers: tuple[str, ...], depth: int,
        page: int | None, priority: int, render: Mapping[str, Any] | None = None,
        variables: Mapping[str, Any] | None = None, dont_filter: bool = False,
    ) -> Request:
        meta: dict[str, Any] = {
            meta_keys.PHASE: phase, meta_keys.MARKER: marker, meta_keys.MARKERS: list(markers), meta_keys.DEPTH: depth,
        }
        if page is not None:
            meta[meta_keys.PAGE] = page
        if variables:
            meta[meta_keys.VARS] = dict(variables)
        # A node's render block wins over the target phase's; the plan's dict is
        # shared by all its requests (plain data, never mutated).
        render = render if render is not None else self.plan.phases[phase].render
        if render is not None:
            meta[meta_keys.RENDER] = render
        return Request(url, callback=self.parse, errback=self.on_error, meta=meta, priority=priority,
                       dont_filter=dont_filter)

    def _follow(self, link: Link, phase: Phase, page: Page) -> Request | None:
        stats = self.crawler.stats
        transition = phase.route(link)
        if transition is None:
            stats.inc_value("wfcrawl/links/dropped/no_transition")
            return None
        depth = page.depth + 1
        if self.plan.max_depth is not None and depth > self.plan.max_depth:
            stats.inc_value("wfcrawl/links/dropped/max_depth")
            return None
        if link.refetch is not None and not self.memory.refetch_allowed(link):
            stats.inc_value("wfcrawl/links/dropped/refetch")
            return None
        stats.inc_value("wfcrawl/links/scheduled")
        chain = page.markers if page.markers[-1] == link.marker else (*page.markers, link.marker)
        variables = {**page.variables, **link.values} if link.values else page.variables
        return self._request(link.url, transition.to, link.marker, chain, depth, link.page, transition.priority,
                             link.render, variables, dont_filter=link.refetch is not None)

    def parse(self, response: Response, **kwargs: Any) -> Iterable[Any] | Coroutine[Any, Any, list[Any]]:
        meta = response.meta
        phase = self.plan.phases[meta[meta_keys.PHASE]]
        stats = self.crawler.stats
        stats.inc_value(f"wfcrawl/pages/{phase.name}")
        if meta[meta_keys.DEPTH] == 0:
            stats.inc_value("wfcrawl/start_requests/fetched")
        if phase.when_marker is not None and meta[meta_keys.MARKER] not in phase.when_marker:
            stats.inc_value("wfcrawl/pages/skipped/marker")
            return ()
        if not isinstance(response, TextResponse):
            stats.inc_value("wfcrawl/pages/error/not_text")
            return ()
        body = response.body
        if not body or body.isspace():  # = not body.strip(), without copying the body
            stats.inc_value("wfcrawl/pages/error/empty")
            return ()
        page = Page(
            response, phase=phase.name, marker=meta[meta_keys.MARKER], markers=tuple(meta[meta_keys.MARKERS]),
            depth=meta[meta_keys.DEPTH], page_number=meta.get(meta_keys.PAGE), reporter=self,
            variables=meta.get(meta_keys.VARS), settings=self.crawler.settings,
        )
        if self.parse_pool is not None and phase.name in self._offloaded:
            # A coroutine: Scrapy awaits it (asyncio reactor) while this process goes on downloading.
            return self._parse_in_worker(response, phase, page)
        return self._outputs(phase.run(page), response, phase, page)

    async def _parse_in_worker(self, response: TextResponse, phase: Phase, page: Page) -> list[Any]:
        """Parse ``page`` in a parse worker (``WFCRAWL_PARSE_WORKERS``), or here if none can."""
        assert self.parse_pool is not None
        outputs = await parse_in_worker(self, self.parse_pool, response, page)
        return list(self._outputs(phase.run(page) if outputs is None else outputs, response, phase, page))

    def _outputs(
        self, outputs: Iterable[Item | Link | FormSubmit | NodeFailure], response: TextResponse,
        phase: Phase, page: Page,
    ) -> Iterator[Any]:
        """Items and requests from the outputs of a phase's nodes."""
        stats = self.crawler.stats
        provenance: dict[str, Any] | None = None
        if phase.name in self.memory.phases:
            outputs = self.memory.sift(phase.name, list(outputs), stats.inc_value)
        for out in outputs:
            if isinstance(out, Item):
                if self.memory.duplicate(out):
                    stats.inc_value(f"wfcrawl/items/dropped/duplicate/{out.type}")
                    continue
                if provenance is None:
                    provenance = self._provenance(page)
                stats.inc_value(f"wfcrawl/items/{out.type}")
                data = out.data
                for name, key in self._filled.get(out.type, ()):
                    if data.get(name) not in EMPTY_VALUES:
                        stats.inc_value(key)
                data["_type"] = out.type
                data["_meta"] = provenance
                yield data
            elif isinstance(out, Link):
                request = self._follow(out, phase, page)
                if request is not None:
                    yield request
            elif isinstance(out, FormSubmit):
                request = form_request(self, out, page)
                if request is not None:
                    yield request
            elif isinstance(out, NodeFailure):
                self._node_failed(out, phase, response.url)

    def _node_failed(self, failure: NodeFailure, phase: Phase, url: str) -> None:
        stats = self.crawler.stats
        if failure.error == "bad_json":
            stats.inc_value("wfcrawl/pages/error/bad_json")
            self.warn_once(("json", failure.label), "Node %s expected JSON at %s", failure.label, url)
            return
        stats.inc_value(f"wfcrawl/nodes/error/{failure.error}")
        key = ("node", failure.label, failure.error)
        if key in self._warned:
            return
        self._warned.add(key)
        if failure.exc is not None:
            logger.error("Node %s of phase %s failed at %s", failure.label, phase.name, url,
                         exc_info=failure.exc, extra={"spider": self})
        else:
            logger.error("Node %s of phase %s failed at %s (in a parse worker)\n%s", failure.label, phase.name, url,
                         (failure.traceback or "").rstrip(), extra={"spider": self})

    def _provenance(self, page: Page) -> dict[str, Any]:
        # One dict per response, shared (read-only) by its items: cheap provenance.
        provenance: dict[str, Any] = {
            "workflow": self.plan.name,
            "execution_id": self.execution_id,
            "url": page.url,
            "phase": page.phase,
            "markers": list(page.markers),
            "depth": page.depth,
            "fetched_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        render = page.response.meta.get(meta_keys.RENDER_RESULT)
        if render is not None:  # rendered in a browser: clicks, scrolls, screenshot/html paths
            provenance["render"] = render
        return provenance

    def on_error(self, failure: Failure) -> None:
        """Count a page that could not be fetched, by reason; the crawl goes on."""
        reason = failure_reason(failure.value) if failure.value is not None else "unknown"
        self.crawler.stats.inc_value("wfcrawl/pages/failed")
        self.crawler.stats.inc_value(f"wfcrawl/pages/failed/{reason}")
        request = getattr(failure, "request", None)
        if request is not None and request.meta.get(meta_keys.DEPTH) == 0:
            self.crawler.stats.inc_value("wfcrawl/start_requests/failed")
        logger.debug("Page failed (%s): %s", reason, request.url if request else "?", extra={"spider": self})

    # ------------------------------------------------------------ Reporter

    def count(self, key: str, count: int = 1) -> None:
        self.crawler.stats.inc_value(key, count)

    def warn_once(self, key: Any, msg: str, *args: Any) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning(msg, *args, extra={"spider": self})
