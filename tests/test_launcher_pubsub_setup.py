"""`wfcrawl pubsub setup` against Google's Pub/Sub emulator, checked with the real client."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.pubsub_emulator import Project
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.config import launcher_settings
from wfcrawl.launcher.pubsub_setup import PubSubLayout


def setup(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wfcrawl.cli", "pubsub", "setup", "--project", project.id, *args],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )


def test_setup_creates_then_updates_topic_subscription_and_dead_letter_topic(pubsub_project: Project) -> None:
    p = pubsub_project.path
    first = setup(pubsub_project, "--topic", "crawls", "--subscription", "crawls-worker")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[:4] == [
        f"created topic {p}/topics/crawls",
        f"created topic {p}/topics/crawls-dead-letter",
        f"created subscription {p}/subscriptions/crawls-dead-letter",
        f"created subscription {p}/subscriptions/crawls-worker",
    ]
    assert f"gcloud pubsub topics add-iam-policy-binding {p}/topics/crawls-dead-letter" in first.stdout

    subscriber = pubsub_project.subscriber
    sub = subscriber.get_subscription(request={"subscription": f"{p}/subscriptions/crawls-worker"})
    assert (sub.topic, sub.ack_deadline_seconds, sub.message_retention_duration.total_seconds()) == (
        f"{p}/topics/crawls", 60, 7 * 24 * 3600)
    assert (sub.dead_letter_policy.dead_letter_topic, sub.dead_letter_policy.max_delivery_attempts) == (
        f"{p}/topics/crawls-dead-letter", 5)
    assert (sub.retry_policy.minimum_backoff.total_seconds(), sub.retry_policy.maximum_backoff.total_seconds()) == (
        10, 600)
    assert sub.push_config.push_endpoint == ""  # pull

    # Again, with other settings: nothing is duplicated, the subscription is brought up to date.
    again = setup(pubsub_project, "--topic", "crawls", "--subscription", "crawls-worker",
                  "-s", "WFCRAWL_PUBSUB_ACK_DEADLINE=120", "-s", "WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS=10")
    assert again.stdout.splitlines()[:4] == [
        f"topic {p}/topics/crawls exists", f"topic {p}/topics/crawls-dead-letter exists",
        f"updated subscription {p}/subscriptions/crawls-dead-letter",
        f"updated subscription {p}/subscriptions/crawls-worker",
    ]
    sub = subscriber.get_subscription(request={"subscription": f"{p}/subscriptions/crawls-worker"})
    assert (sub.ack_deadline_seconds, sub.dead_letter_policy.max_delivery_attempts) == (120, 10)


def test_setup_of_a_push_subscription(pubsub_project: Project) -> None:
    # Nothing is published: the emulator never tries to reach the endpoint.
    p = pubsub_project.path
    result = setup(pubsub_project, "--topic", "crawls", "--subscription", "crawls-push",
                   "--push-endpoint", "https://launcher-abc.a.run.app/pubsub/push",
                   "--push-service-account", "pubsub-push@wfcrawl-test.iam.gserviceaccount.com",
                   "-s", "WFCRAWL_PUBSUB_ACK_DEADLINE=600")
    assert result.returncode == 0, result.stderr
    sub = pubsub_project.subscriber.get_subscription(request={"subscription": f"{p}/subscriptions/crawls-push"})
    assert (sub.push_config.push_endpoint, sub.push_config.oidc_token.service_account_email,
            sub.push_config.oidc_token.audience, sub.ack_deadline_seconds) == (
        "https://launcher-abc.a.run.app/pubsub/push", "pubsub-push@wfcrawl-test.iam.gserviceaccount.com",
        "https://launcher-abc.a.run.app/pubsub/push", 600)


def test_setup_refuses_values_pubsub_would_refuse(pubsub_project: Project) -> None:
    from google.api_core.exceptions import NotFound

    for name, value, message in [
        ("WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS", 3, "WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS must be at least 5, not 3"),
        ("WFCRAWL_PUBSUB_ACK_DEADLINE", 5, "WFCRAWL_PUBSUB_ACK_DEADLINE must be at least 10, not 5"),
        ("WFCRAWL_PUBSUB_MESSAGE_RETENTION", 31 * 86400, "WFCRAWL_PUBSUB_MESSAGE_RETENTION must be at most 604800, not 2678400"),
    ]:
        with pytest.raises(ConfigurationError) as caught:
            PubSubLayout.from_settings(launcher_settings({name: value}), project="wfcrawl-test",
                                       topic="crawls", subscription="s")
        assert str(caught.value) == message
    with pytest.raises(ConfigurationError, match="must be an https:// URL"):
        PubSubLayout.from_settings(launcher_settings(), project="p", topic="t", subscription="s",
                                   push_endpoint="http://insecure.example/push")
    # From the command line: exit status 2, the message, and nothing created.
    result = setup(pubsub_project, "--topic", "crawls", "--subscription", "s", "-s", "WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS=3")
    assert (result.returncode, result.stderr.strip()) == (
        2, "wfcrawl pubsub: WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS must be at least 5, not '3'")
    with pytest.raises(NotFound):
        pubsub_project.publisher.get_topic(topic=pubsub_project.topic("crawls"))
