"""``scrapy crawl``, checking a workflow document before anything starts.

Scrapy's own ``crawl`` command, except that for the ``workflow`` spider the
document is validated first: an invalid document (or a missing environment
variable it needs) prints its located problems, no traceback, and exits with
status 2.
"""

from __future__ import annotations

import argparse
import sys

from scrapy.commands.crawl import Command as ScrapyCrawlCommand

from wfcrawl.exceptions import WfcrawlError
from wfcrawl.spiders.workflow import plan_for_crawl


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if args and args[0] == "workflow":
            try:
                assert self.settings is not None
                plan_for_crawl(self.settings, opts.spargs)
            except WfcrawlError as exc:
                print(exc, file=sys.stderr)
                self.exitcode = 2
                return
        super().run(args, opts)
