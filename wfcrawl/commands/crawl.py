"""``scrapy crawl``, checking a workflow document before anything starts, exiting with the outcome.

Scrapy's own ``crawl`` command, except that

- for the ``workflow`` spider the document is validated first: an invalid
  document (or a missing environment variable it needs) prints its located
  problems, no traceback, and exits with status 2 (with ``LOG_FILE``, as
  under scrapyd, the problems are also in the log);
- the exit status is the crawl's outcome (:data:`wfcrawl.outcome.EXIT_CODES`:
  0 succeeded, 1 failed, 3 degraded, 4 cancelled; 130/143 when SIGINT/SIGTERM
  interrupted it), not 0 for every crawl that managed to start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from scrapy.commands.crawl import Command as ScrapyCrawlCommand

from wfcrawl.exceptions import WfcrawlError
from wfcrawl.observability.outcome import OutcomeMonitor
from wfcrawl.outcome import EXIT_INVALID
from wfcrawl.spiders.loading import plan_for_crawl

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


class Command(ScrapyCrawlCommand):
    #: The crawl's crawler, for its outcome once it ran.
    _ran: Crawler | None = None

    def _create_crawler(self, spidercls: type[Spider] | str) -> Crawler:
        self._ran = super()._create_crawler(spidercls)
        return self._ran

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if args and args[0] == "workflow":
            assert self.settings is not None
            try:
                plan_for_crawl(self.settings, opts.spargs)
            except WfcrawlError as exc:
                print(exc, file=sys.stderr)
                if self.settings.get("LOG_FILE"):  # scrapyd's job log: the page its job list links to
                    logger.error("The crawl does not start (exit status %d):\n%s", EXIT_INVALID, exc)
                self.exitcode = EXIT_INVALID
                return
        super().run(args, opts)
        if self.exitcode == 0 and self._ran is not None:
            monitor = OutcomeMonitor.of(self._ran)
            if monitor is not None and monitor.end is not None:
                self.exitcode = monitor.end.exit_code()
