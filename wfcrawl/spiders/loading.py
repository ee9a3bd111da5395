"""The Plan a crawl runs: the workflow document named by the spider arguments, compiled once.

``-a workflow=`` is a file, or the name of a workflow bundled in the package
(scrapyd: ``schedule.json -d workflow=shop``). ``scrapy crawl`` checks the
document before the crawl starts and the spider loads it: the same text and
options compile once (a Plan is immutable).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from scrapy.settings import BaseSettings
from scrapy.utils.reactor import is_asyncio_reactor_installed, is_reactor_installed

from wfcrawl.exceptions import ConfigurationError, WorkflowError
from wfcrawl.security.webhooks import webhook_problems
from wfcrawl.settings.table import read
from wfcrawl.workflow import load_text
from wfcrawl.workflow.bundled import bundled_document
from wfcrawl.workflow.plan import Plan
from wfcrawl.workflow.source import read_document


def plan_for_crawl(settings: BaseSettings, spider_args: Mapping[str, Any]) -> Plan:
    """The Plan a crawl with these settings and spider arguments runs.

    Raises :class:`WorkflowError` (invalid document) or
    :class:`ConfigurationError` (no document, missing environment variables).
    """
    return load_for_crawl(settings, spider_args)[0]


def load_for_crawl(settings: BaseSettings, spider_args: Mapping[str, Any]) -> tuple[Plan, dict[str, Any]]:
    """The Plan, and how to compile it again elsewhere (a parse worker): the
    document's text, its name and the compile options."""
    path = spider_args.get("workflow")
    if not path:
        raise ConfigurationError(
            "the workflow spider needs a workflow document: "
            "scrapy crawl workflow -a workflow=path/to/workflow.yaml"
        )
    if read(settings, "WFCRAWL_PARSE_WORKERS") > 0 and not _asyncio_reactor(settings):
        raise ConfigurationError(
            "WFCRAWL_PARSE_WORKERS needs Scrapy's asyncio reactor (TWISTED_REACTOR = "
            f"'{ASYNCIO_REACTOR}', Scrapy's default)"
        )
    script_modules = read(settings, "WFCRAWL_SCRIPT_MODULES")
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
    if read(settings, "WFCRAWL_WEBHOOKS_ENABLED"):
        # A hook that cannot sign is a located problem now, not a crash at the crawl's end.
        problems = webhook_problems(plan, default_secret=bool(read(settings, "WFCRAWL_WEBHOOKS_SECRET")),
                                    environ=os.environ)
        if problems:
            raise WorkflowError(problems)
    return plan, {"text": text, "name": name, "options": options}


ASYNCIO_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"

#: The last Plan compiled by _load_for_crawl, by (text, name, base_url, script modules).
_compiled: dict[tuple[Any, ...], Plan] = {}


def _asyncio_reactor(settings: BaseSettings) -> bool:
    """Whether the crawl runs on asyncio (parse workers need its event loop)."""
    if is_reactor_installed():
        return is_asyncio_reactor_installed()
    return settings.get("TWISTED_REACTOR") in (None, "", ASYNCIO_REACTOR)  # installed later, by the crawler process


