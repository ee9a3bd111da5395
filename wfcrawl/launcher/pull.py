"""``wfcrawl listen``: run the crawls of a Pub/Sub subscription (streaming pull).

The google-cloud-pubsub client does the protocol: streaming pull, flow control
(``WFCRAWL_PUBSUB_MAX_MESSAGES`` messages held at once: one crawl each), and
the lease of every held message, extended while its callback runs (up to
``WFCRAWL_PUBSUB_MAX_LEASE_DURATION``), so a crawl may take far longer than the
subscription's ack deadline. Each message's callback runs in the client's
thread pool and blocks until its crawl ends:

- crawl succeeded, degraded or cancelled (or a duplicate of such a one): **ack**
  (:func:`wfcrawl.outcome.pull_acks`: running a degraded crawl again would not help);
- crawl failed, launcher busy or shutting down, store unreachable: **nack**
  (Pub/Sub redelivers with backoff; the redelivery starts attempt 2, after
  ``max_delivery_attempts`` the message goes to the dead-letter topic);
- the message cannot run (not JSON, invalid workflow, refused start URL):
  **nack** too, so it ends in the dead-letter topic where it can be read
  (the reason is logged).

A duplicate delivery of a message whose crawl is running (here or on another
instance) waits for that crawl and acks or nacks with its outcome.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.launch import Launcher, LauncherBusyError, LaunchRejectedError
from wfcrawl.launcher.messages import pubsub_request
from wfcrawl.outcome import pull_acks

logger = logging.getLogger(__name__)


class Listener:
    def __init__(self, launcher: Launcher, subscription: str, *, max_messages: int,
                 max_lease_duration: float, subscriber: Any = None) -> None:
        if max_messages < 1:
            raise ConfigurationError("WFCRAWL_PUBSUB_MAX_MESSAGES must be at least 1")
        if max_messages > launcher.config.max_crawls:
            raise ConfigurationError(
                f"WFCRAWL_PUBSUB_MAX_MESSAGES ({max_messages}) is more than WFCRAWL_LAUNCHER_MAX_CRAWLS "
                f"({launcher.config.max_crawls}): the extra messages could only be nacked"
            )
        self.launcher = launcher
        self.subscription = subscription
        self.max_messages = max_messages
        self.max_lease_duration = max_lease_duration
        self._subscriber = subscriber
        self._future: Any = None
        self._stopped = threading.Event()

    def start(self) -> Listener:
        from google.cloud import pubsub_v1
        from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

        if self._subscriber is None:
            self._subscriber = pubsub_v1.SubscriberClient()
        flow = pubsub_v1.types.FlowControl(
            max_messages=self.max_messages, max_lease_duration=self.max_lease_duration,
        )
        # One thread per crawl: a callback blocks until its crawl ends.
        executor = ThreadPoolExecutor(max_workers=self.max_messages, thread_name_prefix="wfcrawl-listen")
        self._future = self._subscriber.subscribe(
            self.subscription, self._on_message, flow_control=flow,
            scheduler=ThreadScheduler(executor), await_callbacks_on_shutdown=True,
        )
        logger.info("Listening on %s (%d crawl(s) at once)", self.subscription, self.max_messages)
        return self

    def wait(self, timeout: float | None = None) -> None:
        """Block until the stream ends (an error, or :meth:`stop`); re-raise its error."""
        assert self._future is not None
        try:
            self._future.result(timeout=timeout)
        except Exception:
            if not self._stopped.is_set():
                raise

    def stop(self) -> None:
        """Stop the crawls (they are nacked: redelivered elsewhere), then the stream."""
        self._stopped.set()
        self.launcher.shutdown()
        if self._future is not None:
            self._future.cancel()
            try:
                self._future.result(timeout=30)
            except Exception:
                pass

    def _on_message(self, message: Any) -> None:
        try:
            ok = self._run(message)
        except Exception:
            logger.exception("Message %s: unexpected error; nacking it", message.message_id)
            ok = False
        if ok:
            message.ack()
        else:
            message.nack()

    def _run(self, message: Any) -> bool:
        if self._stopped.is_set():
            return False
        try:
            request = pubsub_request(message.data, message.message_id, origin="pubsub-pull",
                                     subscription=self.subscription)
            execution, started = self.launcher.launch(request, retry_failed=True)
        except LaunchRejectedError as exc:
            logger.warning("Message %s (delivery attempt %s) cannot run; it goes to the dead-letter topic "
                           "after the last attempt: %s", message.message_id, message.delivery_attempt, exc)
            return False
        except LauncherBusyError:
            return False
        if not started:
            logger.info("Message %s: execution %s exists (%s)", message.message_id, execution.id, execution.status)
        final = self.launcher.wait(execution.id, self.max_lease_duration)
        if final is None:
            logger.warning("Message %s: execution %s still not final; nacking", message.message_id, execution.id)
            return False
        return pull_acks(final.status)
