"""The WorkflowSpider's side of the parse workers (``WFCRAWL_PARSE_WORKERS``, :mod:`wfcrawl.parsing`).

:func:`open_parse_workers` decides which phases go to the workers and starts the pool;
:func:`parse_in_worker` sends a page and applies what came back (stat counts, warnings,
log records) as parsing it in the crawl process would have.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from wfcrawl.parsing.pool import ParsePool, ParsePoolUnavailableError, ParseWorkerCrashedError
from wfcrawl.settings.table import read
from wfcrawl.workflow.page import Item, Link, NodeFailure, Page

if TYPE_CHECKING:
    from scrapy.http import TextResponse

    from wfcrawl.spiders.workflow import WorkflowSpider

logger = logging.getLogger(__name__)


def open_parse_workers(spider: WorkflowSpider, document: dict[str, Any]) -> tuple[ParsePool, frozenset[str]] | None:
    """The pool and the phases it parses (None: no worker, or no phase a worker can parse).

    Called once the settings are final (spider_opened: add-ons applied)."""
    settings = spider.crawler.settings
    size = read(settings, "WFCRAWL_PARSE_WORKERS")
    if size <= 0:
        return None
    plan = spider.plan
    offloaded = frozenset(name for name, phase in plan.phases.items() if phase.offloadable)
    if not offloaded:
        logger.info("WFCRAWL_PARSE_WORKERS: no phase of %s can be parsed in a worker (script and form "
                    "nodes run in the crawl process)", plan.name, extra={"spider": spider})
        return None
    level = logging.getLevelName(str(settings.get("LOG_LEVEL", "DEBUG")).upper())
    stats = spider.crawler.stats
    pool = ParsePool(
        size, {**document, "log_level": level if isinstance(level, int) else logging.DEBUG},
        max_restarts=read(settings, "WFCRAWL_PARSE_WORKER_RESTARTS"),
        count=lambda key: stats.inc_value(key),
    )
    logger.info("Parsing the pages of phase(s) %s in %d parse worker(s)", ", ".join(sorted(offloaded)), size,
                extra={"spider": spider})
    return pool, offloaded


async def parse_in_worker(spider: WorkflowSpider, pool: ParsePool, response: TextResponse,
                          page: Page) -> list[Item | Link | NodeFailure] | None:
    """The outputs of ``page``'s nodes, parsed in a worker; same stats and warnings as in
    this process. None: the pool is unavailable, parse the page here."""
    stats = spider.crawler.stats
    try:
        result = await pool.parse(response, page)
    except ParseWorkerCrashedError as exc:
        # Two workers died with this page in hand: do not risk this process too.
        stats.inc_value("wfcrawl/pages/error/parse_worker")
        logger.error("Page dropped: %s", exc, extra={"spider": spider})
        return []
    except ParsePoolUnavailableError:
        stats.inc_value("wfcrawl/parse_workers/fallback")
        return None
    for name, level, msg in result.logs:
        logging.getLogger(name).log(level, "%s", msg, extra={"spider": spider})
    if result.error is not None:
        raise RuntimeError(f"parse worker failed on {response.url}:\n{result.error}")
    stats.inc_value("wfcrawl/parse_workers/pages")
    for key, n in result.counts.items():
        stats.inc_value(key, n)
    for key, msg, args in result.warnings:
        spider.warn_once(key, msg, *args)
    return result.outputs
