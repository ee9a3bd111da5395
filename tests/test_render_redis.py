"""Rendered requests through wfcrawl's Redis scheduler: the render block travels as data.

With ``REDIS_URL`` set the crawl runs on wfcrawl's distributed scheduler, whose
serializer is strict JSON (a Python object left in a request's meta is dropped
and counted as ``wfcrawl/scheduler/meta_dropped``). Seeds, links found on a plain page with a node-level render block, and
the retry of a rendered page that timed out all go through Redis; its dupefilter
uses the crawler's fingerprinter, so a `distinct` render block is honoured.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Crawl, require_service, stat_items
from tests.mockserver import MockServer

pytestmark = [pytest.mark.requires_browser, pytest.mark.requires_redis]

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except Exception:
        return False


def test_rendered_requests_travel_through_redis_as_plain_data(
    crawl: Any, server: MockServer, tmp_path: Path
) -> None:
    require_service("Redis", _redis_up(), "redis-server on 127.0.0.1:6379")
    require_service("Chromium", shutil.which("chromium") is not None, "apt-get install chromium")
    execution_id = f"render-{uuid.uuid4().hex[:12]}"
    doc = {
        "name": "jsredis",
        "start_urls": [
            {"url": "/js/index.html", "phase": "index"},
            {"url": "/js/onload.html", "phase": "onload"},
            {"url": "/js/hang.html", "phase": "hang"},
        ],
        "phases": {
            "index": {
                "nodes": [
                    {"type": "extract_links", "css": "a.detail", "marker": "detail", "render": {"wait_for": "h1.name"}},
                    {"type": "extract_links", "css": "a.shot", "marker": "detail",
                     "render": {"wait_for": "h1.name", "distinct": True}},
                    {"type": "extract_links", "css": "a.again", "marker": "again"},
                ],
                "transitions": [{"marker": "detail", "to": "detail"}, {"marker": "again", "to": "plain_detail"}],
            },
            "detail": {"nodes": [{"type": "extract", "item": "detail", "fields": {"name": "h1.name::text"}}]},
            "plain_detail": {"nodes": [{"type": "extract", "item": "plain_detail", "fields": {"static": "p.static::text"}}]},
            "onload": {"render": {}, "nodes": [{"type": "extract", "item": "onload", "rows": "li.product",
                                                 "fields": {"name": ".name::text"}}]},
            "hang": {"render": {"timeout": 1}, "nodes": [{"type": "extract", "item": "hang", "fields": {"name": "h1"}}]},
        },
    }
    path = tmp_path / "workflow.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result: Crawl = crawl(
        path,
        *("-s", f"REDIS_URL={REDIS_URL}", "-a", f"execution_id={execution_id}",
          "-s", "WFCRAWL_RENDER_RETRY_TIMES=1"),
        base_url=server.url,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Nothing had to be left behind: wfcrawl's queue drops (and counts) meta that is not plain data.
    assert "wfcrawl/scheduler/meta_dropped" not in result.stats
    assert result.fields("detail") == [{"name": "Item 1"}, {"name": "Item 2"}, {"name": "Item 3"}]
    assert result.fields("onload") == [{"name": "Blue kettle"}, {"name": "Red kettle"}, {"name": "Steel kettle"}]
    # The shared dupefilter: id=1 rendered made its plain twin a duplicate; id=3 is `distinct`.
    assert [i["_meta"]["url"] for i in result.of_type("plain_detail")] == [f"{server.url}/js/detail.html?id=3"]
    # 3 seeds + 3 rendered links + 1 plain link + 1 retry of the hung page, every one through Redis.
    assert result.stats["scheduler/enqueued/redis"] == result.stats["scheduler/dequeued/redis"] == 8
    assert stat_items(result.stats, "wfcrawl/render/") == {
        "requests": 6, "pages": 4, "failed/timeout": 2,
        "retry/count": 1, "retry/reason_count/timeout": 1, "retry/max_reached": 1,
    }
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = client.keys(f"wfcrawl:{{jsredis:{execution_id}}}:*")
    assert keys != []  # the crawl's state was in Redis
    client.delete(*keys)
