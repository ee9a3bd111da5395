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
from wfcrawl.workflow import load_text
from wfcrawl.workflow.page import Page


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
        self.plan = load_text(init["text"], init["name"], **init["options"])
        self.collector = Collector()
        root = logging.getLogger()
        root.handlers[:] = [self.collector]
        root.setLevel(init.get("log_level", logging.INFO))

    def parse(self, task: frames.Task) -> frames.Result:
        reporter = Reporter()
        self.collector.records = []
        try:
            headers = {b"Content-Type": task.content_type} if task.content_type is not None else None
            response = frames.RESPONSE_CLASSES[task.kind](url=task.url, body=task.body, headers=headers,
                                                          encoding=task.encoding)
            page = Page(response, phase=task.phase, marker=task.marker, markers=task.markers, depth=task.depth,
                        page_number=task.page_number, reporter=reporter, variables=task.variables)
            outputs = frames.encode_outputs(self.plan.phases[task.phase].run(page))
        except Exception:
            return frames.Result(task.id, [], {}, [], self.collector.records, traceback.format_exc())
        return frames.Result(task.id, outputs, reporter.counts, reporter.warnings, self.collector.records)


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
