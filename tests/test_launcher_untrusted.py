"""Launched crawls of untrusted documents: they always end, and the launch API cannot be
confused (anchored ids, one request per key, busy slots, invalid Unicode)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.launcher_support import (
    final,
    http,
    launch_settings,
    make_launcher,
    problem,
    wait_until,
    web_server,
)
from tests.mockserver import MockServer
from wfcrawl.exceptions import WorkflowError
from wfcrawl.launcher.launch import LauncherBusyError, LaunchRejectedError, LaunchRequest
from wfcrawl.launcher.registry import MemoryWorkflowRegistry
from wfcrawl.storage.executions import MemoryExecutionStore
from wfcrawl.web.auth import key_digest
from wfcrawl.web.push import PushConfig, PushEndpoint
from wfcrawl.web.pushauth import push_verifier

KEY = "wfk_untrusted-launch-key-0123456789abcdefghijklmnopq"
SECRET = "push-secret-for-untrusted-launches"


def page_doc(server: MockServer, name: str = "one", extra: str = "") -> str:
    return (f"name: {name}\nobey_robots: false\nstart_urls: [{server.url}/shop/product/lp-001.html]\n{extra}"
            "phases: {page: {nodes: [{type: extract, item: page, fields: {name: h1.name}}]}}\n")


def test_a_crawl_stuck_in_c_code_is_killed_and_frees_its_slot(
    tmp_path: Path, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM cannot reach Python code stuck in C: SIGKILL after WFCRAWL_LAUNCHER_KILL_TIMEOUT does.
    (Stopped by a cancel once it is stuck; a time-out stops it the same way.)"""
    marker = tmp_path / "stuck"
    monkeypatch.setenv("WFCRAWL_TEST_STUCK_MARKER", str(marker))
    store = MemoryExecutionStore()
    launcher = make_launcher(tmp_path, store, WFCRAWL_LAUNCHER_MAX_CRAWLS=1, WFCRAWL_LAUNCHER_KILL_TIMEOUT=2,
                             WFCRAWL_SCRIPT_MODULES=["tests.hostile.stuck"])
    document = page_doc(server, "stuck").replace(
        "nodes: [", "nodes: [{type: script, callable: 'tests.hostile.stuck:spin'}, ")
    try:
        execution, started = launcher.launch(LaunchRequest(document=document))
        assert started
        wait_until(marker.exists, 120, "the crawl to be stuck in its script node")
        # The one slot is held by the stuck crawl until it is stopped.
        with pytest.raises(LauncherBusyError):
            launcher.launch(LaunchRequest(document=page_doc(server)))
        launcher.cancel(execution.id)
        launcher.wait(execution.id, timeout=60)
        done = store.get(execution.id)
        assert done is not None
        assert (done.status, done.finish_reason) == ("cancelled", "cancelled")
        assert done.reasons == [{"code": "cancelled", "message": "cancelled by an operator"}]  # the operator's word
        assert done.stats["wfcrawl/launcher/killed"] is True
        assert done.stats["wfcrawl/launcher/exit_code"] == -9
        # Its slot is free again: the next launch starts.
        assert launcher.running() == []
        again, started = launcher.launch(LaunchRequest(document=page_doc(server)))
        assert started and final(store, again.id).status == "succeeded"
    finally:
        launcher.shutdown()


def test_a_valid_but_endless_crawl_is_stopped_by_the_timeout(tmp_path: Path, server: MockServer) -> None:
    """delay: 3600 is within the schema's range; the crawl would take hours: the time-out ends it."""
    store = MemoryExecutionStore()
    launcher = make_launcher(tmp_path, store, WFCRAWL_LAUNCHER_CRAWL_TIMEOUT=6, WFCRAWL_LAUNCHER_KILL_TIMEOUT=2)
    document = (f"name: slow\nobey_robots: false\nrate_limit: {{delay: 3600, concurrency: 1}}\nstart_urls: "
                f"[{server.url}/shop/product/lp-001.html, {server.url}/shop/product/lp-002.html]\n"
                "phases: {page: {nodes: [{type: extract, item: page, fields: {name: h1.name}}]}}\n")
    try:
        execution, _ = launcher.launch(LaunchRequest(document=document))
        done = final(store, execution.id, timeout=120)
        # Scrapy's graceful stop waits for the request the delay holds back (an hour):
        # SIGKILL, WFCRAWL_LAUNCHER_KILL_TIMEOUT seconds after SIGTERM, ends it (unless
        # SIGTERM came before Scrapy was up to handle it: then SIGTERM itself did).
        assert (done.status, done.finish_reason) == ("failed", "timeout")
        killed = done.stats["wfcrawl/launcher/killed"]
        assert [r["code"] for r in done.reasons] == (["timed_out", "killed"] if killed else ["timed_out"])
        assert done.error is not None
        lines = done.error.splitlines()
        assert lines[0] == "timed_out: stopped by the launcher after WFCRAWL_LAUNCHER_CRAWL_TIMEOUT"
        assert "stopped by the launcher: timeout" in lines[2 if killed else 1]
        assert launcher.running() == []
    finally:
        launcher.shutdown()


def test_the_schema_refuses_what_would_stall_a_crawl(tmp_path: Path) -> None:
    launcher = make_launcher(tmp_path, MemoryExecutionStore())
    base = "name: stall\nstart_urls: [http://127.0.0.1:1/]\nphases: {a: {nodes: [{type: extract, item: x, fields: {t: h1}}]}}\n"
    for delay in (".inf", "1e300", "1.0e+300", "7200"):
        with pytest.raises(LaunchRejectedError) as caught:
            launcher.launch(LaunchRequest(document=base + f"rate_limit: {{delay: {delay}}}\n"))
        assert caught.value.message == "invalid workflow"
    assert [str(p) for p in _problems(launcher, base + "rate_limit: {delay: .inf}\n")] == [
        "<api>:4:21: $.rate_limit.delay: number must be finite, not inf"]
    assert [str(p) for p in _problems(launcher, base + "rate_limit: {delay: 1e300}\n")] == [
        "<api>:4:21: $.rate_limit.delay: must be a number, not a string"]  # YAML 1.1: 1e300 is a string
    assert [str(p) for p in _problems(launcher, base + "rate_limit: {delay: 1.0e+300}\n")] == [
        "<api>:4:21: $.rate_limit.delay: number out of range: at most 9007199254740992 in magnitude"]
    assert [str(p) for p in _problems(launcher, base + "rate_limit: {delay: 7200}\n")] == [
        "<api>:4:21: $.rate_limit.delay: must be at most 3600; got 7200"]


def _problems(launcher: Any, document: str) -> Any:
    try:
        launcher.validate(document, name="<api>")
    except WorkflowError as exc:
        return exc.problems
    return []


def test_execution_ids_are_anchored(tmp_path: Path) -> None:
    store = MemoryExecutionStore()
    launcher = make_launcher(tmp_path, store)
    for bad in ("run-1\n", "run-1\r", "\nrun-1", "run 1", "-run", "r" * 65):
        with pytest.raises(LaunchRejectedError, match="execution_id must be 1-64 letters"):
            launcher.launch(LaunchRequest(document="name: x\n", execution_id=bad))
    assert store.list() == []


class Service:
    """``wfcrawl serve``'s application with the push endpoint, one API key and no rate limit."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        settings = launch_settings(tmp_path, WFCRAWL_PUSH_ENABLED=True, WFCRAWL_PUSH_SECRET=SECRET, **overrides)
        self.store = MemoryExecutionStore()
        self.launcher = make_launcher(tmp_path, self.store, MemoryWorkflowRegistry(), **overrides)
        push = PushEndpoint(self.launcher, push_verifier(settings), PushConfig.from_settings(settings))
        self.http = web_server(tmp_path, self.launcher, [f"ci:{key_digest(KEY)}"], push=push,
                               WFCRAWL_API_RATE_LIMIT=0, **overrides)

    def post(self, path: str, body: Any = None, raw: bytes | None = None, **headers: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {KEY}", **{k.replace("_", "-"): v for k, v in headers.items()}}
        status, _, payload = http("POST", self.http.url + path, body, headers, raw=raw)
        return status, payload

    def stop(self) -> None:
        self.http.stop()
        self.launcher.shutdown()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    s = Service(tmp_path, WFCRAWL_LAUNCHER_MAX_CRAWLS=1)
    yield s
    s.stop()


def test_same_idempotency_key_with_another_document_is_a_409(service: Service, server: MockServer) -> None:
    first = {"document": page_doc(server)}
    status, body = service.post("/v1/executions", first, Idempotency_Key="nightly")
    assert (status, body["started"]) == (201, True)
    execution_id = body["execution"]["id"]
    # The same request: the same execution (even while the one slot is busy with it).
    status, again = service.post("/v1/executions", first, Idempotency_Key="nightly")
    assert (status, again["started"], again["execution"]["id"]) == (200, False, execution_id)
    # Another document, or another base_url, with the key: a conflict, nothing started.
    other = {"document": page_doc(server, "two")}
    status, conflict = service.post("/v1/executions", other, Idempotency_Key="nightly")
    assert (status, conflict) == (409, problem(409, f"execution {execution_id} was launched with this key for another"
                                                    " request (another document, workflow, base_url or execution_id):"
                                                    " use a new key", "conflict"))
    status, _ = service.post("/v1/executions", {**first, "args": {"base_url": server.url}}, Idempotency_Key="nightly")
    assert status == 409
    final(service.store, execution_id)
    assert [e.id for e in service.store.list()] == [execution_id]


def test_a_duplicate_launch_while_busy_finds_its_execution(service: Service, server: MockServer) -> None:
    slow = page_doc(server, "slow").replace("lp-001.html", "lp-001.html, /slow/1?delay=3").replace(
        "start_urls: [", "start_urls: [").replace("/slow/1", f"{server.url}/slow/1")
    request = {"document": slow, "execution_id": "slow-run"}
    status, body = service.post("/v1/executions", request)
    assert (status, body["execution"]["id"], body["started"]) == (201, "slow-run", True)
    # The one slot is busy: the same launch again is answered with its execution, not 429.
    status, again = service.post("/v1/executions", request)
    assert (status, again["execution"]["id"], again["started"]) == (200, "slow-run", False)
    # Another launch is busy (429), the same execution id with another document a conflict.
    assert service.post("/v1/executions", {"document": page_doc(server)})[0] == 429
    assert service.post("/v1/executions", {"document": page_doc(server), "execution_id": "slow-run"})[0] == 409
    assert final(service.store, "slow-run").status == "succeeded"


def test_invalid_unicode_in_launch_and_push_bodies_is_a_4xx_and_creates_nothing(service: Service) -> None:
    document = "name: shop\ndescription: caf\ud800\nstart_urls: [/]\n"
    status, body = service.post("/v1/executions", {"document": document})
    assert (status, body) == (422, problem(422, "invalid workflow", "launch-rejected", problems=[
        "<api>:2:17: $: character U+D800 (a lone surrogate: not valid Unicode) is not allowed"]))
    status, body = service.post("/v1/executions", {"workflow": "sh\udc00op"})
    assert (status, body["detail"]) == (422, "workflow is not valid Unicode: U+DC00 (a lone surrogate: not valid"
                                            " Unicode) at offset 2")
    status, body = service.post("/v1/executions", {"document": "name: x\n", "execution_id": "a\ud800"})
    assert (status, body["detail"]) == (422, "execution_id is not valid Unicode: U+D800 (a lone surrogate: not"
                                            " valid Unicode) at offset 1")
    status, body = service.post("/v1/validate", {"document": document})
    assert (status, body["valid"], [p["message"] for p in body["problems"]]) == (
        200, False, ["character U+D800 (a lone surrogate: not valid Unicode) is not allowed"])
    # Pub/Sub push: a message whose data or id carries a lone surrogate is refused (400), every time.
    for data, message_id in ((json.dumps({"document": document}), "m-1"), ('{"workflow": "shop"}', "m-\ud800")):
        envelope = {"message": {"data": base64.b64encode(data.encode()).decode(), "messageId": message_id},
                    "subscription": "projects/p/subscriptions/s"}
        for _ in range(2):
            status, body = service.post(f"/pubsub/push?token={SECRET}", envelope)
            assert status == 400, body
    assert service.store.list() == []


def test_bodies_nested_past_the_stack_are_a_400(service: Service) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    status, body = service.post("/v1/validate", raw=b'{"document": ' + deep + b"}")
    assert (status, body["detail"].startswith("the body is not JSON")) == (400, True)
    assert service.post(f"/pubsub/push?token={SECRET}", raw=deep)[0] == 400
    envelope = {"message": {"data": base64.b64encode(deep).decode(), "messageId": "m-deep"},
                "subscription": "projects/p/subscriptions/s"}
    status, body = service.post(f"/pubsub/push?token={SECRET}", envelope)
    assert (status, body["detail"].startswith("the message data is not JSON")) == (400, True)
    assert service.store.list() == []
