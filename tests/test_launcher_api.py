"""The HTTP API: API keys, rate limits, workflows, executions against real crawls, the
`wfcrawl serve` command, and schemathesis fuzzing of the generated OpenAPI document."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.launcher_support import (  # noqa: F401  (fixtures)
    PG_DSN,
    SHOP,
    SHOP_ITEMS,
    final,
    http,
    make_launcher,
    pg_schema,
    pg_store,
    problem,
    wait_until,
    web_server,
)
from tests.mockserver import MockServer
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.checks import LaunchRequest
from wfcrawl.launcher.keys import request_digest
from wfcrawl.launcher.registry import MemoryWorkflowRegistry, PostgresWorkflowRegistry
from wfcrawl.storage.executions import MemoryExecutionStore
from wfcrawl.web.auth import key_digest, parse_api_keys

WRITER = "wfk_writer-key-for-tests-0123456789abcdefghijklmnop"
READER = "wfk_reader-key-for-tests-0123456789abcdefghijklmnop"
KEYS = [f"ci-writer:{key_digest(WRITER)}", f"dashboard:{key_digest(READER)}:read"]
SLOW = """\
name: slow
obey_robots: false
rate_limit: {concurrency: 1}
start_urls: ['/slow/1?delay=1', '/slow/2?delay=1', '/slow/3?delay=1', '/slow/4?delay=1']
phases:
  page:
    nodes:
      - {type: extract, item: page, fields: {n: p.n}}
"""


class Api:
    def __init__(self, url: str, store: Any, launcher: Any) -> None:
        self.url = url
        self.store = store
        self.launcher = launcher

    def __call__(self, method: str, path: str, body: Any = None, key: str | None = WRITER,
                 **headers: str) -> tuple[int, dict[str, str], Any]:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return http(method, self.url + path, body, {k.replace("_", "-"): v for k, v in headers.items()})


def serve(tmp_path: Path, store: Any, registry: Any, *, rate: float = 6000, burst: int = 1000) -> tuple[Any, Any]:
    launcher = make_launcher(tmp_path, store, registry)
    return web_server(tmp_path, launcher, KEYS, WFCRAWL_API_RATE_LIMIT=rate, WFCRAWL_API_RATE_BURST=burst), launcher


@pytest.fixture
def api(tmp_path: Path, pg_store: Any, pg_schema: str) -> Iterator[Api]:  # noqa: F811 (pytest fixture)
    registry = PostgresWorkflowRegistry(PG_DSN, schema=pg_schema, bundled=False)
    service, launcher = serve(tmp_path, pg_store, registry)
    yield Api(service.url, pg_store, launcher)
    launcher.shutdown()
    service.stop()


def test_unauthenticated_and_wrong_key_requests_are_refused_and_start_nothing(api: Api, server: MockServer) -> None:
    start = {"document": SHOP, "args": {"base_url": server.url}}
    assert api("POST", "/v1/executions", start, key=None)[0::2] == (
        401, problem(401, "an API key is required (Authorization: Bearer KEY)"))
    status, headers, body = api("POST", "/v1/executions", start, key="wfk_guessed")
    assert (status, headers["www-authenticate"], body) == (401, "Bearer", problem(401, "invalid API key"))
    assert headers["content-type"] == "application/problem+json"
    assert api("GET", "/v1/executions", key=WRITER[:-1])[0] == 401
    assert api("POST", "/v1/executions", start, key=READER)[0::2] == (
        403, problem(403, "the API key 'dashboard' is read-only"))
    assert api("POST", "/v1/workflows", {"document": SHOP}, key=READER)[0] == 403
    assert api("GET", "/v1/executions", key=READER)[0::2] == (200, {"executions": []})
    assert http("GET", api.url + "/v1/executions", headers={"X-API-Key": READER})[0] == 200
    assert api.store.list() == [] and api.launcher.running() == []


def test_rate_limit_per_key(tmp_path: Path) -> None:
    service, launcher = serve(tmp_path, MemoryExecutionStore(), MemoryWorkflowRegistry(), rate=60, burst=3)
    try:
        api = Api(service.url, None, launcher)
        assert [api("GET", "/v1/workflows")[0] for _ in range(3)] == [200, 200, 200]
        status, headers, body = api("GET", "/v1/workflows")
        assert (status, headers["retry-after"], body) == (429, "1", problem(
            429, "the API key 'ci-writer' made too many requests; retry in 1 s", "rate-limited"))
        assert api("GET", "/v1/workflows", key=READER)[0] == 200  # another key has its own bucket
        assert api("POST", "/v1/executions", {"workflow": "x"})[0] == 429  # nothing is even validated
    finally:
        service.stop()


def test_register_validate_start_status_and_list(api: Api, server: MockServer) -> None:
    bad = "name: bad\nstart_urls: [/]\nphases:\n  a:\n    nodes: [{type: extract_links, css: 'a[', marker: x}]\n"
    status, _, body = api("POST", "/v1/validate", {"document": bad})
    assert (status, body["valid"], [p["path"] for p in body["problems"]]) == (200, False, ["$.start_urls[0]", "$.phases.a.nodes[0].css", "$.phases.a.nodes[0].marker"])
    assert api("POST", "/v1/validate", {"document": SHOP})[0::2] == (200, {"valid": True, "name": "shop", "problems": []})
    assert api("POST", "/v1/workflows", {"document": bad})[0] == 422
    assert api("POST", "/v1/workflows", {"document": SHOP})[0::2] == (201, {"name": "shop", "created": True})
    assert api("POST", "/v1/workflows", {"document": SHOP})[0::2] == (200, {"name": "shop", "created": False})
    assert api("GET", "/v1/workflows")[0::2] == (200, {"workflows": ["shop"]})
    assert api("GET", "/v1/workflows/shop")[2] == {"name": "shop", "document": SHOP}

    start = {"workflow": "shop", "args": {"base_url": server.url}}
    status, _, body = api("POST", "/v1/executions", start, Idempotency_Key="nightly-2024-06-01")
    assert (status, body["started"], body["execution"]["status"]) == (201, True, "running")
    execution_id = body["execution"]["id"]
    # The same Idempotency-Key: the same execution, no second crawl.
    status, _, again = api("POST", "/v1/executions", start, Idempotency_Key="nightly-2024-06-01")
    assert (status, again["started"], again["execution"]["id"]) == (200, False, execution_id)

    final(api.store, execution_id)
    status, _, body = api("GET", f"/v1/executions/{execution_id}")
    execution = body["execution"]
    assert (status, execution["status"], execution["finish_reason"], execution["error"]) == (200, "succeeded", "finished", None)
    assert {k: execution["stats"][k] for k in SHOP_ITEMS} == SHOP_ITEMS
    assert execution["stats"]["wfcrawl/execution_id"] == execution_id
    assert "Spider closed (finished)" in execution["stats"]["wfcrawl/launcher/log_tail"]
    # No store configured: the items went to the default sink, named on the execution.
    assert execution["params"].pop("items_file").endswith(f"/items/{execution_id}.jsonl")
    assert execution["params"] == {"api_key": "ci-writer", "origin": "api", "attempt": 1,
                                   "registered_workflow": "shop", "base_url": server.url,
                                   "request_digest": request_digest(LaunchRequest(workflow="shop", base_url=server.url)),
                                   "document_sha256": hashlib.sha256(SHOP.encode()).hexdigest()}
    assert execution["reasons"] == []
    listed = api("GET", "/v1/executions?workflow=shop&status=succeeded")[2]["executions"]
    assert [e["id"] for e in listed] == [execution_id]
    assert api("GET", "/v1/executions?status=running")[2] == {"executions": []}
    assert api("GET", "/v1/executions?status=done")[0] == 400
    assert api("GET", "/v1/executions/nope")[0] == 404
    status, _, body = api("POST", f"/v1/executions/{execution_id}/cancel")
    assert (status, body["detail"], body["execution"]["status"]) == (
        409, f"execution {execution_id} is already succeeded", "succeeded")
    # Who did what: the audit log (PostgreSQL table audit_log), newest first.
    assert [(e.actor, e.action, e.target, e.details) for e in api.store.list_audit()] == [
        ("key:ci-writer", "execution.launched", execution_id, {"workflow": "shop", "origin": "api"}),
        ("key:ci-writer", "workflow.replaced", "shop", {}),
        ("key:ci-writer", "workflow.registered", "shop", {}),
    ]


def test_cancel_stops_a_running_crawl(api: Api, fresh_server: MockServer) -> None:
    status, _, body = api("POST", "/v1/executions", {"document": SLOW, "args": {"base_url": fresh_server.url}})
    assert status == 201
    execution_id = body["execution"]["id"]
    wait_until(lambda: any(p.startswith("/slow/1") for p in fresh_server.paths()), 60, "the first slow page")
    status, _, body = api("POST", f"/v1/executions/{execution_id}/cancel")
    assert (status, body["execution"]["status"]) == (202, "cancelled")
    wait_until(lambda: api.launcher.running() == [], 60, "the crawl process to end")
    execution = api.store.get(execution_id)
    # The launcher stopped it: its word is the finish reason, the outcome is the operator's cancel.
    assert (execution.status, execution.finish_reason) == ("cancelled", "cancelled")
    assert execution.reasons == [{"code": "cancelled", "message": "cancelled by an operator"}]
    # Scrapy's graceful stop on the launcher's SIGTERM: 128 + 15, as any crawl interrupted by SIGTERM.
    assert execution.stats["wfcrawl/launcher/exit_code"] == 143
    assert api("POST", f"/v1/executions/{execution_id}/cancel")[0] == 409
    assert [(e.actor, e.action, e.target) for e in api.store.list_audit()] == [
        ("key:ci-writer", "execution.cancelled", execution_id), ("key:ci-writer", "execution.launched", execution_id)]


def test_wfcrawl_serve_command(tmp_path: Path) -> None:
    env = {**os.environ, "WFCRAWL_API_KEYS": ""}  # settings come from -s
    proc = subprocess.Popen(
        [sys.executable, "-m", "wfcrawl.cli", "serve", "--host", "127.0.0.1", "--port", "0",
         "-s", f"WFCRAWL_API_KEYS={KEYS[0]}", "-s", f"WFCRAWL_LAUNCHER_WORKFLOWS_DIR={tmp_path}",
         "-s", f"WFCRAWL_SQLITE_PATH={tmp_path / 'wfcrawl.sqlite3'}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("wfcrawl launcher listening on http://127.0.0.1:"), proc.stderr.read() if proc.stderr else line
        url = line.split(" on ", 1)[1].strip()
        assert http("GET", url + "/healthz")[0::2] == (200, {"status": "ok", "running": 0})
        assert http("GET", url + "/v1/workflows")[0] == 401
        status, _, body = http("GET", url + "/v1/workflows", headers={"Authorization": f"Bearer {WRITER}"})
        assert status == 200 and "shop" in body["workflows"]  # the bundled examples
        assert http("GET", url + "/openapi.json")[2]["info"]["title"] == "wfcrawl launcher API"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "wfcrawl.sqlite3").is_file()  # the embedded store (no DATABASE_URL)


def test_serve_refuses_a_network_address_without_keys_and_bad_key_entries() -> None:
    proc = subprocess.run([sys.executable, "-m", "wfcrawl.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
                          cwd=ROOT, env={**os.environ, "WFCRAWL_API_KEYS": ""}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == (
        "wfcrawl serve: refusing to listen on 0.0.0.0 without API keys: anyone who can reach it could start "
        "crawls. Set WFCRAWL_API_KEYS (make keys with `wfcrawl api-key NAME`), or listen on 127.0.0.1 "
        "(the default without keys)\n")
    with pytest.raises(ConfigurationError) as caught:
        parse_api_keys([KEYS[0], "alice:notahash"])
    # The entry is not echoed: it may be a key pasted by mistake.
    assert str(caught.value) == (
        "WFCRAWL_API_KEYS entry 2 is not NAME:SHA256HEX[:read] (make one with `wfcrawl api-key NAME`)")


def test_openapi_fuzzing_finds_no_server_error(api: Api) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.core.result import Ok
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_dict(http("GET", api.url + "/openapi.json")[2])
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    auth = {"Authorization": f"Bearer {WRITER}"}
    calls = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # every operation of our own schema loads
        operation = result.ok()
        raw = operation.definition.raw
        # Negative cases need something to get wrong (GET /healthz takes nothing).
        negatable = any(k in raw for k in ("parameters", "requestBody", "security"))
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if negatable else (GenerationMode.POSITIVE,):
            @settings(max_examples=10, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(base_url=api.url, headers=auth, checks=checks)

            run()
    assert calls > 100
    assert api.store.list() == []  # random documents never pass validation: nothing started
