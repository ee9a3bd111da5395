"""Scheduler replicas over a simulated clock, on the real Redis and PostgreSQL: each slot launched once."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_service
from tests.mockserver import MockServer
from wfcrawl.cron.locks import PostgresSlotLock, RedisSlotLock, SlotLock
from wfcrawl.cron.service import ScheduledWorkflow, Scheduler, SlotLaunch, schedule_of
from wfcrawl.exceptions import WorkflowError
from wfcrawl.workflow.plan import Schedule

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
UTC = timezone.utc


def _redis_lock() -> Iterator[SlotLock]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
        up = True
    except redis.ConnectionError:
        up = False
    require_service("Redis", up, f"redis-server on {REDIS_URL}")
    prefix = f"wfcrawl-test-{uuid.uuid4().hex[:8]}"
    yield RedisSlotLock(client, prefix)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def _postgres_lock() -> Iterator[SlotLock]:
    import psycopg2

    try:
        psycopg2.connect(PG_DSN, connect_timeout=3).close()
        up = True
    except psycopg2.OperationalError:
        up = False
    require_service("PostgreSQL", up, f"PostgreSQL at {PG_DSN}")
    schema = f"test_sched_{uuid.uuid4().hex[:8]}"
    lock = PostgresSlotLock(PG_DSN, schema)
    yield lock
    with lock.conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
    lock.close()


@pytest.fixture(params=["redis", "postgres"])
def lock_factory(request: Any) -> Iterator[Any]:
    """Makes locks sharing one backend namespace (one per replica: own connection)."""
    gen = _redis_lock() if request.param == "redis" else _postgres_lock()
    first = next(gen)

    def make() -> SlotLock:
        if isinstance(first, RedisSlotLock):
            import redis

            return RedisSlotLock(redis.Redis.from_url(REDIS_URL, decode_responses=True), first.prefix)
        assert isinstance(first, PostgresSlotLock)
        return PostgresSlotLock(PG_DSN, first.schema)

    yield make
    for _ in gen:
        pass


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.launches: list[tuple[str, str, datetime, str]] = []

    def for_replica(self, replica: str) -> Any:
        def launch(request: SlotLaunch) -> str:
            with self.lock:
                self.launches.append((replica, request.workflow, request.slot, request.launch_key))
            return f"{replica}-{len(self.launches)}"
        return launch


WORKFLOWS = [
    ScheduledWorkflow("every15", Schedule("*/15 * * * *")),  # catch_up latest (default)
    ScheduledWorkflow("hourly-paris", Schedule("0 * * * *", "Europe/Paris", catch_up="all")),
    ScheduledWorkflow("paris-morning", Schedule("30 5 * * *", "Europe/Paris")),
    ScheduledWorkflow("nine", Schedule("0 9 * * *", catch_up="none")),
    ScheduledWorkflow("off", Schedule("* * * * *", enabled=False)),
]


def t(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, minute, second, tzinfo=UTC)


def test_two_replicas_launch_each_slot_once_and_catch_up_after_downtime(lock_factory: Any) -> None:
    recorder = Recorder()
    replicas = [
        Scheduler(lock_factory(), recorder.for_replica(name), grace=300, max_catch_up=2, owner=name)
        for name in ("A", "B")
    ]

    def tick_together(now: datetime) -> None:
        # Both replicas tick at the same simulated instant, in parallel threads:
        # the claims race for real in Redis/PostgreSQL.
        barrier = threading.Barrier(len(replicas))
        errors: list[BaseException] = []

        def run(replica: Scheduler) -> None:
            try:
                barrier.wait()
                replica.tick(WORKFLOWS, now)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []

    # 12 hours of ticks every 5 minutes across the night Paris moves to summer time
    # (2024-03-31 01:00 UTC), then 3 hours down, then one tick.
    now = t(30, 20, 0, 7)
    while now <= t(31, 8, 0, 7):
        tick_together(now)
        now += timedelta(minutes=5)
    tick_together(t(31, 11, 7, 7))

    launched = sorted((wf, slot) for _, wf, slot, _ in recorder.launches)
    assert len(launched) == len(set(launched)), "a slot was launched twice"
    quarter_hours = [t(30, 20) + timedelta(minutes=15 * i) for i in range(49)]  # 20:00 .. 08:00
    hours = [t(30, 20) + timedelta(hours=i) for i in range(13)]  # 20:00 .. 08:00 UTC, DST or not
    expected = sorted(
        [("every15", s) for s in quarter_hours]
        + [("every15", t(31, 11, 0))]  # after the downtime: latest missed slot only
        + [("hourly-paris", s) for s in hours]
        + [("hourly-paris", t(31, 10)), ("hourly-paris", t(31, 11))]  # all, at most 2: 09:00 skipped
        + [("paris-morning", t(31, 3, 30))]  # 05:30 CEST
        # nine: 09:00 UTC fell in the downtime and catch_up is none; "off" is disabled.
    )
    assert launched == expected
    for _, wf, slot, key in recorder.launches:
        assert key == f"schedule:{wf}:{slot.isoformat()}"


def test_failed_launch_is_retried_on_the_next_tick(lock_factory: Any) -> None:
    attempts: list[datetime] = []

    def flaky(request: SlotLaunch) -> str:
        attempts.append(request.slot)
        if len(attempts) == 1:
            raise RuntimeError("launcher busy")
        return "exec-1"

    replica = Scheduler(lock_factory(), flaky, grace=300, owner="A")
    other = Scheduler(lock_factory(), flaky, grace=300, owner="B")
    workflow = [ScheduledWorkflow("every15", Schedule("*/15 * * * *"))]
    first = replica.tick(workflow, t(30, 20, 0, 5))
    assert [(o.slot, o.action) for o in first] == [(t(30, 20), "failed")]
    # The claim was released and the cursor left before the slot: another replica retries it.
    second = other.tick(workflow, t(30, 20, 1, 5))
    assert [(o.slot, o.action, o.execution_id) for o in second] == [(t(30, 20), "launched", "exec-1")]
    assert replica.tick(workflow, t(30, 20, 2, 5)) == []
    assert attempts == [t(30, 20), t(30, 20)]


def test_schedule_of_reads_only_the_schedule() -> None:
    doc = "name: shop\nschedule: {cron: '0 3 * * *', timezone: Europe/Paris, catch_up: all}\nphases: {}\n"
    assert schedule_of(doc) == ("shop", Schedule("0 3 * * *", "Europe/Paris", "all", True))
    assert schedule_of("name: shop\nphases: {}\n") is None

    with pytest.raises(WorkflowError) as info:
        schedule_of("name: shop\nschedule: {cron: '0 3 * *'}\n", "wf.yaml")
    assert str(info.value).startswith("wf.yaml:2:18: $.schedule.cron: invalid cron expression '0 3 * *'")


def test_scheduler_command_launches_through_the_launcher(tmp_path: Path, fresh_server: MockServer) -> None:
    """`wfcrawl scheduler --once`: the due slot runs as a real crawl started by wfcrawl's launcher."""
    (tmp_path / "registry").mkdir()
    workflow = tmp_path / "every-minute.yaml"
    workflow.write_text(
        f"name: every-minute\nschedule: {{cron: '* * * * *'}}\nstart_urls: [{fresh_server.url}/slow/index.html]\n"
        "phases:\n  index:\n    nodes:\n      - {type: extract, item: idx, fields: {title: title}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "wfcrawl.cli", "scheduler", "--once", str(workflow),
         "-s", "WFCRAWL_SCHEDULE_LOCK_URL=memory://", "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=127.0.0.0/8",
         "-s", f"WFCRAWL_LAUNCHER_WORKFLOWS_DIR={tmp_path / 'registry'}", "-s", f"WFCRAWL_LAUNCHER_WORKDIR={tmp_path / 'work'}",
         "-s", "REDIS_URL=", "-s", "DATABASE_URL="],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The latest minute, launched once (a workflow never seen before has missed nothing).
    [line] = proc.stdout.splitlines()
    name, slot, action, execution_id = line.split()
    assert (name, action) == ("every-minute", "launched")
    assert datetime.fromisoformat(slot).second == 0
    assert f"Execution {execution_id} (workflow every-minute, schedule) started" in proc.stderr
    assert f"Execution {execution_id} succeeded (exit status 0)" in proc.stderr
    assert fresh_server.paths().count("/slow/index.html") == 1
