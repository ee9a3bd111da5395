"""Turn a workflow's crawl policy into Scrapy settings.

Called from ``WorkflowSpider.from_crawler``, before the crawler applies its
settings, at ``spider`` priority: project settings lose to the workflow, the
command line (``-s``) wins over it.
"""

from __future__ import annotations

from scrapy.settings import Settings, default_settings

from wfcrawl.workflow.plan import Plan

#: The setting (and value) that makes DOWNLOAD_DELAY exact in this Scrapy version.
NO_JITTER: tuple[str, object] = (
    ("DOWNLOAD_DELAY_JITTER", 0.0) if hasattr(default_settings, "DOWNLOAD_DELAY_JITTER")
    else ("RANDOMIZE_DOWNLOAD_DELAY", False)
)


def workflow_settings(plan: Plan) -> dict[str, object]:
    values: dict[str, object] = {}
    if plan.delay is not None:
        values["DOWNLOAD_DELAY"] = plan.delay
        # A delay is a promise to the site: a minimum, not an average. Scrapy 2.19
        # deprecates RANDOMIZE_DOWNLOAD_DELAY for DOWNLOAD_DELAY_JITTER (a warning
        # in every crawl that sets it); older versions only have the former.
        values[NO_JITTER[0]] = NO_JITTER[1]
    if plan.concurrency is not None:
        values["CONCURRENT_REQUESTS_PER_DOMAIN"] = plan.concurrency
    if plan.user_agent is not None:
        values["USER_AGENT"] = plan.user_agent
    if plan.obey_robots is not None:
        values["ROBOTSTXT_OBEY"] = plan.obey_robots
    return values


def apply_workflow_policy(settings: Settings, plan: Plan) -> None:
    values = workflow_settings(plan)
    if plan.headers:
        # On top of the headers already set (Scrapy's Accept, Accept-Language), not instead.
        values["DEFAULT_REQUEST_HEADERS"] = {**settings.getdict("DEFAULT_REQUEST_HEADERS"), **plan.headers}
    settings.setdict(values, priority="spider")
