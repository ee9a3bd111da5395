"""The one generic spider: runs a compiled workflow Plan.

Run it the Scrapy way::

    scrapy crawl workflow -a workflow=workflows/shop.yaml -O items.jsonl

Spider arguments: ``workflow`` (path, required), ``base_url`` (overrides the
document's), ``execution_id`` (names this run; generated when absent).

Every request carries its state as plain data in meta (see
``wfcrawl.spiders.meta``), so requests survive a trip through Redis, and every
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

from form2request import form2request
from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.settings import BaseSettings
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.reactor import is_asyncio_reactor_installed, is_reactor_installed
from twisted.python.failure import Failure

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.bundled import bundled_document
from wfcrawl.parsing.pool import ParsePool, ParsePoolUnavailableError, ParseWorkerCrashedError
from wfcrawl.render.setup import apply_render_policy
from wfcrawl.settings.policy import apply_workflow_policy
from wfcrawl.spiders import meta as meta_keys
from wfcrawl.workflow import load_text
from wfcrawl.workflow.plan import FormSubmit, Item, Link, NodeFailure, Page, Phase, Plan
from wfcrawl.workflow.source import read_document

logger = logging.getLogger(__name__)


def plan_for_crawl(settings: BaseSettings, spider_args: Mapping[str, Any]) -> Plan:
    """The Plan a crawl with these settings and spider arguments runs.

    Raises :class:`WorkflowError` (invalid document) or
    :class:`ConfigurationError` (no document, missing environment variables).
    """
    return _load_for_crawl(settings, spider_args)[0]


def _load_for_crawl(settings: BaseSettings, spider_args: Mapping[str, Any]) -> tuple[Plan, dict[str, Any]]:
    """The Plan, and how to compile it again elsewhere (a parse worker): the
    document's text, its name and the compile options."""
    path = spider_args.get("workflow")
    if not path:
        raise ConfigurationError(
            "the workflow spider needs a workflow document: "
            "scrapy crawl workflow -a workflow=path/to/workflow.yaml"
        )
    if settings.getint("WFCRAWL_PARSE_WORKERS") > 0 and not _asyncio_reactor(settings):
        raise ConfigurationError(
            "WFCRAWL_PARSE_WORKERS needs Scrapy's asyncio reactor (TWISTED_REACTOR = "
            f"'{ASYNCIO_REACTOR}', Scrapy's default)"
        )
    script_modules = settings.getlist("WFCRAWL_SCRIPT_MODULES")
    options: dict[str, Any] = {
        "base_url": spider_args.get("base_url"),
        "script_modules": tuple(script_modules) if script_modules else None,
    }
    # Not a file: maybe the name of a workflow bundled in the package (scrapyd:
    # `schedule.json -d workflow=shop`, the egg holds wfcrawl/examples/shop.yaml).
    bundled = bundled_document(path)
    text, name = (bundled, f"bundled:{path}") if bundled is not None else (read_document(path), str(path))
    # `scrapy crawl` checks the document before the crawl starts, then the spider
    # loads it: the same text and options compile once (a Plan is immutable).
    key = (text, name, options["base_url"], options["script_modules"])
    plan = _compiled.get(key)
    if plan is None:
        plan = load_text(text, name, **options)
        _compiled.clear()
        _compiled[key] = plan
    missing = [name for name in plan.env_names if name not in os.environ]
    if missing:
        raise ConfigurationError(
            f"{path}: form values come from environment variable(s) that are not set: "
            + ", ".join(missing)
        )
    return plan, {"text": text, "name": name, "options": options}


ASYNCIO_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"

#: The last Plan compiled by _load_for_crawl, by (text, name, base_url, script modules).
_compiled: dict[tuple[Any, ...], Plan] = {}


def _asyncio_reactor(settings: BaseSettings) -> bool:
    """Whether the crawl runs on asyncio (parse workers need its event loop)."""
    if is_reactor_installed():
        return is_asyncio_reactor_installed()
    return settings.get("TWISTED_REACTOR") in (None, "", ASYNCIO_REACTOR)  # installed later, by the crawler process


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._warned: set[Any] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> WorkflowSpider:
        plan, document = _load_for_crawl(crawler.settings, kwargs)
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
        if crawler.settings.getint("WFCRAWL_PARSE_WORKERS") > 0:
            crawler.signals.connect(spider._open_parse_workers, signal=signals.spider_opened)
        return spider

    def _open_parse_workers(self) -> None:
        """Set up the parse workers (settings are final now, add-ons applied)."""
        settings = self.crawler.settings
        size = settings.getint("WFCRAWL_PARSE_WORKERS")
        if size <= 0:
            return
        offloaded = frozenset(name for name, phase in self.plan.phases.items() if phase.offloadable)
        if not offloaded:
            logger.info("WFCRAWL_PARSE_WORKERS: no phase of %s can be parsed in a worker (script and form "
                        "nodes run in the crawl process)", self.plan.name, extra={"spider": self})
            return
        level = logging.getLevelName(str(settings.get("LOG_LEVEL", "DEBUG")).upper())
        stats = self.crawler.stats
        self._offloaded = offloaded
        self.parse_pool = ParsePool(
            size, {**self._parse_document, "log_level": level if isinstance(level, int) else logging.DEBUG},
            max_restarts=settings.getint("WFCRAWL_PARSE_WORKER_RESTARTS"),
            count=lambda key: stats.inc_value(key),
        )
        self.crawler.signals.connect(self._close_parse_workers, signal=signals.spider_closed)
        logger.info("Parsing the pages of phase(s) %s in %d parse worker(s)", ", ".join(sorted(offloaded)), size,
                    extra={"spider": self})

    async def _close_parse_workers(self) -> None:
        assert self.parse_pool is not None
        await self.parse_pool.close()

    # ------------------------------------------------------------ requests

    async def start(self) -> AsyncIterator[Any]:
        self.crawler.stats.set_value("wfcrawl/workflow", self.plan.name)
        self.crawler.stats.set_value("wfcrawl/execution_id", self.execution_id)
        for start in self.plan.start_urls:
            yield self._request(start.url, start.phase, start.marker, (start.marker,), 0, None, 0)

    def _request(
        self, url: str, phase: str, marker: str, markers: tuple[str, ...], depth: int,
        page: int | None, priority: int, render: Mapping[str, Any] | None = None,
    ) -> Request:
        meta: dict[str, Any] = {
            meta_keys.PHASE: phase, meta_keys.MARKER: marker, meta_keys.MARKERS: list(markers), meta_keys.DEPTH: depth,
        }
        if page is not None:
            meta[meta_keys.PAGE] = page
        # A node's render block wins over the target phase's; the plan's dict is
        # shared by all its requests (plain data, never mutated).
        render = render if render is not None else self.plan.phases[phase].render
        if render is not None:
            meta[meta_keys.RENDER] = render
        return Request(url, callback=self.parse, errback=self.on_error, meta=meta, priority=priority)

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
        stats.inc_value("wfcrawl/links/scheduled")
        chain = page.markers if page.markers[-1] == link.marker else (*page.markers, link.marker)
        return self._request(link.url, transition.to, link.marker, chain, depth, link.page, transition.priority,
                             link.render)

    def _form_request(self, submit: FormSubmit, response: TextResponse, page: Page) -> Request | None:
        """The submission of a form of the page (hidden fields such as CSRF
        tokens and __VIEWSTATE carried over), built with form2request, the
        successor of ``FormRequest.from_response``."""
        node = submit.node
        if node.xpath:
            forms = response.xpath(node.xpath)
        else:
            forms = response.css(node.css or "form")
        form = forms[0] if forms else None
        click: Any = None
        if form is not None and node.click:
            buttons = form.xpath(".//*[@name=$name][@type='submit' or self::button]", name=node.click)
            click = buttons[0].root if buttons else None
        if form is None or (node.click and click is None) or form.root.tag != "form":
            self.crawler.stats.inc_value("wfcrawl/forms/not_found")
            self.warn_once(("form", node.label), "Form node %s found no form%s at %s", node.label,
                           f" with a submit control {node.click!r}" if node.click else "", response.url)
            return None
        data = dict(node.fields)
        for field_name, env_name in node.env.items():
            data[field_name] = os.environ[env_name]
        meta = {meta_keys.PHASE: node.phase, meta_keys.MARKER: node.marker, meta_keys.MARKERS: [*page.markers, node.marker],
                meta_keys.DEPTH: page.depth + 1}
        if self.plan.phases[node.phase].render is not None:
            meta[meta_keys.RENDER] = self.plan.phases[node.phase].render
        self.crawler.stats.inc_value("wfcrawl/forms/submitted")
        request: Request = form2request(form, data, click=click).to_scrapy(
            callback=self.parse, errback=self.on_error, meta=meta, dont_filter=True,
        )
        return request

    # ------------------------------------------------------------ responses

    def parse(self, response: Response, **kwargs: Any) -> Iterable[Any] | Coroutine[Any, Any, list[Any]]:
        meta = response.meta
        phase = self.plan.phases[meta[meta_keys.PHASE]]
        stats = self.crawler.stats
        stats.inc_value(f"wfcrawl/pages/{phase.name}")
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
        )
        if self.parse_pool is not None and phase.name in self._offloaded:
            # A coroutine: Scrapy awaits it (asyncio reactor) while this process goes on downloading.
            return self._parse_in_worker(response, phase, page)
        return self._outputs(phase.run(page), response, phase, page)

    async def _parse_in_worker(self, response: TextResponse, phase: Phase, page: Page) -> list[Any]:
        """Parse ``page`` in a parse worker (``WFCRAWL_PARSE_WORKERS``); same outputs,
        stats and warnings as in this process."""
        assert self.parse_pool is not None
        stats = self.crawler.stats
        try:
            result = await self.parse_pool.parse(response, page)
        except ParseWorkerCrashedError as exc:
            # Two workers died with this page in hand: do not risk this process too.
            stats.inc_value("wfcrawl/pages/error/parse_worker")
            logger.error("Page dropped: %s", exc, extra={"spider": self})
            return []
        except ParsePoolUnavailableError:
            stats.inc_value("wfcrawl/parse_workers/fallback")
            return list(self._outputs(phase.run(page), response, phase, page))
        for name, level, msg in result.logs:
            logging.getLogger(name).log(level, "%s", msg, extra={"spider": self})
        if result.error is not None:
            raise RuntimeError(f"parse worker failed on {response.url}:\n{result.error}")
        stats.inc_value("wfcrawl/parse_workers/pages")
        for key, n in result.counts.items():
            stats.inc_value(key, n)
        for key, msg, args in result.warnings:
            self.warn_once(key, msg, *args)
        return list(self._outputs(result.outputs, response, phase, page))

    def _outputs(
        self, outputs: Iterable[Item | Link | FormSubmit | NodeFailure], response: TextResponse,
        phase: Phase, page: Page,
    ) -> Iterator[Any]:
        """Items and requests from the outputs of a phase's nodes."""
        stats = self.crawler.stats
        provenance: dict[str, Any] | None = None
        for out in outputs:
            if isinstance(out, Item):
                if provenance is None:
                    provenance = self._provenance(page)
                stats.inc_value(f"wfcrawl/items/{out.type}")
                data = out.data
                data["_type"] = out.type
                data["_meta"] = provenance
                yield data
            elif isinstance(out, Link):
                request = self._follow(out, phase, page)
                if request is not None:
                    yield request
            elif isinstance(out, FormSubmit):
                request = self._form_request(out, response, page)
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
        logger.debug("Page failed (%s): %s", reason, request.url if request else "?", extra={"spider": self})

    # ------------------------------------------------------------ Reporter

    def count(self, key: str, count: int = 1) -> None:
        self.crawler.stats.inc_value(key, count)

    def warn_once(self, key: Any, msg: str, *args: Any) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning(msg, *args, extra={"spider": self})
