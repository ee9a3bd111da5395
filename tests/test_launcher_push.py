"""Pub/Sub push endpoint: OIDC/secret verification, envelope parsing, ack/retry answers,
idempotent launches; real crawls in child processes, executions in real PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.launcher_support import (  # noqa: F401  (fixtures)
    PG_DSN,
    SHOP,
    SHOP_ITEMS,
    OIDCKeys,
    http,
    launch_settings,
    make_launcher,
    pg_schema,
    pg_store,
    problem,
    wait_until,
    web_server,
)
from tests.mockserver import MockServer
from tests.pubsub_emulator import Project
from wfcrawl.launcher.checks import LaunchRequest
from wfcrawl.launcher.keys import request_digest
from wfcrawl.launcher.registry import MemoryWorkflowRegistry
from wfcrawl.storage.executions import MemoryExecutionStore
from wfcrawl.web.push import PushConfig, PushEndpoint
from wfcrawl.web.pushauth import push_verifier

SUB = "projects/wfcrawl-test/subscriptions/crawls"
AUDIENCE = "https://launcher.example.run.app/pubsub/push"
ACCOUNT = "pubsub-push@wfcrawl-test.iam.gserviceaccount.com"
NEEDS_SECRET = """\
name: needs_secret
start_urls: [/login]
phases:
  login:
    nodes:
      - {type: form, css: form, env: {password: WFCRAWL_TEST_UNSET_SECRET}, phase: done}
  done:
    nodes:
      - {type: extract, item: page, fields: {title: title}}
"""

# The shop with a node that matches nothing (the product pages have no span.colour): degraded.
DEGRADED = SHOP.replace("name: shop\n", "name: shop_colours\n", 1).replace(
    "  product:\n    nodes:\n",
    "  product:\n    nodes:\n      - {type: extract, name: colours, item: colour, fields: {c: span.colour}}\n", 1)


def envelope(data: Any, message_id: str = "m-1", subscription: str = SUB, attempt: int | None = None) -> dict[str, Any]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    env: dict[str, Any] = {
        "message": {"data": base64.b64encode(raw).decode(), "messageId": message_id, "message_id": message_id,
                    "attributes": {"origin": "test"}, "publishTime": "2024-06-01T00:00:00Z"},
        "subscription": subscription,
    }
    if attempt is not None:
        env["deliveryAttempt"] = attempt
    return env


class Push:
    def __init__(self, url: str, keys: OIDCKeys, store: Any) -> None:
        self.url = url + "/pubsub/push"
        self.keys = keys
        self.store = store

    def auth(self, **claims: Any) -> dict[str, str]:
        token = self.keys.token(**{"aud": AUDIENCE, "email": ACCOUNT, **claims})
        return {"Authorization": f"Bearer {token}"}

    def post(self, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        status, _, payload = http("POST", self.url, body, headers if headers is not None else self.auth(), raw=raw)
        return status, payload


@pytest.fixture
def push(tmp_path: Path, pg_store: Any) -> Iterator[Push]:  # noqa: F811 (pytest fixture)
    keys = OIDCKeys()
    settings = launch_settings(
        tmp_path, WFCRAWL_PUSH_ENABLED=True, WFCRAWL_PUSH_AUDIENCE=AUDIENCE, WFCRAWL_PUSH_CERTS_URL=keys.certs_url,
        WFCRAWL_PUSH_SERVICE_ACCOUNT=ACCOUNT, WFCRAWL_PUSH_SUBSCRIPTIONS=[SUB], WFCRAWL_PUSH_WAIT_TIMEOUT=120,
        WFCRAWL_LAUNCHER_ALLOWED_ENV=["WFCRAWL_TEST_UNSET_SECRET"],
    )
    launcher = make_launcher(tmp_path, pg_store, MemoryWorkflowRegistry(bundled=True),
                             WFCRAWL_LAUNCHER_ALLOWED_ENV=["WFCRAWL_TEST_UNSET_SECRET"])
    endpoint = PushEndpoint(launcher, push_verifier(settings), PushConfig.from_settings(settings))
    service = web_server(tmp_path, launcher, [], push=endpoint)
    yield Push(service.url, keys, pg_store)
    service.stop()
    launcher.shutdown()
    keys.close()


def test_valid_message_starts_exactly_one_crawl_and_a_redelivery_none(push: Push, server: MockServer) -> None:
    message = {"workflow": "shop", "args": {"base_url": server.url}}
    status, body = push.post(envelope(message, "m-1"))
    assert status == 200, body  # 2xx: Pub/Sub acks
    assert body["started"] is True
    execution = body["execution"]
    assert (execution["workflow"], execution["status"], execution["finish_reason"]) == ("shop", "succeeded", "finished")
    assert {k: execution["stats"].get(k) for k in SHOP_ITEMS} == SHOP_ITEMS
    assert execution["stats"]["wfcrawl/launcher/exit_code"] == 0
    assert execution["params"].pop("items_file").endswith(f"/items/{execution['id']}.jsonl")  # the default sink
    assert execution["params"] == {
        "message_id": "m-1", "subscription": SUB, "origin": "pubsub-push", "attempt": 1,
        "registered_workflow": "shop", "base_url": server.url,
        "request_digest": request_digest(LaunchRequest(workflow="shop", base_url=server.url)),
        "document_sha256": hashlib.sha256(SHOP.encode()).hexdigest(),
    }

    # At-least-once delivery: the same message again (also as a later attempt) starts nothing.
    for attempt in (None, 2):
        status, again = push.post(envelope(message, "m-1", attempt=attempt))
        assert (status, again["started"], again["execution"]["id"]) == (200, False, execution["id"])
    executions = push.store.list()
    assert [(e.id, e.launch_key, e.status) for e in executions] == [(execution["id"], "pubsub:m-1", "succeeded")]
    assert [(e.actor, e.action, e.target, e.details) for e in push.store.list_audit()] == [
        (f"pubsub:{SUB}", "execution.launched", execution["id"],
         {"workflow": "shop", "origin": "pubsub-push", "message_id": "m-1"})]


def test_requests_not_from_our_subscription_are_refused_and_start_nothing(push: Push, server: MockServer) -> None:
    valid = envelope({"workflow": "shop", "args": {"base_url": server.url}}, "m-2")
    other_key = OIDCKeys(kid=push.keys.kid)  # same key id, another private key: a forged signature
    now = int(time.time())
    cases = {
        "no token": ({}, 401),
        "not a JWT": ({"Authorization": "Bearer not-a-token"}, 401),
        "basic auth": ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        "bad signature": ({"Authorization": "Bearer " + push.keys.token(
            key_pem=other_key.key_pem, aud=AUDIENCE, email=ACCOUNT)}, 401),
        "expired": (push.auth(iat=now - 7200, exp=now - 3600), 401),
        "wrong audience": (push.auth(aud="https://someone-else.example/push"), 403),
        "wrong issuer": (push.auth(iss="https://issuer.example"), 403),
        "wrong account": (push.auth(email="intruder@evil.iam.gserviceaccount.com"), 403),
        "unverified email": (push.auth(email_verified=False), 403),
    }
    other_key.close()
    got = {name: push.post(valid, headers)[0] for name, (headers, _) in cases.items()}
    assert got == {name: status for name, (_, status) in cases.items()}
    status, body = push.post(envelope({"workflow": "shop"}, "m-3", subscription="projects/p/subscriptions/other"))
    assert (status, body) == (403, problem(403, "subscription projects/p/subscriptions/other is not accepted here"))
    assert push.store.list() == []


def test_malformed_envelopes_and_messages_get_400_and_start_nothing(push: Push) -> None:
    good = envelope({"workflow": "shop"})
    bad_data = dict(good, message=dict(good["message"], data="@@not base64@@"))
    no_id = dict(good, message={k: v for k, v in good["message"].items() if k not in ("messageId", "message_id")})
    cases = [
        (None, b"not json", "malformed push envelope: the body is not JSON: Expecting value: line 1 column 1 (char 0)"),
        ({"message": "hello"}, None, 'malformed push envelope: expected {"message": {...}, "subscription": ...}'),
        (bad_data, None, "malformed push envelope: message.data is not base64"),
        (no_id, None, "malformed push envelope: message.messageId is missing"),
        (dict(good, subscription=""), None, "malformed push envelope: subscription is missing"),
        (envelope(b"\xff\xfe"), None, "the message data is not JSON: 'utf-8' codec can't decode byte 0xff "
         "in position 0: invalid start byte"),
        (envelope({"workflow": "shop", "priority": 1}), None,
         "unknown field(s) 'priority'; expected: args, document, execution_id, workflow"),
        (envelope({"workflow": "shop", "args": {"workflow": "/etc/passwd"}}), None,
         "argument(s) 'workflow' may not be set; allowed: base_url"),
        (envelope({"workflow": "shop", "document": "name: x"}), None,
         "give either 'workflow' (a registered name) or 'document' (the workflow itself)"),
        (envelope({"workflow": "nope"}), None, "no registered workflow named 'nope'"),
        (envelope({"document": "name: x\nstart_urls: [http://127.0.0.1/]\nphases: {a: {nodes: []}}\n"}), None,
         "invalid workflow"),
        (envelope({"workflow": "shop", "args": {"base_url": "http://169.254.169.254"}}), None, "start URLs refused"),
    ]
    results = [push.post(body, raw=raw) for body, raw, _ in cases]
    assert [(status, payload["detail"]) for status, payload in results] == [(400, m) for _, _, m in cases]
    # The reasons are specific: the problems of the invalid document, the refused address.
    _, invalid = push.post(cases[-2][0])
    assert invalid["problems"] == ["<pubsub-push>:3:21: $.phases.a.nodes: must have at least 1 item(s)"]
    _, refused = push.post(cases[-1][0])
    assert refused["problems"] == [
        "start URL http://169.254.169.254/shop/index.html refused by the SSRF guard: 169.254.169.254 is a "
        "cloud metadata address (allow it with WFCRAWL_SSRF_ALLOWED_NETWORKS)"
    ]
    assert push.store.list() == []


def test_failed_crawl_is_answered_500_and_its_redelivery_runs_attempt_2(push: Push, server: MockServer) -> None:
    message = {"document": NEEDS_SECRET, "args": {"base_url": server.url}}
    statuses = []
    for attempt in (1, 2):
        status, body = push.post(envelope(message, "m-9", attempt=attempt))
        statuses.append((status, body["started"], body["execution"]["status"]))
    assert statuses == [(500, True, "failed"), (500, True, "failed")]  # non-2xx: Pub/Sub redelivers
    executions = sorted(push.store.list(), key=lambda e: e.params["attempt"])
    assert [(e.launch_key, e.params["attempt"], e.status) for e in executions] == [
        ("pubsub:m-9", 1, "failed"), ("pubsub:m-9#2", 2, "failed"),
    ]
    assert executions[0].reasons == [{
        "code": "did_not_start",
        "message": "the crawl did not start: invalid document or setting (exit status 2; the log says which)",
    }]
    assert executions[0].error is not None and executions[0].error.splitlines()[:2] == [
        "did_not_start: the crawl did not start: invalid document or setting (exit status 2; the log says which)",
        "crawl exited with status 2, no final stats (it failed at start or was killed)",
    ]
    assert "environment variable(s) that are not set: WFCRAWL_TEST_UNSET_SECRET" in executions[0].error


def test_accept_mode_answers_202_at_start_and_the_crawl_timeout_is_recorded(
    tmp_path: Path, fresh_server: MockServer
) -> None:

    settings = launch_settings(tmp_path, WFCRAWL_PUSH_ENABLED=True, WFCRAWL_PUSH_SECRET="t", WFCRAWL_PUSH_MODE="accept")
    store = MemoryExecutionStore()
    launcher = make_launcher(tmp_path, store, WFCRAWL_LAUNCHER_CRAWL_TIMEOUT=1.0)
    endpoint = PushEndpoint(launcher, push_verifier(settings), PushConfig.from_settings(settings))
    service = web_server(tmp_path, launcher, [], push=endpoint)
    slow = ("name: slow\nobey_robots: false\nstart_urls: ['/slow/1?delay=4']\n"
            "phases: {p: {nodes: [{type: extract, item: page, fields: {n: p.n}}]}}\n")
    try:
        status, _, body = http("POST", service.url + "/pubsub/push?token=t",
                               envelope({"document": slow, "args": {"base_url": fresh_server.url}}, "m-7"))
        assert (status, body["started"], body["execution"]["status"]) == (202, True, "running")
        launcher.wait(body["execution"]["id"], timeout=60)
    finally:
        service.stop()
        launcher.shutdown()
    execution = store.get(body["execution"]["id"])
    assert execution is not None and execution.status == "failed"
    assert [r["code"] for r in execution.reasons] == ["timed_out"]
    assert execution.error is not None and execution.error.splitlines()[0] == (
        "timed_out: stopped by the launcher after WFCRAWL_LAUNCHER_CRAWL_TIMEOUT")


def test_shared_secret_verification(tmp_path: Path) -> None:
    settings = launch_settings(tmp_path, WFCRAWL_PUSH_ENABLED=True, WFCRAWL_PUSH_SECRET="s3cr3t-token")
    store = MemoryExecutionStore()
    launcher = make_launcher(tmp_path, store)
    endpoint = PushEndpoint(launcher, push_verifier(settings), PushConfig.from_settings(settings))
    service = web_server(tmp_path, launcher, [], push=endpoint)
    try:
        url = service.url + "/pubsub/push"
        body: dict[str, Any] = {"message": {}}  # malformed: reaching the 400 proves the secret was accepted
        assert http("POST", url, body)[0] == 401
        assert http("POST", url + "?token=wrong", body)[0] == 403
        assert http("POST", url + "?token=s3cr3t-token", body)[0] == 400
        assert http("GET", url + "?token=s3cr3t-token")[0] == 405
    finally:
        service.stop()
    assert store.list() == []


def test_the_emulator_pushes_to_wfcrawl_serve_which_acks_retries_and_dead_letters(
    pubsub_project: Project, pg_store: Any, pg_schema: str, server: MockServer, tmp_path: Path  # noqa: F811
) -> None:
    """A real push subscription: Google's emulator POSTs each message to `wfcrawl serve`'s
    /pubsub/push (shared secret in ?token=; the emulator signs no OIDC tokens). 200 acks a
    succeeded and a degraded crawl (running it again would not help); 500 (a failed crawl)
    makes it redeliver, until the dead-letter topic after 5 attempts."""
    project = pubsub_project
    topic, dead, sub = project.topic("crawls"), project.topic("crawls-dead-letter"), project.subscription("crawls-push")
    for name in (topic, dead):
        project.publisher.create_topic(name=name)
    project.subscriber.create_subscription(request={"name": project.subscription("crawls-dead-letter"), "topic": dead})
    secret = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "wfcrawl.cli", "serve", "--host", "127.0.0.1", "--port", "0",
         "-s", "WFCRAWL_PUSH_ENABLED=True", "-s", f"WFCRAWL_PUSH_SECRET={secret}", "-s", f"WFCRAWL_PUSH_SUBSCRIPTIONS={sub}",
         "-s", f"WFCRAWL_POSTGRES_SCHEMA={pg_schema}",
         "-s", f"WFCRAWL_LAUNCHER_CRAWL_ARGS={json.dumps(['-s', f'WFCRAWL_POSTGRES_SCHEMA={pg_schema}'])}",
         "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=127.0.0.0/8", "-s", f"WFCRAWL_LAUNCHER_WORKDIR={tmp_path}",
         "-s", "WFCRAWL_LAUNCHER_ALLOWED_ENV=WFCRAWL_TEST_UNSET_SECRET", "-s", "WFCRAWL_LAUNCHER_POLL_INTERVAL=0.2"],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": PG_DSN}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )
    dead_letters: list[Any] = []
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:"), url
        project.subscriber.create_subscription(request={
            "name": sub, "topic": topic, "ack_deadline_seconds": 60,
            "push_config": {"push_endpoint": f"{url}/pubsub/push?token={secret}"},
            "dead_letter_policy": {"dead_letter_topic": dead, "max_delivery_attempts": 5},
        })
        good = project.publish(topic, {"workflow": "shop", "args": {"base_url": server.url}})
        degraded = project.publish(topic, {"document": DEGRADED, "args": {"base_url": server.url}})
        failing = project.publish(topic, {"document": NEEDS_SECRET, "args": {"base_url": server.url}})
        def dead_lettered() -> list[Any]:
            dead_letters.extend(project.drain(project.subscription("crawls-dead-letter")))
            return dead_letters

        wait_until(dead_lettered, 180, "the failing message in the dead-letter topic")
        wait_until(lambda: sorted(e.status for e in pg_store.list() if e.workflow != "needs_secret")
                   == ["degraded", "succeeded"], 60, "the shop crawls")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    rank = {f"pubsub:{good}": 0, f"pubsub:{degraded}": 1}
    executions = sorted(pg_store.list(), key=lambda e: (rank.get(e.launch_key, 2), e.params["attempt"]))
    # One delivery each of the succeeded and the degraded crawl (acked), five of the failed one.
    assert [(e.launch_key, e.status, [r["code"] for r in e.reasons], e.params["origin"], e.params["subscription"])
            for e in executions] == [
        (f"pubsub:{good}", "succeeded", [], "pubsub-push", sub),
        (f"pubsub:{degraded}", "degraded", ["node_never_matched"], "pubsub-push", sub),
        (f"pubsub:{failing}", "failed", ["did_not_start"], "pubsub-push", sub),
        *[(f"pubsub:{failing}#{n}", "failed", ["did_not_start"], "pubsub-push", sub) for n in range(2, 6)],
    ]
    assert {k: executions[0].stats[k] for k in SHOP_ITEMS} == SHOP_ITEMS
    assert executions[1].reasons[0]["node"] == "colours"
    assert [(m.message.data, m.message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"]) for m in dead_letters] == [
        (json.dumps({"document": NEEDS_SECRET, "args": {"base_url": server.url}}).encode(), "5")]
    # The succeeded and the degraded message were acked by the 200: as a pull subscription it holds nothing.
    project.subscriber.modify_push_config(request={"subscription": sub, "push_config": {}})
    assert project.drain(sub) == []
