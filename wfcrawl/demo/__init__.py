"""``wfcrawl demo``: crawl the bundled demo shop with ``workflows/demo.yaml``.

The console shows the address of the demo shop, progress while it runs, and
the crawl's summary once (its last line: where the items went); Scrapy's
start-up lists of components and settings stay out of it (``-L DEBUG`` with
``wfcrawl run`` shows them).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from scrapy.crawler import CrawlerProcess
from scrapy.settings import default_settings
from scrapy.utils.project import get_project_settings

from wfcrawl.demo.site import serve
from wfcrawl.observability.outcome import OutcomeMonitor
from wfcrawl.spiders.workflow import WorkflowSpider


def _console_logging(settings: Any) -> None:
    """wfcrawl's INFO lines and everyone's warnings on stderr. Scrapy's own INFO lines
    (versions, enabled components, overridden settings) are for developers of a crawl."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(settings.get("LOG_FORMAT"), settings.get("LOG_DATEFORMAT")))
    handler.setLevel(logging.INFO)
    logging.root.addHandler(handler)
    logging.root.setLevel(logging.NOTSET)  # as Scrapy does: the handler filters
    logging.getLogger("scrapy").setLevel(logging.WARNING)


def run_demo(out: str, workflow: str | None = None) -> int:
    if workflow is None:
        # From the project directory its file; anywhere else (the Docker image) the
        # copy shipped in the package, by its bundled name.
        workflow = "workflows/demo.yaml" if Path("workflows/demo.yaml").is_file() else "demo"
    elif not Path(workflow).is_file():
        print(f"wfcrawl demo: {workflow} not found (run it from the project directory or pass --workflow)")
        return 2
    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", "wfcrawl.settings")
    settings = get_project_settings()
    settings.set("FEEDS", {out: {"format": "jsonlines", "overwrite": True}}, priority="cmdline")
    with serve() as url:
        print(f"demo shop serving at {url}", flush=True)
        if hasattr(default_settings, "LOG_INSTALL_ROOT_HANDLER"):  # Scrapy 2.19+
            settings.set("LOG_INSTALL_ROOT_HANDLER", False, priority="cmdline")
            process = CrawlerProcess(settings)
        else:  # Scrapy 2.18: the argument (2.19 deprecates it)
            process = CrawlerProcess(settings, install_root_handler=False)
        _console_logging(settings)
        crawler = process.create_crawler(WorkflowSpider)
        process.crawl(crawler, workflow=workflow, base_url=url)
        process.start()
    monitor = OutcomeMonitor.of(crawler)
    return monitor.end.exit_code() if monitor is not None and monitor.end is not None else 1
