"""``wfcrawl scheduler [FILE ...] [-s NAME=VALUE ...] [--once]``: the scheduler service.

Scheduled workflows are the launcher registry's documents that have a
``schedule:`` block (``WFCRAWL_LAUNCHER_WORKFLOWS_DIR`` or PostgreSQL with
``DATABASE_URL``), plus workflow files named on the command line. They are
re-read every tick, so registering a workflow schedules it.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

from scrapy.utils.misc import load_object

from wfcrawl.cron.locks import open_lock
from wfcrawl.cron.service import Scheduler, SchedulerConfig, launcher_launch, load_scheduled
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.config import LauncherConfig, launcher_settings, open_registry, open_store
from wfcrawl.launcher.launch import Launcher
from wfcrawl.settings.table import read

logger = logging.getLogger(__name__)


def _launch_fn(settings: Any) -> tuple[Any, Any]:
    """(launch callable, launcher or None): the configured factory, or wfcrawl's launcher."""
    factory = read(settings, "WFCRAWL_SCHEDULE_LAUNCHER")
    if factory:
        return load_object(factory)(settings), None
    launcher = Launcher(LauncherConfig.from_settings(settings), open_store(settings), open_registry(settings))
    return launcher_launch(launcher), launcher


def run_scheduler(files: Sequence[str], overrides: dict[str, Any], *, once: bool = False) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(levelname)s: %(message)s")
    settings = launcher_settings(overrides)
    config = SchedulerConfig.from_settings(settings)
    if not config.lock_url:
        raise ConfigurationError(
            "the scheduler needs Redis or PostgreSQL so that replicas never launch a slot twice: "
            "set WFCRAWL_SCHEDULE_LOCK_URL, REDIS_URL or DATABASE_URL (memory:// for a single replica)"
        )
    lock = open_lock(config.lock_url, prefix=config.prefix, schema=config.schema)
    launch, launcher = _launch_fn(settings)
    registry = open_registry(settings)
    scheduler = Scheduler(lock, launch, grace=config.grace, max_catch_up=config.max_catch_up)
    stop = threading.Event()
    if once:
        outcomes = scheduler.tick(load_scheduled(registry, files))
        for outcome in outcomes:
            print(f"{outcome.workflow} {outcome.slot.isoformat()} {outcome.action} {outcome.execution_id or ''}".rstrip())
        if launcher is not None:  # the crawls are children of this process: see them through
            for outcome in outcomes:
                if outcome.execution_id:
                    launcher.wait(outcome.execution_id)
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        scheduler.run(lambda: load_scheduled(registry, files), config.tick, stop)
        if launcher is not None:
            launcher.shutdown()
    return 0
