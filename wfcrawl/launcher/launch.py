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
4. **record** exit status, stats and the log's last lines on the execution.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scrapy.utils.conf import closest_scrapy_cfg

from wfcrawl.launcher.checks import (
    BUSY_RETRY_AFTER,
    EXECUTION_ID,
    LauncherBusyError,
    LaunchRejectedError,
    LaunchRequest,
    RequestChecker,
)
from wfcrawl.launcher.config import LauncherConfig
from wfcrawl.launcher.process import CrawlChild
from wfcrawl.launcher.registry import WorkflowRegistry
from wfcrawl.storage.executions import FINAL_STATUSES, Execution, ExecutionStore
from wfcrawl.workflow import Plan

logger = logging.getLogger(__name__)

#: Bound on the retry chain (Pub/Sub's max delivery attempts bound it first).
MAX_ATTEMPTS = 100


@dataclass
class _Running:
    execution_id: str
    child: CrawlChild
    directory: Any
    done: threading.Event = field(default_factory=threading.Event)


def _now() -> datetime:
    return datetime.now(timezone.utc)


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

    # ------------------------------------------------------------ launch

    def launch(self, request: LaunchRequest, *, retry_failed: bool = False) -> tuple[Execution, bool]:
        """Check, create (idempotently) and start; (execution, started)."""
        plan, text = self.check(request)
        with self._lock:
            if self._stopping or len(self._running) + self._reserved >= self.config.max_crawls:
                raise LauncherBusyError(f"{self.config.max_crawls} crawls are running")
            self._reserved += 1
        try:
            base_key = request.launch_key or (f"id:{request.execution_id}" if request.execution_id else None)
            for attempt in range(1, MAX_ATTEMPTS + 1):
                execution, created = self.store.create(self._execution(request, plan, base_key, attempt))
                if created:
                    return self._start(execution, text, request), True
                if not (retry_failed and execution.status == "failed"):
                    return execution, False
                logger.info("Execution %s failed; starting attempt %d", execution.id, attempt + 1)
            raise LaunchRejectedError(f"{MAX_ATTEMPTS} attempts failed")
        finally:
            with self._lock:
                self._reserved -= 1

    def _execution(self, request: LaunchRequest, plan: Plan, base_key: str | None, attempt: int) -> Execution:
        if request.execution_id:
            execution_id = request.execution_id if attempt == 1 else f"{request.execution_id}-{attempt}"
        else:
            execution_id = uuid.uuid4().hex
        params = {**request.params, "origin": request.origin, "attempt": attempt}
        if request.workflow:
            params["registered_workflow"] = request.workflow
        if request.base_url:
            params["base_url"] = request.base_url
        key = None if base_key is None else (base_key if attempt == 1 else f"{base_key}#{attempt}")
        return Execution(id=execution_id, workflow=plan.name, launch_key=key, params=params)

    def _argv(self, execution: Execution, workflow_file: str, stats_file: str, base_url: str | None) -> list[str]:
        argv = [sys.executable, "-m", "scrapy", "crawl", "workflow",
                "-a", f"workflow={workflow_file}", "-a", f"execution_id={execution.id}",
                "-s", f"WFCRAWL_STATS_FILE={stats_file}", "-s", "WFCRAWL_SSRF_GUARD_ENABLED=True",
                # The address the connection is made to, checked too (DNS rebinding).
                "-s", "TWISTED_DNS_RESOLVER=wfcrawl.middlewares.ssrf.GuardedResolver"]
        if base_url:
            argv += ["-a", f"base_url={base_url}"]
        if self.config.allowed_networks:
            argv += ["-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=" + ",".join(self.config.allowed_networks)]
        if self.config.script_modules:
            argv += ["-s", "WFCRAWL_SCRIPT_MODULES=" + ",".join(self.config.script_modules)]
        return argv + list(self.config.crawl_args)

    def _start(self, execution: Execution, text: str, request: LaunchRequest) -> Execution:
        directory = self.config.workdir / execution.id
        try:
            directory.mkdir(parents=True, exist_ok=True)
            workflow_file = directory / "workflow.yaml"  # JSON text is detected by its "{"
            workflow_file.write_text(text, encoding="utf-8")
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            if not closest_scrapy_cfg():  # in a Scrapy project the crawl uses its settings
                env.setdefault("SCRAPY_SETTINGS_MODULE", "wfcrawl.settings")
            argv = self._argv(execution, str(workflow_file), str(directory / "stats.json"), request.base_url)
            child = CrawlChild(execution.id, argv, env=env, cwd=Path.cwd(),
                               log_tail_lines=self.config.log_tail_lines, forward_logs=self.config.forward_logs)
        except OSError as exc:
            logger.error("Cannot start the crawl of execution %s: %s", execution.id, exc)
            failed = self.store.update(execution.id, status="failed", finished_at=_now(),
                                       finish_reason="launch_failed", error=f"cannot start the crawl: {exc}")
            return failed or execution
        running = _Running(execution.id, child, directory)
        with self._lock:
            self._running[execution.id] = running
        logger.info("Execution %s (workflow %s, %s) started as pid %d",
                    execution.id, execution.workflow, request.origin, child.pid)
        started = self.store.update(execution.id, status="running", started_at=_now())
        threading.Thread(target=self._monitor, args=(running,), name=f"wfcrawl-monitor-{execution.id}",
                         daemon=True).start()
        return started or execution

    # ------------------------------------------------------------ monitor

    def _monitor(self, running: _Running) -> None:
        child = running.child
        deadline = time.monotonic() + self.config.crawl_timeout if self.config.crawl_timeout > 0 else None
        try:
            while (returncode := child.wait(self.config.poll_interval)) is None:
                if child.stop_reason is not None:
                    continue
                if deadline is not None and time.monotonic() > deadline:
                    child.stop("timeout", self.config.kill_timeout)
                elif self._cancelled_elsewhere(running.execution_id):
                    child.stop("cancelled", self.config.kill_timeout)
            self._record(running, returncode)
        except Exception:
            logger.exception("Recording the end of execution %s failed", running.execution_id)
        finally:
            with self._lock:
                self._running.pop(running.execution_id, None)
            running.done.set()
            if not self.config.keep_files:
                shutil.rmtree(running.directory, ignore_errors=True)

    def _cancelled_elsewhere(self, execution_id: str) -> bool:
        # The API of another instance cancels by setting the status in the store.
        try:
            current = self.store.get(execution_id)
        except Exception as exc:  # the store may be down for a moment; the crawl goes on
            logger.warning("Cannot read execution %s: %s", execution_id, exc)
            return False
        return current is not None and current.status == "cancelled"

    def _record(self, running: _Running, returncode: int) -> None:
        from wfcrawl.extensions.executions import status_for

        child = running.child
        stats = _read_json(running.directory / "stats.json")
        reason = stats.get("finish_reason")
        tail = child.log_tail()
        current = self.store.get(running.execution_id)
        if child.stop_reason is not None:
            # The crawl's own recorder calls a SIGTERM "cancelled"; a timeout or the
            # launcher's shutdown is a failure (Pub/Sub must run it again).
            status = "cancelled" if child.stop_reason == "cancelled" else "failed"
        elif reason == "cancelled" or (current is not None and current.status == "cancelled"):
            status = "cancelled"
        elif returncode == 0 and isinstance(reason, str) and status_for(reason) == "finished":
            status = "finished"
        else:
            status = "failed"
        error = None
        if status == "failed":
            why = f"crawl exited with status {returncode}"
            why += f", finish reason {reason}" if reason else ", no final stats (it failed at start or was killed)"
            if child.stop_reason:
                why += f"; stopped by the launcher: {child.stop_reason}"
            error = "\n".join([why, *_error_lines(tail)])
        stats["wfcrawl/launcher/exit_code"] = returncode
        stats["wfcrawl/launcher/log_tail"] = "\n".join(tail)
        self.store.update(
            running.execution_id, status=status, finished_at=_now(), stats=stats, error=error,
            finish_reason=reason or child.stop_reason or f"exit_status_{returncode}",
        )
        logger.info("Execution %s %s (exit status %d)", running.execution_id, status, returncode)

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
        execution = self.store.get(execution_id)
        if execution is None or execution.status in FINAL_STATUSES:
            return execution
        self.store.update(execution_id, status="cancelled", finished_at=_now(), finish_reason="cancelled")
        with self._lock:
            running = self._running.get(execution_id)
        if running is not None:
            running.child.stop("cancelled", self.config.kill_timeout)
        return self.store.get(execution_id)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop every crawl (they end ``failed``, so Pub/Sub redelivers them) and wait."""
        with self._lock:
            self._stopping = True
            running = list(self._running.values())
        for r in running:
            r.child.stop("launcher_shutdown", self.config.kill_timeout)
        for r in running:
            r.done.wait(timeout if timeout is not None else self.config.kill_timeout + 10)


def _read_json(path: Any) -> dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _error_lines(tail: list[str]) -> list[str]:
    """The log lines worth showing with a failure (errors and the last words)."""
    picked = [line for line in tail if "ERROR" in line or "CRITICAL" in line or line.startswith(("Error", "error"))]
    return (picked or tail)[-10:]


__all__ = [
    "BUSY_RETRY_AFTER", "EXECUTION_ID", "LaunchRejectedError", "LaunchRequest", "Launcher", "LauncherBusyError",
]
