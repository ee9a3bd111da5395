"""Form submissions: the request a ``form`` node's :class:`FormSubmit` becomes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from form2request import form2request
from scrapy import Request

from wfcrawl import meta as meta_keys
from wfcrawl.workflow.page import FormSubmit, Page

if TYPE_CHECKING:
    from wfcrawl.spiders.workflow import WorkflowSpider


def form_request(spider: WorkflowSpider, submit: FormSubmit, page: Page) -> Request | None:
    """The submission of a form of the page (hidden fields such as CSRF
    tokens and __VIEWSTATE carried over, the selected options kept), built with
    form2request, the successor of ``FormRequest.from_response``."""
    node = submit.node
    max_depth = spider.plan.max_depth
    if max_depth is not None and page.depth + 1 > max_depth:
        spider.crawler.stats.inc_value("wfcrawl/forms/dropped/max_depth")
        return None
    data = dict(submit.data)
    for field_name, env_name in node.env.items():
        data[field_name] = os.environ[env_name]
    meta: dict[str, Any] = {
        meta_keys.PHASE: node.phase, meta_keys.MARKER: node.marker, meta_keys.MARKERS: [*page.markers, node.marker],
        meta_keys.DEPTH: page.depth + 1,
    }
    variables = {**page.variables, **submit.values}
    if variables:
        meta[meta_keys.VARS] = variables
    if spider.plan.phases[node.phase].render is not None:
        meta[meta_keys.RENDER] = spider.plan.phases[node.phase].render
    spider.crawler.stats.inc_value("wfcrawl/forms/submitted")
    # Always submitted (dont_filter): a form's body often differs only by its
    # hidden state, and a login or a postback is meant to happen each time.
    request: Request = form2request(submit.form, data, click=submit.click).to_scrapy(
        callback=spider.parse, errback=spider.on_error, meta=meta, dont_filter=True,
    )
    return request
