"""`wfcrawl pubsub setup` against the fake Pub/Sub server, checked with the real client."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT
from tests.fake_pubsub import FakePubSub

P = "projects/wfcrawl-test"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePubSub]:
    with FakePubSub() as server:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", server.host)
        yield server


def setup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wfcrawl.cli", "pubsub", "setup", "--project", "wfcrawl-test", *args],
        cwd=ROOT, env={**os.environ, "GRPC_VERBOSITY": "ERROR"}, capture_output=True, text=True, timeout=120,
    )


def test_setup_creates_then_updates_topic_subscription_and_dead_letter_topic(fake: FakePubSub) -> None:
    from google.cloud import pubsub_v1

    first = setup("--topic", "crawls", "--subscription", "crawls-worker")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[:4] == [
        f"created topic {P}/topics/crawls",
        f"created topic {P}/topics/crawls-dead-letter",
        f"created subscription {P}/subscriptions/crawls-dead-letter",
        f"created subscription {P}/subscriptions/crawls-worker",
    ]
    assert f"gcloud pubsub topics add-iam-policy-binding {P}/topics/crawls-dead-letter" in first.stdout

    subscriber = pubsub_v1.SubscriberClient()
    sub = subscriber.get_subscription(request={"subscription": f"{P}/subscriptions/crawls-worker"})
    assert (sub.topic, sub.ack_deadline_seconds, sub.message_retention_duration.total_seconds()) == (
        f"{P}/topics/crawls", 60, 7 * 24 * 3600)
    assert (sub.dead_letter_policy.dead_letter_topic, sub.dead_letter_policy.max_delivery_attempts) == (
        f"{P}/topics/crawls-dead-letter", 5)
    assert (sub.retry_policy.minimum_backoff.total_seconds(), sub.retry_policy.maximum_backoff.total_seconds()) == (
        10, 600)
    assert sub.push_config.push_endpoint == ""  # pull

    # Again, with other settings: nothing is duplicated, the subscription is brought up to date.
    again = setup("--topic", "crawls", "--subscription", "crawls-worker",
                  "-s", "WFCRAWL_PUBSUB_ACK_DEADLINE=120", "-s", "WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS=10")
    assert again.stdout.splitlines()[:4] == [
        f"topic {P}/topics/crawls exists", f"topic {P}/topics/crawls-dead-letter exists",
        f"updated subscription {P}/subscriptions/crawls-dead-letter",
        f"updated subscription {P}/subscriptions/crawls-worker",
    ]
    sub = subscriber.get_subscription(request={"subscription": f"{P}/subscriptions/crawls-worker"})
    assert (sub.ack_deadline_seconds, sub.dead_letter_policy.max_delivery_attempts) == (120, 10)


def test_setup_of_a_push_subscription(fake: FakePubSub) -> None:
    from google.cloud import pubsub_v1

    result = setup("--topic", "crawls", "--subscription", "crawls-push",
                   "--push-endpoint", "https://launcher-abc.a.run.app/pubsub/push",
                   "--push-service-account", "pubsub-push@wfcrawl-test.iam.gserviceaccount.com",
                   "-s", "WFCRAWL_PUBSUB_ACK_DEADLINE=600")
    assert result.returncode == 0, result.stderr
    sub = pubsub_v1.SubscriberClient().get_subscription(request={"subscription": f"{P}/subscriptions/crawls-push"})
    assert (sub.push_config.push_endpoint, sub.push_config.oidc_token.service_account_email,
            sub.push_config.oidc_token.audience, sub.ack_deadline_seconds) == (
        "https://launcher-abc.a.run.app/pubsub/push", "pubsub-push@wfcrawl-test.iam.gserviceaccount.com",
        "https://launcher-abc.a.run.app/pubsub/push", 600)


def test_setup_refuses_values_pubsub_would_refuse(fake: FakePubSub) -> None:
    from google.api_core.exceptions import NotFound
    from google.cloud import pubsub_v1

    from wfcrawl.exceptions import ConfigurationError
    from wfcrawl.launcher.config import launcher_settings
    from wfcrawl.launcher.pubsub_setup import PubSubLayout

    for name, value, message in [
        ("WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS", 3, "WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS must be 5-100"),
        ("WFCRAWL_PUBSUB_ACK_DEADLINE", 5, "WFCRAWL_PUBSUB_ACK_DEADLINE must be 10-600 seconds"),
        ("WFCRAWL_PUBSUB_MESSAGE_RETENTION", 31 * 86400, "WFCRAWL_PUBSUB_MESSAGE_RETENTION must be 600-604800 seconds"),
    ]:
        with pytest.raises(ConfigurationError) as caught:
            PubSubLayout.from_settings(launcher_settings({name: value}), project="wfcrawl-test",
                                       topic="crawls", subscription="s")
        assert str(caught.value) == message
    with pytest.raises(ConfigurationError, match="must be an https:// URL"):
        PubSubLayout.from_settings(launcher_settings(), project="p", topic="t", subscription="s",
                                   push_endpoint="http://insecure.example/push")
    # From the command line: exit status 2, the message, and nothing created.
    result = setup("--topic", "crawls", "--subscription", "s", "-s", "WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS=3")
    assert (result.returncode, result.stderr.strip()) == (
        2, "wfcrawl pubsub: WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS must be 5-100")
    with pytest.raises(NotFound):
        pubsub_v1.PublisherClient().get_topic(topic=f"{P}/topics/crawls")
