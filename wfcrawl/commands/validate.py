"""``scrapy validate FILE...``: check workflow documents, report every problem."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import TextIO

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from wfcrawl.exceptions import WorkflowError
from wfcrawl.workflow import check_source
from wfcrawl.workflow.source import load_source


def validate_files(paths: Iterable[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Validate each file; print problems to ``err``; 0 when all are valid, else 1."""
    failed = 0
    for path in paths:
        try:
            _, problems = check_source(load_source(path))
        except WorkflowError as exc:
            problems = list(exc.problems)
        if problems:
            failed += 1
            for problem in problems:
                print(problem, file=err)
        else:
            print(f"{path}: ok", file=out)
    return 1 if failed else 0


class Command(ScrapyCommand):
    requires_project = False
    default_settings = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return "FILE [FILE ...]"

    def short_desc(self) -> str:
        return "Validate workflow documents (all errors, as file:line:col: $.path: message)"

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if not args:
            raise UsageError("give at least one workflow file")
        self.exitcode = validate_files(args)
