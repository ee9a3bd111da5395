"""``wfcrawl scheduler``: launch due slots of workflow schedules, once across replicas.

Each tick, for every workflow with an enabled ``schedule:``, the slots after
its cursor up to now are *due*. A slot at most ``WFCRAWL_SCHEDULE_GRACE``
seconds old is *on time*; older ones were *missed* (no scheduler ran then).

* on-time slots are always launched (for a workflow never seen before, only
  the latest one);
* missed slots follow the workflow's ``catch_up``: ``latest`` launches the
  most recent missed slot unless an on-time slot is launched anyway, ``all``
  launches the most recent ``WFCRAWL_SCHEDULE_MAX_CATCH_UP`` of them, ``none``
  launches none.

A slot is launched only by the replica whose claim succeeds (see
:mod:`wfcrawl.cron.locks`), with launch key ``schedule:<workflow>:<slot>``
so the execution store dedupes too. If the launch fails the claim is released
and the cursor stays before the slot, so the next tick retries it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from scrapy.settings import BaseSettings

from wfcrawl.cron.locks import SlotLock
from wfcrawl.exceptions import WorkflowError
from wfcrawl.launcher.launch import LaunchRequest
from wfcrawl.settings.table import Config, read, setting
from wfcrawl.workflow.plan import Schedule
from wfcrawl.workflow.schedule import compile_schedule, slots_between
from wfcrawl.workflow.source import parse_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlotLaunch:
    """What the launch callable gets: one slot of one workflow."""

    workflow: str
    slot: datetime  # UTC
    launch_key: str
    #: Where the document is: a registered workflow name or a file (see ScheduledWorkflow).
    source: ScheduledWorkflow


@dataclass(frozen=True)
class ScheduledWorkflow:
    name: str
    schedule: Schedule
    document: str | None = None  # the text, for workflows given as files
    registered: bool = False  # True: the launcher's registry has it under `name`


#: Launches one slot; returns the execution id; raises to have the slot retried.
LaunchFn = Callable[[SlotLaunch], str]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def slot_key(workflow: str, slot: datetime) -> str:
    return f"schedule:{workflow}:{slot.astimezone(timezone.utc).isoformat()}"


@dataclass
class Outcome:
    workflow: str
    slot: datetime
    action: str  # launched | taken (another replica) | skipped (catch-up policy) | failed
    execution_id: str | None = None


class Scheduler:
    """One replica. :meth:`tick` is all the logic; :meth:`run` calls it periodically."""

    def __init__(
        self, lock: SlotLock, launch: LaunchFn, *, grace: float = 300.0, max_catch_up: int = 10,
        owner: str | None = None, clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.lock = lock
        self.launch = launch
        self.grace = timedelta(seconds=grace)
        self.max_catch_up = max_catch_up
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.clock = clock

    def plan_slots(self, schedule: Schedule, due: list[datetime], now: datetime) -> list[datetime]:
        """Which due slots to launch, by the catch-up policy."""
        on_time = [s for s in due if now - s <= self.grace]
        missed = [s for s in due if now - s > self.grace]
        if schedule.catch_up == "all":
            chosen = missed[-self.max_catch_up:] if self.max_catch_up > 0 else []
        elif schedule.catch_up == "latest" and not on_time:
            chosen = missed[-1:]
        else:
            chosen = []
        return chosen + on_time

    def tick(self, workflows: Iterable[ScheduledWorkflow], now: datetime | None = None) -> list[Outcome]:
        now = now or self.clock()
        outcomes: list[Outcome] = []
        for wf in workflows:
            if not wf.schedule.enabled:
                continue
            try:
                outcomes.extend(self._tick_one(wf, now))
            except Exception:
                # One broken workflow (or a lock hiccup) must not stop the others.
                logger.exception("Scheduling workflow %s failed", wf.name)
        return outcomes

    def _tick_one(self, wf: ScheduledWorkflow, now: datetime) -> list[Outcome]:
        cursor = self.lock.cursor(wf.name)
        if cursor is not None:
            due = list(slots_between(wf.schedule, cursor, now))
        else:
            # A workflow never seen before has missed nothing: its latest on-time slot, if any.
            due = list(slots_between(wf.schedule, now - self.grace, now))[-1:]
        if not due:
            return []
        chosen = set(self.plan_slots(wf.schedule, due, now))
        outcomes = []
        handled = due[-1]
        for slot in due:
            if slot not in chosen:
                outcomes.append(Outcome(wf.name, slot, "skipped"))
                continue
            if not self.lock.claim(wf.name, slot, self.owner):
                outcomes.append(Outcome(wf.name, slot, "taken"))
                continue
            try:
                execution_id = self.launch(SlotLaunch(wf.name, slot, slot_key(wf.name, slot), wf))
            except Exception as exc:
                self.lock.release(wf.name, slot)
                logger.warning("Launching %s for slot %s failed (retried next tick): %s", wf.name, slot.isoformat(), exc)
                outcomes.append(Outcome(wf.name, slot, "failed"))
                handled = slot - timedelta(seconds=1)
                break
            logger.info("Launched %s for slot %s: execution %s", wf.name, slot.isoformat(), execution_id)
            outcomes.append(Outcome(wf.name, slot, "launched", execution_id))
        for outcome in outcomes:
            if outcome.action == "skipped":
                logger.info("Skipped missed slot %s of %s (catch_up: %s)", outcome.slot.isoformat(), wf.name,
                            wf.schedule.catch_up)
        self.lock.advance(wf.name, handled)
        return outcomes

    def run(self, workflows: Callable[[], Iterable[ScheduledWorkflow]], interval: float,
            stop: threading.Event | None = None) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set (SIGTERM/SIGINT in the CLI)."""
        stop = stop or threading.Event()
        logger.info("Scheduler %s started (tick %.0f s)", self.owner, interval)
        while not stop.is_set():
            try:
                self.tick(workflows())
            except Exception:
                logger.exception("Scheduler tick failed")
            stop.wait(interval)


# ---------------------------------------------------------------- workflows and launching


def schedule_of(text: str, name: str = "<workflow>") -> tuple[str, Schedule] | None:
    """(workflow name, schedule) of a document with an enabled-or-not schedule; None without one.

    Only the name and the schedule block are checked here (no script imports):
    the launcher validates the whole document when it launches it.
    """
    source = parse_text(text, name)
    data = source.data
    if not isinstance(data, dict) or "schedule" not in data or not isinstance(data.get("schedule"), dict):
        return None
    problems: list[Any] = []
    schedule = compile_schedule(
        data["schedule"], ("schedule",), lambda path, message, **kw: problems.append(source.problem(path, message, kind="semantic")),
    ) if "cron" in data["schedule"] else None
    if schedule is None or not isinstance(data.get("name"), str):
        raise WorkflowError(problems or [source.problem(("schedule",), "a schedule needs 'cron' and the document a 'name'", kind="schema")])
    return data["name"], schedule


def load_scheduled(registry: Any, files: Iterable[str]) -> list[ScheduledWorkflow]:
    """The scheduled workflows of the launcher's registry and of extra files; bad ones are logged and skipped."""
    found: dict[str, ScheduledWorkflow] = {}
    names = registry.names() if registry is not None else []
    for name in names:
        text = registry.get(name)
        try:
            parsed = schedule_of(text, f"<registered {name}>") if text else None
        except WorkflowError as exc:
            logger.warning("Registered workflow %s: bad schedule, not scheduled:\n%s", name, exc)
            continue
        if parsed is not None:
            found[name] = ScheduledWorkflow(name, parsed[1], registered=True)
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            parsed = schedule_of(text, path)
        except (OSError, WorkflowError) as exc:
            logger.warning("%s: not scheduled: %s", path, exc)
            continue
        if parsed is not None:
            found[parsed[0]] = ScheduledWorkflow(parsed[0], parsed[1], document=text)
    return list(found.values())


def launcher_launch(launcher: Any) -> LaunchFn:
    """A LaunchFn starting crawls through :class:`wfcrawl.launcher.launch.Launcher` (the API's path)."""
    def launch(request: SlotLaunch) -> str:
        wf = request.source
        execution, started = launcher.launch(LaunchRequest(
            document=wf.document, workflow=wf.name if wf.registered else None,
            launch_key=request.launch_key, origin="schedule", params={"slot": request.slot.isoformat()},
        ))
        if not started:
            logger.info("Slot %s of %s: execution %s exists already", request.slot.isoformat(), wf.name, execution.id)
        return str(execution.id)

    return launch


@dataclass(frozen=True)
class SchedulerConfig(Config):
    """The scheduler's own settings, read once."""

    #: Where replicas claim slots: ``WFCRAWL_SCHEDULE_LOCK_URL``, else ``REDIS_URL``,
    #: else ``DATABASE_URL`` (empty: none).
    lock_url: str
    tick: float = setting("WFCRAWL_SCHEDULE_TICK")
    grace: float = setting("WFCRAWL_SCHEDULE_GRACE")
    max_catch_up: int = setting("WFCRAWL_SCHEDULE_MAX_CATCH_UP")
    prefix: str = setting("WFCRAWL_REDIS_KEY_PREFIX")
    schema: str = setting("WFCRAWL_POSTGRES_SCHEMA")

    @classmethod
    def from_settings(cls, settings: BaseSettings, **values: Any) -> SchedulerConfig:
        names = ("WFCRAWL_SCHEDULE_LOCK_URL", "REDIS_URL", "DATABASE_URL")
        values.setdefault("lock_url", next((url for url in (read(settings, n) for n in names) if url), ""))
        return super().from_settings(settings, **values)
