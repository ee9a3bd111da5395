"""A parse worker: ``python -m wfcrawl.parsing.worker``, started by :class:`ParsePool`.

Reads the init message and compiles the workflow (the same text and options as
the crawl process), answers ``ready``, then parses one task after another until
its stdin closes (the crawl ends, or the crawl process died). It runs the same
code as the crawl process parsing in-process (:class:`Page`,
:meth:`Phase.run`), and collects what the nodes report (stat counts,
once-per-key warnings, log records) for the crawl process to apply.

SIGINT and SIGTERM are ignored: Ctrl-C in a terminal reaches the whole process
group, and the crawl process still needs its workers while it shuts down
gracefully; the worker exits when the crawl process closes its stdin or dies.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from typing import Any

from wfcrawl.parsing import frames
from wfcrawl.parsing.frames import FAILURE, ITEM, LINK
from wfcrawl.workflow.plan import Item, Link, NodeFailure, Page


class Collector(logging.Handler):
    """Log records of the task being parsed, sent back with its result."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        self.records.append((record.name, record.levelno, message))


class Reporter:
    """What nodes report about a page (the WorkflowSpider's Reporter, collected)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.warnings: list[tuple[Any, str, tuple[Any, ...]]] = []
        self._warned: set[Any] = set()

    def count(self, key: str, count: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + count

    def warn_once(self, key: Any, msg: str, *args: Any) -> None:
        if key in self._warned:  # the crawl process deduplicates across workers
            return
        self._warned.add(key)
        self.warnings.append((key, msg, args))


class Worker:
    def __init__(self, init: dict[str, Any]) -> None:
        # Imported here: the worker answers "init_error" for anything that fails.
        from scrapy.http import HtmlResponse, TextResponse, XmlResponse

        from wfcrawl.workflow import load_text

        self.plan = load_text(init["text"], init["name"], **init["options"])
        self.classes = {"html": HtmlResponse, "xml": XmlResponse, "text": TextResponse}
        self.collector = Collector()
        root = logging.getLogger()
        root.handlers[:] = [self.collector]
        root.setLevel(init.get("log_level", logging.INFO))

    def parse(self, task: frames.Task) -> frames.Result:
        task_id, phase_name, marker, markers, depth, page_number, url, kind, content_type, encoding, body = task
        reporter = Reporter()
        self.collector.records = []
        outputs: list[tuple[Any, ...]] = []
        try:
            headers = {b"Content-Type": content_type} if content_type is not None else None
            response = self.classes[kind](url=url, body=body, headers=headers, encoding=encoding)
            page = Page(response, phase=phase_name, marker=marker, markers=markers, depth=depth,
                        page_number=page_number, reporter=reporter)
            for out in self.plan.phases[phase_name].run(page):
                if isinstance(out, Link):
                    outputs.append((LINK, out.url, out.marker, out.page, out.render))
                elif isinstance(out, Item):
                    outputs.append((ITEM, out.type, out.data))
                elif isinstance(out, NodeFailure):
                    text = "".join(traceback.format_exception(out.exc)) if out.exc is not None else None
                    outputs.append((FAILURE, out.label, out.error, text))
                else:  # offloadable phases yield nothing else
                    raise TypeError(f"a parse worker cannot send {type(out).__name__}")
        except Exception:
            return task_id, [], {}, [], self.collector.records, traceback.format_exc()
        return task_id, outputs, reporter.counts, reporter.warnings, self.collector.records, None


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    # Frames go to a private copy of fd 1; anything printed goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def send(message: Any) -> None:
        out.write(frames.encode(message))
        out.flush()

    init = frames.read(stdin)
    if init is None:
        return 0
    try:
        worker = Worker(init)
    except Exception:
        send(("init_error", traceback.format_exc()))
        return 1
    send(("ready", os.getpid()))
    while True:
        task = frames.read(stdin)
        if task is None:  # stdin closed: the crawl is over (or its process died)
            return 0
        send(worker.parse(task))


if __name__ == "__main__":
    sys.exit(main())
