"""``wfcrawl demo``: crawl the bundled demo shop with ``workflows/demo.yaml``."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path


def run_demo(out: str, workflow: str | None = None) -> int:
    from scrapy.crawler import CrawlerProcess
    from scrapy.utils.project import get_project_settings

    from wfcrawl.demo.site import serve
    from wfcrawl.extensions.summary import summarize
    from wfcrawl.spiders.workflow import WorkflowSpider

    workflow = workflow or "workflows/demo.yaml"
    if not Path(workflow).is_file():
        print(f"wfcrawl demo: {workflow} not found (run it from the project directory or pass --workflow)")
        return 2
    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", "wfcrawl.settings")
    settings = get_project_settings()
    settings.set("FEEDS", {out: {"format": "jsonlines", "overwrite": True}}, priority="cmdline")
    with serve() as url:
        print(f"demo shop serving at {url}")
        process = CrawlerProcess(settings)
        crawler = process.create_crawler(WorkflowSpider)
        process.crawl(crawler, workflow=workflow, base_url=url)
        process.start()
    assert crawler.stats is not None
    stats = crawler.stats.get_stats()
    with open(out, encoding="utf-8") as f:
        items = [json.loads(line) for line in f]
    per_type = Counter(item["_type"] for item in items)
    print(f"\n{len(items)} items written to {out}")
    for item_type, n in sorted(per_type.items()):
        print(f"  {item_type:<20} {n:>6}")
    print(summarize(stats))
    return 0 if stats.get("finish_reason") == "finished" else 1
