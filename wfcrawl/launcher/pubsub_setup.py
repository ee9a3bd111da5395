"""``wfcrawl pubsub setup``: the topics and subscriptions the launchers need.

Creates (or brings up to date, when they exist) the launch topic, the
dead-letter topic with a subscription that keeps its messages, and the launch
subscription: ack deadline, message retention, retry backoff, dead-letter
policy with max delivery attempts, and for push delivery the endpoint with an
OIDC token. Running it again applies changed settings (idempotent).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from scrapy.settings import BaseSettings

from wfcrawl.exceptions import ConfigurationError

#: Messages in the dead-letter topic are kept this long (Pub/Sub's maximum).
DEAD_LETTER_RETENTION = 7 * 24 * 3600


def _path(project: str, kind: str, name: str) -> str:
    if name.startswith("projects/"):
        return name
    if not project:
        raise ConfigurationError(f"give --project (or WFCRAWL_PUBSUB_PROJECT) or a full {kind} path")
    return f"projects/{project}/{kind}/{name}"


@dataclass(frozen=True)
class PubSubLayout:
    topic: str
    subscription: str
    dead_letter_topic: str
    dead_letter_subscription: str
    ack_deadline: int
    retention: int
    max_delivery_attempts: int
    min_backoff: int
    max_backoff: int
    push_endpoint: str = ""
    push_service_account: str = ""
    push_audience: str = ""

    @classmethod
    def from_settings(cls, settings: BaseSettings, *, project: str, topic: str, subscription: str,
                      push_endpoint: str = "", push_service_account: str = "", push_audience: str = "") -> PubSubLayout:
        project = project or settings.get("WFCRAWL_PUBSUB_PROJECT") or ""
        topic_path = _path(project, "topics", topic)
        dead = settings.get("WFCRAWL_PUBSUB_DEAD_LETTER_TOPIC") or f"{topic_path}-dead-letter"
        dead_path = _path(project, "topics", dead)
        project_of_sub = topic_path.split("/")[1]
        layout = cls(
            topic=topic_path, subscription=_path(project_of_sub, "subscriptions", subscription),
            dead_letter_topic=dead_path,
            dead_letter_subscription=_path(project_of_sub, "subscriptions", dead_path.rsplit("/", 1)[1]),
            ack_deadline=settings.getint("WFCRAWL_PUBSUB_ACK_DEADLINE"),
            retention=settings.getint("WFCRAWL_PUBSUB_MESSAGE_RETENTION"),
            max_delivery_attempts=settings.getint("WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS"),
            min_backoff=settings.getint("WFCRAWL_PUBSUB_MIN_BACKOFF"),
            max_backoff=settings.getint("WFCRAWL_PUBSUB_MAX_BACKOFF"),
            push_endpoint=push_endpoint, push_service_account=push_service_account,
            push_audience=push_audience or push_endpoint,
        )
        layout.check()
        return layout

    def check(self) -> None:
        """Pub/Sub's own limits, as a clear error before any call."""
        if not 10 <= self.ack_deadline <= 600:
            raise ConfigurationError("WFCRAWL_PUBSUB_ACK_DEADLINE must be 10-600 seconds")
        if not 5 <= self.max_delivery_attempts <= 100:
            raise ConfigurationError("WFCRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS must be 5-100")
        if not 600 <= self.retention <= 7 * 86400:
            raise ConfigurationError("WFCRAWL_PUBSUB_MESSAGE_RETENTION must be 600-604800 seconds")
        if not 0 <= self.min_backoff <= self.max_backoff <= 600:
            raise ConfigurationError("need 0 <= WFCRAWL_PUBSUB_MIN_BACKOFF <= WFCRAWL_PUBSUB_MAX_BACKOFF <= 600")
        if self.push_endpoint and not self.push_endpoint.startswith("https://"):
            raise ConfigurationError("a push endpoint must be an https:// URL")

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
