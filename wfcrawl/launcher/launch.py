"""The one path every launcher takes: check, create idempotently, run, record.

The API, the Pub/Sub push endpoint, the pull listener (and the scheduler)
all call :meth:`Launcher.launch`:

1. **check** the untrusted request (:meth:`Launcher.check`): size, arguments,
   the document validated and compiled with the script-module allowlist, no
   environment variables unless allowed, start URLs through the SSRF policy.
   A request that fails raises :class:`LaunchRejectedError`; nothing is created.
2. **create** the execution in the :class:`ExecutionStore`, idempotently by
   launch key (a Pub/Sub message id, an ``Idempotency-Key``, a caller's
   execution id): a launch delivered twice finds the first execution and
   starts nothing. With ``retry_failed`` (Pub/Sub redelivery after a nack) an
   execution that *failed* is followed by attempt 2, 3, ... (keys ``KEY#2``...),
   each again created idempotently, so two concurrent redeliveries still start
   one crawl.
3. **run** ``python -m scrapy crawl workflow -a workflow=FILE -a execution_id=ID``
   as a child process, with the SSRF guard on and ``WFCRAWL_STATS_FILE`` set.
   While it runs, the crawl rewrites its stats file every
   ``WFCRAWL_STATS_FILE_INTERVAL`` seconds: the launcher samples pages and items
   from it (``wfcrawl/launcher/samples``, the dashboard's pages/s chart) and,
   when the crawl does not record itself (no PostgreSQL), keeps the execution's
   stats current with it.
4. **record** the outcome (:func:`wfcrawl.outcome.decide` from the crawl's final
   stats, the workflow's expectations and how it ended: a time-out, a cancel, a
   kill), stats and the log's last lines on the execution
   (:mod:`wfcrawl.launcher.record`).

Items go where the crawl's settings say (PostgreSQL, GCS, feeds); when they say
nowhere, to the default sink: ``WFCRAWL_LAUNCHER_ITEMS_DIR/<execution id>.jsonl``,
named on the execution (``params.items_file``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from scrapy.utils.conf import closest_scrapy_cfg

from wfcrawl.launcher.checks import (
    BUSY_RETRY_AFTER,
    EXECUTION_ID,
    LaunchConflictError,
    LauncherBusyError,
    LaunchRejectedError,
    LaunchRequest,
    RequestChecker,
)
from wfcrawl.launcher.config import LauncherConfig
from wfcrawl.launcher.documents import archive, archived
from wfcrawl.launcher.keys import execution_id_for, request_digest, same_request
from wfcrawl.launcher.process import CrawlChild
from wfcrawl.launcher.record import cancel_execution, now, record_end, record_start_failure
from wfcrawl.launcher.registry import WorkflowRegistry
from wfcrawl.launcher.samples import Sampler
from wfcrawl.storage.executions import FINAL_STATUSES, Execution, ExecutionStore
from wfcrawl.storage.postgres.executions import PostgresExecutionStore
from wfcrawl.workflow import Plan
from wfcrawl.workflow.plan import Expectations

logger = logging.getLogger(__name__)

#: Bound on the retry chain (Pub/Sub's max delivery attempts bound it first).
MAX_ATTEMPTS = 100


@dataclass
class _Running:
    execution_id: str
    child: CrawlChild
    directory: Path
    expect: Expectations
    sampler: Sampler
    done: threading.Event = field(default_factory=threading.Event)


class Launcher(RequestChecker):
    """Starts crawls of untrusted requests (:meth:`launch`), watches and records them.

    One per process: it knows the crawls it started (for :meth:`wait` and
    :meth:`cancel`); others are seen through the :class:`ExecutionStore`.
    """

    def __init__(self, config: LauncherConfig, store: ExecutionStore,
                 registry: WorkflowRegistry | None = None) -> None:
        super().__init__(config, registry)
        self.store = store
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._reserved = 0
        self._stopping = False
        # A crawl with PostgreSQL records its own stats (the sum of a fleet's): left to it.
        self._live_stats = not isinstance(store, PostgresExecutionStore)

    # ------------------------------------------------------------ launch

    def launch(self, request: LaunchRequest, *, retry_failed: bool = False) -> tuple[Execution, bool]:
        """Check, create (idempotently) and start; (execution, started).

        The same launch key (Idempotency-Key, message id, execution id) with
        another request is a :class:`LaunchConflictError`; with the same request
        it finds the execution it started, even while every slot is busy.
        """
        plan, text = self.check(request)
        digest = request_digest(request)
        base_key = request.launch_key or (f"id:{request.execution_id}" if request.execution_id else None)
        with self._lock:
            busy = self._stopping or len(self._running) + self._reserved >= self.config.max_crawls
            if not busy:
                self._reserved += 1
        if busy:
            existing = self._existing(request, base_key, digest, retry_failed)
            if existing is not None:
                return existing, False
            raise LauncherBusyError(f"{self.config.max_crawls} crawls are running")
        try:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                execution, created = self.store.create(self._execution(request, plan, base_key, attempt, digest,
                                                                       text))
                if created:
                    return self._start(execution, text, request, plan), True
                same_request(execution, digest)
                if not (retry_failed and execution.status == "failed"):
                    return execution, False
                logger.info("Execution %s failed; starting attempt %d", execution.id, attempt + 1)
            raise LaunchRejectedError(f"{MAX_ATTEMPTS} attempts failed")
        finally:
            with self._lock:
                self._reserved -= 1

    def _existing(self, request: LaunchRequest, base_key: str | None, digest: str,
                  retry_failed: bool) -> Execution | None:
        """The execution this keyed request started already (None: it would start one)."""
        if base_key is None:
            return None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            execution = self.store.get(execution_id_for(request, base_key, attempt))
            if execution is None:
                return None
            same_request(execution, digest)
            if not (retry_failed and execution.status == "failed"):
                return execution
        return None

    def _execution(self, request: LaunchRequest, plan: Plan, base_key: str | None, attempt: int,
                   digest: str, text: str) -> Execution:
        execution_id = execution_id_for(request, base_key, attempt)
        params = {**request.params, "origin": request.origin, "attempt": attempt, "request_digest": digest,
                  "document_sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()}
        if request.workflow:
            params["registered_workflow"] = request.workflow
        if request.base_url:
            params["base_url"] = request.base_url
        if self.config.items_dir is not None:
            params["items_file"] = str(self.config.items_dir / f"{execution_id}.jsonl")
        key = None if base_key is None else (base_key if attempt == 1 else f"{base_key}#{attempt}")
        return Execution(id=execution_id, workflow=plan.name, launch_key=key, params=params)

    def _argv(self, execution: Execution, workflow_file: str, stats_file: str, base_url: str | None) -> list[str]:
        argv = [sys.executable, "-m", "scrapy", "crawl", "workflow",
                "-a", f"workflow={workflow_file}", "-a", f"execution_id={execution.id}",
                "-s", f"WFCRAWL_STATS_FILE={stats_file}", "-s", "WFCRAWL_SSRF_GUARD_ENABLED=True",
                # The address the connection is made to, checked too (DNS rebinding).
                "-s", "TWISTED_DNS_RESOLVER=wfcrawl.security.resolvers.GuardedResolver"]
        if base_url:
            argv += ["-a", f"base_url={base_url}"]
        if self.config.allowed_networks:
            argv += ["-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=" + ",".join(self.config.allowed_networks)]
        if self.config.script_modules:
            argv += ["-s", "WFCRAWL_SCRIPT_MODULES=" + ",".join(self.config.script_modules)]
        items_file = execution.params.get("items_file")
        if items_file:  # no store configured: the default sink, never nowhere
            argv += ["-o", f"{items_file}:jsonlines"]
        return argv + list(self.config.crawl_args)

    def _start(self, execution: Execution, text: str, request: LaunchRequest, plan: Plan) -> Execution:
        directory = self.config.workdir / execution.id
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if self.config.items_dir is not None:
                self.config.items_dir.mkdir(parents=True, exist_ok=True)
            workflow_file = directory / "workflow.yaml"  # JSON text is detected by its "{"
            workflow_file.write_text(text, encoding="utf-8")
            # As it ran, by digest (kept when the execution's directory is removed): a re-run
            # with the same inputs runs it again (:meth:`document`).
            archive(self.config.workdir, execution.params.get("document_sha256"), text)
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            if not closest_scrapy_cfg():  # in a Scrapy project the crawl uses its settings
                env.setdefault("SCRAPY_SETTINGS_MODULE", "wfcrawl.settings")
            argv = self._argv(execution, str(workflow_file), str(directory / "stats.json"), request.base_url)
            child = CrawlChild(execution.id, argv, env=env, cwd=Path.cwd(),
                               log_tail_lines=self.config.log_tail_lines, forward_logs=self.config.forward_logs)
        except Exception as exc:  # whatever it is, the execution must not stay queued
            return record_start_failure(self.store, execution, exc)
        running = _Running(execution.id, child, directory, plan.expect, Sampler(directory / "stats.json"))
        with self._lock:
            self._running[execution.id] = running
        logger.info("Execution %s (workflow %s, %s) started as pid %d",
                    execution.id, execution.workflow, request.origin, child.pid)
        started = self.store.update(execution.id, status="running", started_at=now())
        threading.Thread(target=self._monitor, args=(running,), name=f"wfcrawl-monitor-{execution.id}",
                         daemon=True).start()
        return started or execution

    def document(self, execution: Execution) -> str | None:
        """The document an execution ran, if this machine archived it (None otherwise)."""
        return archived(self.config.workdir, execution.params.get("document_sha256"))

    # ------------------------------------------------------------ monitor

    def _monitor(self, running: _Running) -> None:
        child = running.child
        deadline = time.monotonic() + self.config.crawl_timeout if self.config.crawl_timeout > 0 else None
        try:
            while (returncode := child.wait(self.config.poll_interval)) is None:
                self._sample(running)
                if child.stop_reason is not None:
                    continue
                if deadline is not None and time.monotonic() > deadline:
                    child.stop("timeout", self.config.kill_timeout)
                elif self._cancelled_elsewhere(running.execution_id):
                    child.stop("cancelled", self.config.kill_timeout)
            record_end(self.store, running.execution_id, running.child, running.directory, running.expect,
                       returncode, running.sampler.samples())
        except Exception:
            logger.exception("Recording the end of execution %s failed", running.execution_id)
        finally:
            with self._lock:
                self._running.pop(running.execution_id, None)
            running.done.set()
            if not self.config.keep_files:
                shutil.rmtree(running.directory, ignore_errors=True)

    def _sample(self, running: _Running) -> None:
        """Read the crawl's stats file if it changed: a sample, and the live stats."""
        stats = running.sampler.take()
        if stats is not None and self._live_stats:
            try:
                self.store.update(running.execution_id, stats=stats)
            except Exception as exc:  # the next sample tries again
                logger.warning("Cannot record the stats of execution %s: %s", running.execution_id, exc)

    def _cancelled_elsewhere(self, execution_id: str) -> bool:
        # The API of another instance cancels by setting the status in the store.
        try:
            current = self.store.get(execution_id)
        except Exception as exc:  # the store may be down for a moment; the crawl goes on
            logger.warning("Cannot read execution %s: %s", execution_id, exc)
            return False
        return current is not None and current.status == "cancelled"

    # ------------------------------------------------------------ callers

    def wait(self, execution_id: str, timeout: float | None = None) -> Execution | None:
        """The execution once it is final, or None after ``timeout`` seconds.

        A crawl of this launcher is awaited directly; one started elsewhere (a
        duplicate delivery joining it) is polled in the store.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            running = self._running.get(execution_id)
        if running is not None:
            if not running.done.wait(timeout):
                return None
        while True:
            execution = self.store.get(execution_id)
            if execution is None or execution.status in FINAL_STATUSES:
                return execution
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            time.sleep(self.config.poll_interval if left is None else min(self.config.poll_interval, left))

    def cancel(self, execution_id: str) -> Execution | None:
        """Mark the execution cancelled and stop its crawl (here, or via the store elsewhere)."""
        execution = cancel_execution(self.store, execution_id)
        if execution is None or execution.status != "cancelled":
            return execution
        with self._lock:
            running = self._running.get(execution_id)
        if running is not None:
            running.child.stop("cancelled", self.config.kill_timeout)
        return self.store.get(execution_id)

    def samples(self, execution_id: str) -> list[tuple[float, int, int]] | None:
        """(seconds, pages, items) samples of a crawl this launcher runs (None: not running here)."""
        with self._lock:
            running = self._running.get(execution_id)
            return None if running is None else running.sampler.samples()

    def log_tail(self, execution_id: str) -> list[str] | None:
        """The last log lines of a crawl this launcher runs (None: not running here)."""
        with self._lock:
            running = self._running.get(execution_id)
        return None if running is None else running.child.log_tail()

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def shutdown(self, timeout: float | None = None, *, kill_timeout: float | None = None) -> None:
        """Stop every crawl (they end ``failed``, so Pub/Sub redelivers them) and wait.

        ``kill_timeout`` (default ``WFCRAWL_LAUNCHER_KILL_TIMEOUT``): seconds from SIGTERM to
        SIGKILL, shorter when the launcher itself must stop in time (``wfcrawl serve`` on Cloud Run).
        """
        kill = self.config.kill_timeout if kill_timeout is None else kill_timeout
        with self._lock:
            self._stopping = True
            running = list(self._running.values())
        for r in running:
            r.child.stop("launcher_shutdown", kill)
        deadline = time.monotonic() + (timeout if timeout is not None else kill + 10)
        for r in running:
            r.done.wait(max(0.0, deadline - time.monotonic()))


__all__ = [
    "BUSY_RETRY_AFTER", "EXECUTION_ID", "LaunchConflictError", "LaunchRejectedError", "LaunchRequest", "Launcher", "LauncherBusyError",
]
