"""The crawl process's side of the parse workers (asyncio; Scrapy's asyncio reactor).

Rules for workers that die (killed, out of memory, a crash in lxml), so that no
page is lost without a trace:

- every page a dead worker held is sent again, once, to a new worker
  (``wfcrawl/parse_workers/retried``);
- a page that was in the hands of two workers that died raises
  :class:`ParseWorkerCrashedError`: it is likely the cause, and the crawl process
  does not parse it itself (that could kill the crawl); the spider counts it
  (``wfcrawl/pages/error/parse_worker``) and logs its URL;
- a dead worker is replaced, at most ``WFCRAWL_PARSE_WORKER_RESTARTS`` times in
  a crawl; past that, or if a worker cannot start (it fails or exits before it
  is ready), the pool is
  unavailable: :class:`ParsePoolUnavailableError`, and the spider parses in its own
  process from then on (``wfcrawl/parse_workers/fallback``), logged once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scrapy.http import TextResponse

from wfcrawl.parsing import frames
from wfcrawl.workflow.page import Item, Link, NodeFailure, Page

logger = logging.getLogger(__name__)

#: Seconds a worker gets to exit after its stdin closed, before it is killed.
EXIT_TIMEOUT = 10.0


class ParsePoolUnavailableError(RuntimeError):
    """No parse worker can take the page: parse it in the crawl process."""


class ParseWorkerCrashedError(RuntimeError):
    """Two parse workers died holding this page."""


@dataclass
class ParseResult:
    outputs: list[Item | Link | NodeFailure]
    counts: dict[str, int]
    warnings: list[tuple[Any, str, tuple[Any, ...]]]
    logs: list[tuple[str, int, str]]
    #: The traceback of a failure outside the nodes (the page fails as a spider
    #: callback error would), else None.
    error: str | None = None


@dataclass
class _Task:
    id: int
    url: str
    frame: bytes
    future: asyncio.Future[Any]
    attempts: int = 0


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    writer: asyncio.WriteTransport | None = None
    pending: dict[int, _Task] = field(default_factory=dict)
    ready: bool = False
    #: Stdin closed or the worker gone: it takes no more tasks.
    closing: bool = False


class _Reader(asyncio.Protocol):
    def __init__(self, pool: ParsePool, worker: _Worker) -> None:
        self.pool = pool
        self.worker = worker
        self.buffer = frames.FrameBuffer()

    def data_received(self, data: bytes) -> None:
        for message in self.buffer.feed(data):
            self.pool._received(self.worker, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool._lost(self.worker)


class ParsePool:
    """``size`` worker processes compiling the workflow from ``init`` (see
    :mod:`wfcrawl.parsing.frames`); started on the first page."""

    def __init__(
        self, size: int, init: dict[str, Any], *, max_restarts: int,
        count: Callable[[str], None], command: list[str] | None = None,
    ) -> None:
        self.size = size
        self.init_frame = frames.encode(init)
        self.max_restarts = max_restarts
        self.count = count
        self.command = command or [sys.executable, "-m", "wfcrawl.parsing.worker"]
        self.workers: list[_Worker] = []
        self.restarts = 0
        self.unavailable: str | None = None  # why, once the pool gave up
        self.closed = False
        self._ids = itertools.count()
        self._started = False
        #: Tasks waiting for a worker (none is running: all are being replaced).
        self._waiting: list[_Task] = []

    # ------------------------------------------------------------------ API

    async def parse(self, response: TextResponse, page: Page) -> ParseResult:
        if self.unavailable is not None or self.closed:
            raise ParsePoolUnavailableError(self.unavailable or "closed")
        if not self._started:
            self._started = True
            for index in range(self.size):
                self._spawn(index)
        task_id = next(self._ids)
        entry = _Task(task_id, response.url, frames.encode(frames.task(task_id, response, page)),
                      asyncio.get_running_loop().create_future())
        self._dispatch(entry)
        result: frames.Result = await entry.future
        return ParseResult(frames.decode_outputs(result.outputs), result.counts, result.warnings, result.logs,
                           result.error)

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process.poll() is None]

    async def close(self) -> None:
        """Close the workers' stdin and wait for them to exit (reaped: their CPU
        time counts in this process's rusage)."""
        self.closed = True
        for worker in self.workers:
            worker.closing = True
            if worker.writer is not None:  # else _connect closes it once connected
                worker.writer.close()
        deadline = time.monotonic() + EXIT_TIMEOUT
        for worker in self.workers:
            while worker.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
        self._fail_all(ParsePoolUnavailableError("closed"))

    # ------------------------------------------------------------ internals

    def _spawn(self, index: int) -> None:
        # The worker imports wfcrawl from wherever this process found it (a scrapyd egg, say).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, env=env,
        )
        worker = _Worker(index, process)
        if index < len(self.workers):
            self.workers[index] = worker
        else:
            self.workers.append(worker)
        asyncio.get_running_loop().create_task(self._connect(worker))

    async def _connect(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        process = worker.process
        assert process.stdin is not None and process.stdout is not None
        writer, _ = await loop.connect_write_pipe(asyncio.Protocol, process.stdin)
        await loop.connect_read_pipe(lambda: _Reader(self, worker), process.stdout)
        if worker.closing:  # died or closed meanwhile (_lost/_give_up saw no writer)
            writer.close()
            return
        # No await from here on: the init message, then the tasks dispatched to
        # this worker while its pipes were being connected, in order.
        writer.write(self.init_frame)
        for task in worker.pending.values():
            writer.write(task.frame)
        worker.writer = writer
        waiting, self._waiting = self._waiting, []
        for task in waiting:
            self._dispatch(task)

    def _dispatch(self, task: _Task) -> None:
        live = [w for w in self.workers if not w.closing]
        if not live:
            self._waiting.append(task)
            return
        worker = min(live, key=lambda w: len(w.pending))
        worker.pending[task.id] = task
        if worker.writer is not None:
            worker.writer.write(task.frame)

    def _received(self, worker: _Worker, message: Any) -> None:
        if isinstance(message, frames.Result):
            task = worker.pending.pop(message.id, None)
            if task is not None and not task.future.done():
                task.future.set_result(message)
        elif message[0] == "ready":
            worker.ready = True
        elif message[0] == "init_error":
            self._give_up(f"a parse worker could not start:\n{message[1].rstrip()}")

    def _lost(self, worker: _Worker) -> None:
        if worker.closing:  # closed by us: close() reaps it
            return
        # Its stdout closed: it is exiting. Its exit code is worth the wait of a
        # moment (rare path); one that does not exit is reaped, or killed, later.
        try:
            worker.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            asyncio.get_running_loop().create_task(self._reap(worker.process))
        worker.closing = True
        if worker.writer is not None:
            worker.writer.close()
        self.count("wfcrawl/parse_workers/lost")
        pending, worker.pending = list(worker.pending.values()), {}
        logger.warning(
            "Parse worker %d (pid %d) died (exit code %s) holding %d page(s)",
            worker.index, worker.process.pid, worker.process.poll(), len(pending),
        )
        if self.unavailable is None and not self.closed:
            if not worker.ready:  # it could not even start: another would not either
                self._give_up(f"a parse worker exited before it was ready (exit code {worker.process.poll()})")
            elif self.restarts >= self.max_restarts:
                self._give_up(f"{self.restarts} parse worker restart(s): WFCRAWL_PARSE_WORKER_RESTARTS reached")
            else:
                self.restarts += 1
                self._spawn(worker.index)
        for task in pending:
            task.attempts += 1
            if task.future.done():
                continue
            if task.attempts >= 2:
                task.future.set_exception(ParseWorkerCrashedError(
                    f"{task.url}: two parse workers died while parsing it"
                ))
            elif self.unavailable is not None or self.closed:
                task.future.set_exception(ParsePoolUnavailableError(self.unavailable or "closed"))
            else:
                self.count("wfcrawl/parse_workers/retried")
                self._dispatch(task)

    def _give_up(self, reason: str) -> None:
        if self.unavailable is not None:
            return
        self.unavailable = reason
        logger.error("Parse workers unavailable, parsing in the crawl process from now on: %s", reason)
        for worker in self.workers:
            if not worker.closing:
                worker.closing = True
                if worker.writer is not None:
                    worker.writer.close()
        self._fail_all(ParsePoolUnavailableError(reason))

    def _fail_all(self, exc: Exception) -> None:
        tasks = [t for w in self.workers for t in w.pending.values()] + self._waiting
        self._waiting = []
        for worker in self.workers:
            worker.pending = {}
        for task in tasks:
            if not task.future.done():
                task.future.set_exception(exc)

    @staticmethod
    async def _reap(process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + EXIT_TIMEOUT
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                return
            await asyncio.sleep(0.05)
