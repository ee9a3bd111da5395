"""Turn a workflow's crawl policy into Scrapy settings.

Called from ``WorkflowSpider.from_crawler``, before the crawler applies its
settings, at ``spider`` priority: project settings lose to the workflow, the
command line (``-s``) wins over it.
"""

from __future__ import annotations

from scrapy.settings import Settings

from wfcrawl.workflow.plan import Plan


def workflow_settings(plan: Plan) -> dict[str, object]:
    values: dict[str, object] = {}
    if plan.delay is not None:
        values["DOWNLOAD_DELAY"] = plan.delay
        # A delay is a promise to the site: a minimum, not an average.
        values["RANDOMIZE_DOWNLOAD_DELAY"] = False
    if plan.concurrency is not None:
        values["CONCURRENT_REQUESTS_PER_DOMAIN"] = plan.concurrency
    if plan.user_agent is not None:
        values["USER_AGENT"] = plan.user_agent
    if plan.obey_robots is not None:
        values["ROBOTSTXT_OBEY"] = plan.obey_robots
    return values


def apply_workflow_policy(settings: Settings, plan: Plan) -> None:
    settings.setdict(workflow_settings(plan), priority="spider")
