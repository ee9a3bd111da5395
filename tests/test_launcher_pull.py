"""Pub/Sub pull: `wfcrawl listen` and the Listener with the real google-cloud-pubsub client
against the fake Pub/Sub gRPC server (tests/fake_pubsub.py); real crawls, real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.fake_pubsub import FakePubSub
from tests.launcher_support import (  # noqa: F401  (fixtures)
    PG_DSN,
    SHOP_ITEMS,
    make_launcher,
    pg_schema,
    pg_store,
    wait_until,
)
from tests.mockserver import MockServer
from tests.test_launcher_push import NEEDS_SECRET

PROJECT = "projects/wfcrawl-test"
TOPIC = f"{PROJECT}/topics/crawls"
DEAD = f"{PROJECT}/topics/crawls-dead-letter"
SUB = f"{PROJECT}/subscriptions/crawls-worker"
DEAD_SUB = f"{PROJECT}/subscriptions/crawls-dead-letter"


class PubSub:
    def __init__(self, fake: FakePubSub) -> None:
        from google.cloud import pubsub_v1

        self.fake = fake
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        for topic in (TOPIC, DEAD):
            self.publisher.create_topic(name=topic)
        self.subscriber.create_subscription(request={"name": DEAD_SUB, "topic": DEAD})
        self.subscriber.create_subscription(request={
            "name": SUB, "topic": TOPIC, "ack_deadline_seconds": 60,
            "dead_letter_policy": {"dead_letter_topic": DEAD, "max_delivery_attempts": 5},
        })

    def publish(self, data: Any) -> str:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        return str(self.publisher.publish(TOPIC, raw).result(timeout=30))


@pytest.fixture
def pubsub(monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    fake = FakePubSub().start()
    # Read by the Google clients when they are created: an insecure channel, no credentials.
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", fake.host)
    monkeypatch.setenv("GRPC_VERBOSITY", "ERROR")
    yield PubSub(fake)
    fake.stop()


def test_listen_command_runs_a_message_once_even_when_delivered_twice(
    pubsub: PubSub, pg_store: Any, pg_schema: str, server: MockServer, tmp_path: Path  # noqa: F811 (pytest fixture)
) -> None:
    env = {**os.environ, "DATABASE_URL": PG_DSN}  # the crawls inherit it (their execution records)
    crawl_args = json.dumps(["-s", f"WFCRAWL_POSTGRES_SCHEMA={pg_schema}"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "wfcrawl.cli", "listen", "--subscription", SUB,
         "-s", f"WFCRAWL_POSTGRES_SCHEMA={pg_schema}", "-s", f"WFCRAWL_LAUNCHER_CRAWL_ARGS={crawl_args}",
         "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=127.0.0.0/8", "-s", f"WFCRAWL_LAUNCHER_WORKDIR={tmp_path}",
         "-s", "WFCRAWL_LAUNCHER_POLL_INTERVAL=0.2", "-s", "WFCRAWL_PUBSUB_MAX_MESSAGES=1",
         "-s", "WFCRAWL_LAUNCHER_MAX_CRAWLS=1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"wfcrawl listening on {SUB}\n"
        message_id = pubsub.publish({"workflow": "shop", "args": {"base_url": server.url}})
        running = wait_until(lambda: [e for e in pg_store.list() if e.status != "queued"], 60, "the crawl")[0]
        assert running.launch_key == f"pubsub:{message_id}"
        # Pub/Sub delivers the message again (while its crawl runs, most likely): the
        # duplicate waits for that crawl, or finds it finished; either way no second crawl.
        pubsub.fake.redeliver(SUB, message_id)
        wait_until(lambda: pubsub.fake.acked(SUB) == [message_id, message_id], 90, "both deliveries acked")
        executions = pg_store.list()
        assert [(e.id, e.status, e.finish_reason) for e in executions] == [(running.id, "finished", "finished")]
        assert {k: executions[0].stats[k] for k in SHOP_ITEMS} == SHOP_ITEMS
        assert pubsub.fake.deliveries(SUB) == [(message_id, 1), (message_id, 2)]
        # The client extended the lease of the held message (never a nack).
        modacks = pubsub.fake.modacks(SUB)
        assert modacks and all(seconds >= 10 for _, seconds in modacks)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert pubsub.fake.messages(DEAD) == []


def test_failing_crawls_are_nacked_redelivered_and_dead_lettered(
    pubsub: PubSub, pg_store: Any, server: MockServer, tmp_path: Path  # noqa: F811 (pytest fixture)
) -> None:
    from wfcrawl.launcher.pull import Listener

    launcher = make_launcher(tmp_path, pg_store, WFCRAWL_LAUNCHER_ALLOWED_ENV=["WFCRAWL_TEST_UNSET_SECRET"],
                             WFCRAWL_LAUNCHER_MAX_CRAWLS=1)
    listener = Listener(launcher, SUB, max_messages=1, max_lease_duration=600).start()
    try:
        failing = pubsub.publish({"document": NEEDS_SECRET, "args": {"base_url": server.url}})
        garbage = pubsub.publish(b"run the shop please")
        wait_until(lambda: len(pubsub.fake.messages(DEAD)) == 2, 120, "both messages dead-lettered")
    finally:
        listener.stop()

    deliveries = pubsub.fake.deliveries(SUB)
    assert sorted(deliveries) == sorted([(m, n) for m in (failing, garbage) for n in range(1, 6)])
    assert pubsub.fake.acked(SUB) == []
    assert sorted(pubsub.fake.modacks(SUB)).count((failing, 0)) == 5  # five nacks
    # Each redelivery of the failing message was a new attempt; the garbage never started anything.
    executions = sorted(pg_store.list(), key=lambda e: e.params["attempt"])
    assert [(e.launch_key, e.status) for e in executions] == [
        (f"pubsub:{failing}", "failed"), *[(f"pubsub:{failing}#{n}", "failed") for n in range(2, 6)],
    ]
    # What the dead-letter subscription holds: the original data, and how many attempts were made.
    received = pubsub.subscriber.pull(request={"subscription": DEAD_SUB, "max_messages": 10}).received_messages
    dead = sorted((m.message.data, m.message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"]) for m in received)
    assert dead == sorted([(json.dumps({"document": NEEDS_SECRET, "args": {"base_url": server.url}}).encode(), "5"),
                           (b"run the shop please", "5")])


def test_listener_refuses_more_messages_than_crawls(tmp_path: Path) -> None:
    from wfcrawl.exceptions import ConfigurationError
    from wfcrawl.launcher.pull import Listener
    from wfcrawl.storage.executions import MemoryExecutionStore

    launcher = make_launcher(tmp_path, MemoryExecutionStore(), WFCRAWL_LAUNCHER_MAX_CRAWLS=2)
    with pytest.raises(ConfigurationError, match=r"WFCRAWL_PUBSUB_MAX_MESSAGES \(3\) is more than"):
        Listener(launcher, SUB, max_messages=3, max_lease_duration=60)
