"""``wfcrawl pubsub setup``: the topics and subscriptions the launchers need.

Creates (or brings up to date, when they exist) the launch topic, the
dead-letter topic with a subscription that keeps its messages, and the launch
subscription: ack deadline, message retention, retry backoff, dead-letter
policy with max delivery attempts, and for push delivery the endpoint with an
OIDC token. Running it again applies changed settings (idempotent).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.settings.table import Config, setting

#: Messages in the dead-letter topic are kept this long (Pub/Sub's maximum).
DEAD_LETTER_RETENTION = 7 * 24 * 3600


def _path(project: str, kind: str, name: str) -> str:
    if name.startswith("projects/"):
        return name
    if not project:
        raise ConfigurationError(f"give --project (or WFCRAWL_PUBSUB_PROJECT) or a full {kind} path")
    return f"projects/{project}/{kind}/{name}"


@dataclass(frozen=True)
class PubSubLayout(Config):
    """The launch topic and subscription, and the dead-letter topic with its subscription.

    ``topic``, ``subscription`` and ``dead_letter_topic`` may be names or full
    paths: names are resolved, when the layout is made, in ``project`` (the
    subscriptions in the topic's project). The bounds of the numbers are
    Pub/Sub's own limits (the settings table's), refused before any call.
    """

    topic: str
    subscription: str
    project: str = setting("WFCRAWL_PUBSUB_PROJECT")
    dead_letter_topic: str = setting("WFCRAWL_PUBSUB_DEAD_LETTER_TOPIC")
    ack_deadline: int = setting("WFCRAWL_PUBSUB_ACK_DEADLINE")
    retention: int = setting("WFCRAWL_PUBSUB_MESSAGE_RETENTION")
    max_delivery_attempts: int = setting("WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS")
    min_backoff: int = setting("WFCRAWL_PUBSUB_MIN_BACKOFF")
    max_backoff: int = setting("WFCRAWL_PUBSUB_MAX_BACKOFF")
    push_endpoint: str = ""
    push_service_account: str = ""
    #: OIDC audience; empty: the push endpoint.
    push_audience: str = ""
    dead_letter_subscription: str = field(init=False)

    def __post_init__(self) -> None:
        if self.min_backoff > self.max_backoff:
            raise ConfigurationError(
                f"WFCRAWL_PUBSUB_MIN_BACKOFF ({self.min_backoff}) must be at most "
                f"WFCRAWL_PUBSUB_MAX_BACKOFF ({self.max_backoff})"
            )
        if self.push_endpoint and not self.push_endpoint.startswith("https://"):
            raise ConfigurationError("a push endpoint must be an https:// URL")
        topic = _path(self.project, "topics", self.topic)
        dead = _path(self.project, "topics", self.dead_letter_topic or f"{topic}-dead-letter")
        project_of_sub = topic.split("/")[1]
        resolved = {
            "topic": topic,
            "subscription": _path(project_of_sub, "subscriptions", self.subscription),
            "dead_letter_topic": dead,
            "dead_letter_subscription": _path(project_of_sub, "subscriptions", dead.rsplit("/", 1)[1]),
            "push_audience": self.push_audience or self.push_endpoint,
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)  # frozen: resolved once, here

    def subscription_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "ack_deadline_seconds": self.ack_deadline,
            "message_retention_duration": dt.timedelta(seconds=self.retention),
            "dead_letter_policy": {"dead_letter_topic": self.dead_letter_topic,
                                   "max_delivery_attempts": self.max_delivery_attempts},
            "retry_policy": {"minimum_backoff": dt.timedelta(seconds=self.min_backoff),
                             "maximum_backoff": dt.timedelta(seconds=self.max_backoff)},
            "push_config": {},
        }
        if self.push_endpoint:
            push: dict[str, Any] = {"push_endpoint": self.push_endpoint}
            if self.push_service_account:
                push["oidc_token"] = {"service_account_email": self.push_service_account,
                                      "audience": self.push_audience}
            fields["push_config"] = push
        return fields


def setup(layout: PubSubLayout, publisher: Any = None, subscriber: Any = None) -> list[str]:
    """Create or update everything; returns one line per object, for people."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    publisher = publisher or pubsub_v1.PublisherClient()
    subscriber = subscriber or pubsub_v1.SubscriberClient()
    report: list[str] = []

    for topic in (layout.topic, layout.dead_letter_topic):
        try:
            publisher.create_topic(name=topic)
            report.append(f"created topic {topic}")
        except AlreadyExists:
            report.append(f"topic {topic} exists")

    # Without a subscription, messages published to the dead-letter topic are lost.
    dead_fields = {"ack_deadline_seconds": 60,
                   "message_retention_duration": dt.timedelta(seconds=DEAD_LETTER_RETENTION)}
    _ensure_subscription(subscriber, layout.dead_letter_subscription, layout.dead_letter_topic, dead_fields, report)
    _ensure_subscription(subscriber, layout.subscription, layout.topic, layout.subscription_fields(), report)
    return report


def _ensure_subscription(subscriber: Any, name: str, topic: str, fields: dict[str, Any], report: list[str]) -> None:
    from google.api_core.exceptions import AlreadyExists

    try:
        subscriber.create_subscription(request={"name": name, "topic": topic, **fields})
        report.append(f"created subscription {name}")
        return
    except AlreadyExists:
        pass
    existing = subscriber.get_subscription(request={"subscription": name})
    if existing.topic != topic:
        raise ConfigurationError(f"subscription {name} exists on another topic ({existing.topic}); "
                                 "a subscription's topic cannot change: delete it or pick another name")
    subscriber.update_subscription(request={
        "subscription": {"name": name, **fields}, "update_mask": {"paths": sorted(fields)},
    })
    report.append(f"updated subscription {name}")


def iam_commands(layout: PubSubLayout) -> list[str]:
    """The grants dead-lettering needs (the Pub/Sub service agent forwards messages)."""
    project = layout.topic.split("/")[1]
    agent = "service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
    return [
        f"# PROJECT_NUMBER: gcloud projects describe {project} --format='value(projectNumber)'",
        f"gcloud pubsub topics add-iam-policy-binding {layout.dead_letter_topic} "
        f"--member=serviceAccount:{agent} --role=roles/pubsub.publisher",
        f"gcloud pubsub subscriptions add-iam-policy-binding {layout.subscription} "
        f"--member=serviceAccount:{agent} --role=roles/pubsub.subscriber",
    ]
