"""A fake Google Cloud Pub/Sub gRPC server for tests (no emulator can be installed here).

The real ``google-cloud-pubsub`` clients talk to it over localhost gRPC with
``PUBSUB_EMULATOR_HOST=127.0.0.1:PORT``. It implements what wfcrawl uses, the
way Pub/Sub behaves:

- Publisher: CreateTopic, GetTopic, DeleteTopic, Publish (a message is copied
  to every subscription of the topic at publish time; none: it is dropped).
- Subscriber: CreateSubscription, GetSubscription, UpdateSubscription (update
  mask), DeleteSubscription, Pull, StreamingPull, Acknowledge, ModifyAckDeadline.
- Leases: a delivered message is leased until its ack deadline (the stream's
  ``stream_ack_deadline_seconds``, then each ModifyAckDeadline); ModifyAckDeadline
  with 0 is a nack. A nacked or expired message is redelivered at once (no
  retry-policy backoff) with a new ack id.
- Flow control: StreamingPull honours the client's ``max_outstanding_messages``.
- Dead letters: with a ``dead_letter_policy``, each delivery counts an attempt
  (``ReceivedMessage.delivery_attempt``); a message nacked or expired after
  ``max_delivery_attempts`` deliveries is published to the dead-letter topic
  (with the ``CloudPubSubDeadLetterSource*`` attributes) instead.
- Validation like Pub/Sub's: ack deadline 10-600 s, max delivery attempts 5-100,
  retention 10 min - 7 days; ALREADY_EXISTS / NOT_FOUND errors.

Test helpers: :meth:`FakePubSub.deliveries`, :meth:`acked`, :meth:`modacks`,
:meth:`messages` (everything published to a topic), :meth:`redeliver`
(simulate Pub/Sub's at-least-once duplicate delivery).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.pubsub_v1 import types as ps


@dataclass
class _Message:
    message: Any  # ps.PubsubMessage
    attempts: int = 0


@dataclass
class _Lease:
    ack_id: str
    item: _Message
    deadline: float
    stream: object | None


@dataclass
class _Subscription:
    config: Any  # ps.Subscription
    backlog: deque[_Message] = field(default_factory=deque)
    items: dict[str, _Message] = field(default_factory=dict)  # by message id
    leases: dict[str, _Lease] = field(default_factory=dict)


class FakePubSub:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._topics: dict[str, Any] = {}
        self._subs: dict[str, _Subscription] = {}
        self._published: dict[str, list[Any]] = {}
        self._deliveries: list[tuple[str, str, int]] = []  # (subscription, message id, attempt)
        self._acked: list[tuple[str, str]] = []
        self._modacks: list[tuple[str, str, int]] = []
        self._ids = itertools.count(1)
        self._server: grpc.Server | None = None
        self.port = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakePubSub:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        server.add_generic_rpc_handlers((self._publisher(), self._subscriber()))
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakePubSub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ test helpers

    def messages(self, topic: str) -> list[Any]:
        with self._cond:
            return list(self._published.get(topic, []))

    def deliveries(self, subscription: str) -> list[tuple[str, int]]:
        with self._cond:
            return [(m, a) for s, m, a in self._deliveries if s == subscription]

    def acked(self, subscription: str) -> list[str]:
        with self._cond:
            return [m for s, m in self._acked if s == subscription]

    def modacks(self, subscription: str) -> list[tuple[str, int]]:
        with self._cond:
            return [(m, sec) for s, m, sec in self._modacks if s == subscription]

    def redeliver(self, subscription: str, message_id: str) -> None:
        """Deliver a message once more, as Pub/Sub's at-least-once delivery may."""
        with self._cond:
            sub = self._subs[subscription]
            sub.backlog.append(sub.items[message_id])
            self._cond.notify_all()

    # ------------------------------------------------------------ core

    def _publish(self, topic: str, message: Any) -> str:
        message_id = str(next(self._ids))
        stored = ps.PubsubMessage(data=message.data, attributes=dict(message.attributes),
                                 message_id=message_id, publish_time=datetime.now(timezone.utc),
                                 ordering_key=message.ordering_key)
        self._published.setdefault(topic, []).append(stored)
        for sub in self._subs.values():
            if sub.config.topic == topic:
                sub.items[message_id] = _Message(stored)
                sub.backlog.append(sub.items[message_id])
        self._cond.notify_all()
        return message_id

    def _lease(self, name: str, sub: _Subscription, item: _Message, seconds: float, stream: object | None) -> Any:
        item.attempts += 1
        ack_id = f"{name}:{item.message.message_id}:{uuid.uuid4().hex}"
        sub.leases[ack_id] = _Lease(ack_id, item, time.monotonic() + seconds, stream)
        self._deliveries.append((name, item.message.message_id, item.attempts))
        attempt = item.attempts if sub.config.dead_letter_policy.dead_letter_topic else 0
        return ps.ReceivedMessage(ack_id=ack_id, message=item.message, delivery_attempt=attempt)

    def _release(self, name: str, sub: _Subscription, lease: _Lease) -> None:
        """A nack or an expired lease: redeliver, or dead-letter after max attempts."""
        policy = sub.config.dead_letter_policy
        if policy.dead_letter_topic and lease.item.attempts >= policy.max_delivery_attempts:
            message = lease.item.message
            attributes = dict(message.attributes)
            attributes.update({
                "CloudPubSubDeadLetterSourceSubscription": name.rsplit("/", 1)[-1],
                "CloudPubSubDeadLetterSourceDeliveryCount": str(lease.item.attempts),
            })
            if policy.dead_letter_topic in self._topics:
                self._publish(policy.dead_letter_topic, ps.PubsubMessage(data=message.data, attributes=attributes))
            return
        sub.backlog.append(lease.item)
        self._cond.notify_all()

    def _expire(self) -> None:
        now = time.monotonic()
        for name, sub in self._subs.items():
            for ack_id, lease in list(sub.leases.items()):
                if lease.deadline <= now:
                    del sub.leases[ack_id]
                    self._release(name, sub, lease)

    def _find(self, ack_id: str) -> tuple[str, _Subscription, _Lease] | None:
        for name, sub in self._subs.items():
            if ack_id in sub.leases:
                return name, sub, sub.leases[ack_id]
        return None  # acked, nacked or expired already: ignored, like Pub/Sub

    # ------------------------------------------------------------ Publisher

    def create_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            if request.name in self._topics:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "Topic already exists")
            self._topics[request.name] = ps.Topic(name=request.name, labels=dict(request.labels))
            return self._topics[request.name]

    def get_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            if request.topic not in self._topics:
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
            return self._topics[request.topic]

    def delete_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            if self._topics.pop(request.topic, None) is None:
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
            return empty_pb2.Empty()

    def publish(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            if request.topic not in self._topics:
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
            return ps.PublishResponse(message_ids=[self._publish(request.topic, m) for m in request.messages])

    # ------------------------------------------------------------ Subscriber: admin

    @staticmethod
    def _check(sub: Any, context: grpc.ServicerContext) -> None:
        if sub.ack_deadline_seconds and not 10 <= sub.ack_deadline_seconds <= 600:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ack_deadline_seconds must be 10-600")
        policy = sub.dead_letter_policy
        if policy.dead_letter_topic and not 5 <= (policy.max_delivery_attempts or 5) <= 100:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "max_delivery_attempts must be 5-100")
        retention = sub.message_retention_duration
        if retention and not 600 <= retention.total_seconds() <= 7 * 86400:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "message_retention_duration must be 10m-7d")

    def create_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            if request.name in self._subs:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "Subscription already exists")
            if request.topic not in self._topics:
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
            self._check(request, context)
            config = ps.Subscription.deserialize(ps.Subscription.serialize(request))
            config.ack_deadline_seconds = config.ack_deadline_seconds or 10
            if config.dead_letter_policy.dead_letter_topic and not config.dead_letter_policy.max_delivery_attempts:
                config.dead_letter_policy.max_delivery_attempts = 5
            self._subs[request.name] = _Subscription(config)
            return config

    def get_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            if request.subscription not in self._subs:
                context.abort(grpc.StatusCode.NOT_FOUND, "Subscription not found")
            return self._subs[request.subscription].config

    def update_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            name = request.subscription.name
            if name not in self._subs:
                context.abort(grpc.StatusCode.NOT_FOUND, "Subscription not found")
            self._check(request.subscription, context)
            config = self._subs[name].config
            for path in request.update_mask.paths:
                setattr(config, path, getattr(request.subscription, path))
            return config

    def delete_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            if self._subs.pop(request.subscription, None) is None:
                context.abort(grpc.StatusCode.NOT_FOUND, "Subscription not found")
            return empty_pb2.Empty()

    # ------------------------------------------------------------ Subscriber: messages

    def _sub(self, name: str, context: grpc.ServicerContext) -> _Subscription:
        if name not in self._subs:
            context.abort(grpc.StatusCode.NOT_FOUND, "Subscription not found")
        return self._subs[name]

    def acknowledge(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            self._sub(request.subscription, context)
            self._ack(request.ack_ids)
            return empty_pb2.Empty()

    def _ack(self, ack_ids: Any) -> None:
        for ack_id in ack_ids:
            found = self._find(ack_id)
            if found is not None:
                name, sub, lease = found
                del sub.leases[ack_id]
                self._acked.append((name, lease.item.message.message_id))

    def modify_ack_deadline(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._cond:
            self._sub(request.subscription, context)
            self._modack(request.ack_ids, request.ack_deadline_seconds)
            return empty_pb2.Empty()

    def _modack(self, ack_ids: Any, seconds: int) -> None:
        for ack_id in ack_ids:
            found = self._find(ack_id)
            if found is None:
                continue
            name, sub, lease = found
            self._modacks.append((name, lease.item.message.message_id, seconds))
            if seconds == 0:
                del sub.leases[ack_id]
                self._release(name, sub, lease)
            else:
                lease.deadline = time.monotonic() + seconds

    def pull(self, request: Any, context: grpc.ServicerContext) -> Any:
        deadline = time.monotonic() + 2.0
        with self._cond:
            sub = self._sub(request.subscription, context)
            while True:
                self._expire()
                if sub.backlog or time.monotonic() > deadline:
                    break
                self._cond.wait(0.05)
            received = []
            while sub.backlog and len(received) < max(1, request.max_messages):
                item = sub.backlog.popleft()
                received.append(self._lease(request.subscription, sub, item, sub.config.ack_deadline_seconds, None))
            return ps.PullResponse(received_messages=received)

    def streaming_pull(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        first = next(requests)
        stream = object()
        state = {"deadline": first.stream_ack_deadline_seconds or 10, "closed": False,
                 "max": first.max_outstanding_messages or 1000}
        with self._cond:
            name = first.subscription
            sub = self._sub(name, context)
            self._apply(first)

        def read() -> None:
            try:
                for request in requests:
                    with self._cond:
                        if request.stream_ack_deadline_seconds:
                            state["deadline"] = request.stream_ack_deadline_seconds
                        self._apply(request)
            except grpc.RpcError:
                pass
            finally:
                with self._cond:
                    state["closed"] = True
                    self._cond.notify_all()

        threading.Thread(target=read, daemon=True, name="fake-pubsub-stream").start()
        while True:
            with self._cond:
                self._expire()
                if state["closed"] or not context.is_active() or name not in self._subs:
                    return
                mine = sum(1 for lease in sub.leases.values() if lease.stream is stream)
                received = []
                while sub.backlog and mine + len(received) < state["max"]:
                    received.append(self._lease(name, sub, sub.backlog.popleft(), state["deadline"], stream))
                if not received:
                    self._cond.wait(0.05)
                    continue
            yield ps.StreamingPullResponse(received_messages=received)

    def _apply(self, request: Any) -> None:
        self._ack(request.ack_ids)
        for ack_id, seconds in zip(request.modify_deadline_ack_ids, request.modify_deadline_seconds, strict=False):
            self._modack([ack_id], seconds)

    # ------------------------------------------------------------ wiring

    def _publisher(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler("google.pubsub.v1.Publisher", {
            "CreateTopic": _unary(self.create_topic, ps.Topic, ps.Topic),
            "GetTopic": _unary(self.get_topic, ps.GetTopicRequest, ps.Topic),
            "DeleteTopic": _unary(self.delete_topic, ps.DeleteTopicRequest, None),
            "Publish": _unary(self.publish, ps.PublishRequest, ps.PublishResponse),
        })

    def _subscriber(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler("google.pubsub.v1.Subscriber", {
            "CreateSubscription": _unary(self.create_subscription, ps.Subscription, ps.Subscription),
            "GetSubscription": _unary(self.get_subscription, ps.GetSubscriptionRequest, ps.Subscription),
            "UpdateSubscription": _unary(self.update_subscription, ps.UpdateSubscriptionRequest, ps.Subscription),
            "DeleteSubscription": _unary(self.delete_subscription, ps.DeleteSubscriptionRequest, None),
            "Acknowledge": _unary(self.acknowledge, ps.AcknowledgeRequest, None),
            "ModifyAckDeadline": _unary(self.modify_ack_deadline, ps.ModifyAckDeadlineRequest, None),
            "Pull": _unary(self.pull, ps.PullRequest, ps.PullResponse),
            "StreamingPull": grpc.stream_stream_rpc_method_handler(
                self.streaming_pull, request_deserializer=ps.StreamingPullRequest.deserialize,
                response_serializer=ps.StreamingPullResponse.serialize,
            ),
        })


def _unary(fn: Any, request_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
    serialize = response_type.serialize if response_type is not None else (lambda m: m.SerializeToString())
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request_type.deserialize, response_serializer=serialize
    )
