"""The crawl context: which workflow run a crawler belongs to, one typed accessor.

Components (pipelines, extensions, middlewares, the Redis scheduler) need the
workflow's Plan, its name and the execution id. They ask
``CrawlContext.of(crawler)``, never the spider's attributes: a project's own
spiders (wfcrawl used as an add-on) have no Plan, and get a context named
after the spider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scrapy.crawler import Crawler

from wfcrawl.spiders.workflow import WorkflowSpider
from wfcrawl.workflow.plan import ItemSpec, Plan


@dataclass(frozen=True)
class CrawlContext:
    #: The workflow's name, or the spider's name for a spider that runs no workflow.
    workflow: str
    #: The run's id (``-a execution_id=ID`` or generated); None for a spider without one.
    execution_id: str | None
    #: Whether the execution id was given (distributed crawls need the same id everywhere).
    execution_id_given: bool
    plan: Plan | None

    @classmethod
    def of(cls, crawler: Crawler) -> CrawlContext:
        spider = crawler.spider
        if isinstance(spider, WorkflowSpider):
            return cls(spider.plan.name, spider.execution_id, spider.execution_id_given, spider.plan)
        # A project's own spider names its run with an ``execution_id`` attribute, if any.
        name = spider.name if spider is not None and spider.name else "crawl"
        execution_id = getattr(spider, "execution_id", None)
        execution_id = execution_id if isinstance(execution_id, str) and execution_id else None
        return cls(name, execution_id, execution_id is not None, None)

    @property
    def item_specs(self) -> Mapping[str, ItemSpec]:
        return self.plan.items if self.plan is not None else {}

    @property
    def phases(self) -> list[str]:
        """The workflow's phases in document order (none for other spiders)."""
        return list(self.plan.phases) if self.plan is not None else []
