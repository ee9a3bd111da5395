"""Cron expressions of ``schedule:`` blocks: checked at compile time, iterated by the scheduler.

croniter is imported lazily, so a document without a schedule never needs it.
Slots are timezone-aware datetimes in the schedule's zone; the scheduler
compares and stores them as UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wfcrawl.workflow.plan import Schedule

ErrorFn = Callable[..., None]


def compile_schedule(spec: dict[str, Any], path: tuple[Any, ...], error: ErrorFn) -> Schedule | None:
    """The Schedule of a schema-valid ``schedule:`` block; problems go to ``error``."""
    ok = True
    try:
        from croniter import croniter
    except ImportError:
        error((*path, "cron"), "schedules need croniter: pip install 'wfcrawl[schedule]'")
        return None
    if not croniter.is_valid(spec["cron"]) or len(spec["cron"].split()) not in (1, 5):
        # Only the standard 5 fields (or @daily...): croniter's 6th "seconds"
        # field would make a schedule fire every second.
        error((*path, "cron"), f"invalid cron expression {spec['cron']!r}: expected 5 fields "
              "(minute hour day-of-month month day-of-week) or @hourly/@daily/@weekly/@monthly/@yearly")
        ok = False
    zone = spec.get("timezone", "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        error((*path, "timezone"), f"unknown time zone {zone!r} (an IANA name such as UTC or Europe/Paris)")
        ok = False
    if not ok:
        return None
    return Schedule(spec["cron"], zone, spec.get("catch_up", "latest"), spec.get("enabled", True))


def slots_between(schedule: Schedule, after: datetime, until: datetime) -> Iterator[datetime]:
    """Slots ``s`` with ``after < s <= until`` (UTC datetimes), oldest first."""
    from croniter import croniter

    zone = ZoneInfo(schedule.timezone)
    it = croniter(schedule.cron, after.astimezone(zone))
    while True:
        slot: datetime = it.get_next(datetime).astimezone(timezone.utc)
        if slot > until:
            return
        yield slot


def latest_slot(schedule: Schedule, until: datetime, within: timedelta) -> datetime | None:
    """The last slot in ``(until - within, until]``, or None."""
    found = None
    for slot in slots_between(schedule, until - within, until):
        found = slot
    return found
