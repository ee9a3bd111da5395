"""Pub/Sub pull: `wfcrawl listen` and the Listener with the real google-cloud-pubsub client
against Google's Pub/Sub emulator (tests/pubsub_emulator.py); real crawls, real PostgreSQL.

What each test sees of Pub/Sub is what the emulator did: which deliveries reached the
listener (with their delivery attempts), what is left in a subscription, what reached
the dead-letter topic.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.launcher_support import (  # noqa: F401  (fixtures)
    PG_DSN,
    SHOP_ITEMS,
    make_launcher,
    pg_schema,
    pg_store,
    wait_until,
)
from tests.mockserver import MockServer
from tests.pubsub_emulator import Project
from tests.test_launcher_push import NEEDS_SECRET
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.pull import Listener
from wfcrawl.storage.executions import MemoryExecutionStore


class PubSub:
    """The launch topic and subscription (dead-letter policy, 5 attempts) as `wfcrawl
    pubsub setup` makes them, without retry backoff so redeliveries come at once."""

    def __init__(self, project: Project, ack_deadline: int = 60) -> None:
        self.project = project
        self.topic, self.dead = project.topic("crawls"), project.topic("crawls-dead-letter")
        self.sub, self.dead_sub = project.subscription("crawls-worker"), project.subscription("crawls-dead-letter")
        for topic in (self.topic, self.dead):
            project.publisher.create_topic(name=topic)
        project.subscriber.create_subscription(request={"name": self.dead_sub, "topic": self.dead})
        project.subscriber.create_subscription(request={
            "name": self.sub, "topic": self.topic, "ack_deadline_seconds": ack_deadline,
            "dead_letter_policy": {"dead_letter_topic": self.dead, "max_delivery_attempts": 5},
            # Acked messages stay, so a seek can deliver one again (a duplicate delivery).
            "retain_acked_messages": True,
        })

    def publish(self, data: Any) -> str:
        return self.project.publish(self.topic, data)

    def redeliver_everything_since(self, when: dt.datetime) -> None:
        """Seek: every message published after ``when`` is delivered again, acked or not."""
        self.project.subscriber.seek(request={"subscription": self.sub, "time": when})


@pytest.fixture
def pubsub(pubsub_project: Project) -> PubSub:
    return PubSub(pubsub_project)


class RecordingListener(Listener):
    """The Listener, noting each delivery the client hands it: (message id, delivery attempt)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deliveries: list[tuple[str, int | None]] = []
        self._lock = threading.Lock()

    def _on_message(self, message: Any) -> None:
        with self._lock:
            self.deliveries.append((message.message_id, message.delivery_attempt))
        super()._on_message(message)


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        listener.stop()


def test_listen_command_runs_a_message_once_even_when_delivered_twice(
    pubsub: PubSub, pg_store: Any, pg_schema: str, server: MockServer, tmp_path: Path  # noqa: F811 (pytest fixture)
) -> None:
    env = {**os.environ, "DATABASE_URL": PG_DSN}  # the crawls inherit it (their execution records)
    crawl_args = json.dumps(["-s", f"WFCRAWL_POSTGRES_SCHEMA={pg_schema}"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "wfcrawl.cli", "listen", "--subscription", pubsub.sub,
         "-s", f"WFCRAWL_POSTGRES_SCHEMA={pg_schema}", "-s", f"WFCRAWL_LAUNCHER_CRAWL_ARGS={crawl_args}",
         "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=127.0.0.0/8", "-s", f"WFCRAWL_LAUNCHER_WORKDIR={tmp_path}",
         "-s", "WFCRAWL_LAUNCHER_POLL_INTERVAL=0.2", "-s", "WFCRAWL_PUBSUB_MAX_MESSAGES=1",
         "-s", "WFCRAWL_LAUNCHER_MAX_CRAWLS=1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    log: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"wfcrawl listening on {pubsub.sub}\n"
        before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        message_id = pubsub.publish({"workflow": "shop", "args": {"base_url": server.url}})
        running = wait_until(lambda: [e for e in pg_store.list() if e.status != "queued"], 60, "the crawl")[0]
        assert running.launch_key == f"pubsub:{message_id}"
        # Pub/Sub delivers the message again while its crawl runs (at-least-once): the
        # duplicate waits for that crawl and is acked with its outcome; no second crawl.
        pubsub.redeliver_everything_since(before)
        duplicate = f"Message {message_id}: execution {running.id} exists (succeeded)"
        wait_until(lambda: any(duplicate in line for line in log), 90, "the duplicate delivery")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
    executions = pg_store.list()
    assert [(e.id, e.status, e.finish_reason, e.reasons) for e in executions] == [
        (running.id, "succeeded", "finished", [])]
    assert {k: executions[0].stats[k] for k in SHOP_ITEMS} == SHOP_ITEMS
    # Both deliveries were acked: nothing is left to deliver, nothing was dead-lettered.
    assert pubsub.project.drain(pubsub.sub) == []
    assert pubsub.project.drain(pubsub.dead_sub) == []


def test_failing_crawls_are_nacked_redelivered_and_dead_lettered(
    pubsub: PubSub, pg_store: Any, server: MockServer, tmp_path: Path, listeners: list[Listener]  # noqa: F811
) -> None:
    launcher = make_launcher(tmp_path, pg_store, WFCRAWL_LAUNCHER_ALLOWED_ENV=["WFCRAWL_TEST_UNSET_SECRET"],
                             WFCRAWL_LAUNCHER_MAX_CRAWLS=1)
    listener = RecordingListener(launcher, pubsub.sub, max_messages=1, max_lease_duration=600)
    listener.start()
    listeners.append(listener)
    failing = pubsub.publish({"document": NEEDS_SECRET, "args": {"base_url": server.url}})
    garbage = pubsub.publish(b"run the shop please")
    dead: list[Any] = []
    def both_dead() -> bool:
        dead.extend(pubsub.project.drain(pubsub.dead_sub))
        return len(dead) == 2

    wait_until(both_dead, 180, "both messages dead-lettered")
    listener.stop()

    # Five deliveries of each (attempts 1-5, each nacked), then the dead-letter topic.
    assert sorted(listener.deliveries) == sorted([(m, n) for m in (failing, garbage) for n in range(1, 6)])
    # Each redelivery of the failing message was a new attempt; the garbage never started anything.
    executions = sorted(pg_store.list(), key=lambda e: e.params["attempt"])
    assert [(e.launch_key, e.status, [r["code"] for r in e.reasons]) for e in executions] == [
        (f"pubsub:{failing}", "failed", ["did_not_start"]),
        *[(f"pubsub:{failing}#{n}", "failed", ["did_not_start"]) for n in range(2, 6)],
    ]
    # What the dead-letter subscription holds: the original data, and how many attempts were made.
    assert sorted((m.message.data, m.message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"],
                   m.message.attributes["CloudPubSubDeadLetterSourceSubscription"]) for m in dead) == sorted([
        (json.dumps({"document": NEEDS_SECRET, "args": {"base_url": server.url}}).encode(), "5", "crawls-worker"),
        (b"run the shop please", "5", "crawls-worker"),
    ])
    assert pubsub.project.drain(pubsub.sub) == []


SLOW = """\
name: slow
obey_robots: false
start_urls: ['/slow/1?delay=5', '/slow/2?delay=5', '/slow/3?delay=5']
phases: {p: {nodes: [{type: extract, item: page, fields: {title: title}}]}}
"""


def test_a_crawl_longer_than_the_ack_deadline_is_not_redelivered(
    pubsub_project: Project, pg_store: Any, fresh_server: MockServer, tmp_path: Path,  # noqa: F811
    listeners: list[Listener],
) -> None:
    # Ack deadline 10 s (Pub/Sub's minimum); the crawl takes 15 s (three 5 s pages, one at a time).
    pubsub = PubSub(pubsub_project, ack_deadline=10)
    launcher = make_launcher(tmp_path, pg_store, WFCRAWL_LAUNCHER_MAX_CRAWLS=1,
                             WFCRAWL_LAUNCHER_CRAWL_ARGS=["-s", "CONCURRENT_REQUESTS=1"])
    listener = RecordingListener(launcher, pubsub.sub, max_messages=1, max_lease_duration=600)
    listener.start()
    listeners.append(listener)
    message_id = pubsub.publish({"document": SLOW, "args": {"base_url": fresh_server.url}})
    execution = wait_until(lambda: [e for e in pg_store.list() if e.status == "succeeded"], 120, "the crawl")[0]
    listener.stop()
    # The client extended the lease while the crawl ran: one delivery, one crawl, acked.
    assert listener.deliveries == [(message_id, 1)]
    assert [(e.id, e.status) for e in pg_store.list()] == [(execution.id, "succeeded")]
    assert execution.stats["wfcrawl/items/page"] == 3
    assert sorted(p for p in fresh_server.paths() if p.startswith("/slow/")) == [
        "/slow/1?delay=5", "/slow/2?delay=5", "/slow/3?delay=5"]
    assert pubsub.project.drain(pubsub.sub) == []


def test_listener_refuses_more_messages_than_crawls(tmp_path: Path) -> None:
    launcher = make_launcher(tmp_path, MemoryExecutionStore(), WFCRAWL_LAUNCHER_MAX_CRAWLS=2)
    with pytest.raises(ConfigurationError, match=r"WFCRAWL_PUBSUB_MAX_MESSAGES \(3\) is more than"):
        Listener(launcher, "projects/p/subscriptions/s", max_messages=3, max_lease_duration=60)
