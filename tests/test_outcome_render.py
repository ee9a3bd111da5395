"""A rendered phase that extracted nothing is not a success: with a real Chromium, a page
whose content arrives 600 ms after load, rendered without ``wait_for``, gives no item, and
the crawl comes out ``degraded`` naming the node (before outcomes: exit status 0, no word)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Crawl, stat_items
from tests.mockserver import MockServer
from tests.test_render_crawl import _browser, write  # noqa: F401 (fixture)

pytestmark = pytest.mark.requires_browser

DOC: dict[str, Any] = {
    "name": "silent",
    "start_urls": [{"url": "/js/index.html", "phase": "index"}, {"url": "/js/delayed.html", "phase": "delayed"}],
    "phases": {
        "index": {"nodes": [{"type": "extract", "item": "index", "fields": {"title": "h1.title::text"}}]},
        "delayed": {
            "render": {},  # no wait_for: the page is read at its load event, before its script filled it
            "nodes": [{"type": "extract", "name": "products", "item": "product", "rows": "li.product",
                       "fields": {"name": ".name::text"}}],
        },
    },
}


def test_a_rendered_phase_that_extracted_nothing_is_degraded_naming_the_node(
    crawl: Any, server: MockServer, tmp_path: Path,
) -> None:
    result: Crawl = crawl(write(tmp_path, DOC), base_url=server.url)
    assert result.returncode == 3, result.stderr[-3000:]
    assert result.fields("product") == [] and result.fields("index") == [{"title": "JS fixtures"}]
    assert result.stats["wfcrawl/render/pages"] == 1
    assert stat_items(result.stats, "wfcrawl/outcome") == {"": "degraded", "/reasons/node_never_matched": 1}
    assert stat_items(result.stats, "wfcrawl/nodes/") == {"matched/index/extract#0": 1, "nomatch/delayed/products": 1}
    assert ("INFO: Workflow silent DEGRADED (finished): 2 pages, 1 items, 0 failed pages\n"
            "  node_never_matched: node products of phase delayed matched nothing on any of its 1 page(s)\n"
            in result.stderr)
    # With the wait it needs, the same phase extracts its items and the crawl succeeds.
    DOC["phases"]["delayed"]["render"] = {"wait_for": "li.product"}
    result = crawl(write(tmp_path, DOC), base_url=server.url)
    assert (result.returncode, result.stats["wfcrawl/outcome"], len(result.fields("product"))) == (0, "succeeded", 2)
