"""The HTTP API: API keys, rate limits, workflows, executions against real crawls, the
`wfcrawl serve` command, and schemathesis fuzzing of the OpenAPI document."""

from __future__ import annotations

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
    wait_until,
)
from tests.mockserver import MockServer
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.api import ApiApp
from wfcrawl.launcher.auth import ApiKeyAuth, key_digest, parse_api_keys
from wfcrawl.launcher.http import HttpService
from wfcrawl.launcher.ratelimit import RateLimiter
from wfcrawl.launcher.registry import PostgresWorkflowRegistry

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


def serve(tmp_path: Path, store: Any, registry: Any, *, rate: float = 6000, burst: int = 1000) -> tuple[HttpService, Any]:
    launcher = make_launcher(tmp_path, store, registry)
    app = ApiApp(launcher, registry, ApiKeyAuth(parse_api_keys(KEYS)), RateLimiter(rate, burst))
    return HttpService(app).start(), launcher


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
        401, {"error": "an API key is required (Authorization: Bearer KEY)"})
    status, headers, body = api("POST", "/v1/executions", start, key="wfk_guessed")
    assert (status, headers["WWW-Authenticate"], body) == (401, "Bearer", {"error": "invalid API key"})
    assert api("GET", "/v1/executions", key=WRITER[:-1])[0] == 401
    assert api("POST", "/v1/executions", start, key=READER)[0::2] == (
        403, {"error": "the API key 'dashboard' is read-only"})
    assert api("POST", "/v1/workflows", {"document": SHOP}, key=READER)[0] == 403
    assert api("GET", "/v1/executions", key=READER)[0::2] == (200, {"executions": []})
    assert http("GET", api.url + "/v1/executions", headers={"X-API-Key": READER})[0] == 200
    assert api.store.list() == [] and api.launcher.running() == []


def test_rate_limit_per_key(tmp_path: Path) -> None:
    from wfcrawl.launcher.registry import MemoryWorkflowRegistry
    from wfcrawl.storage.executions import MemoryExecutionStore

    service, launcher = serve(tmp_path, MemoryExecutionStore(), MemoryWorkflowRegistry(), rate=60, burst=3)
    try:
        api = Api(service.url, None, launcher)
        assert [api("GET", "/v1/workflows")[0] for _ in range(3)] == [200, 200, 200]
        status, headers, body = api("GET", "/v1/workflows")
        assert (status, headers["Retry-After"], body) == (429, "1", {"error": "rate limit exceeded"})
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
    assert (status, execution["status"], execution["finish_reason"], execution["error"]) == (200, "finished", "finished", None)
    assert {k: execution["stats"][k] for k in SHOP_ITEMS} == SHOP_ITEMS
    assert execution["stats"]["wfcrawl/execution_id"] == execution_id
    assert "Spider closed (finished)" in execution["stats"]["wfcrawl/launcher/log_tail"]
    assert execution["params"] == {"api_key": "ci-writer", "origin": "api", "attempt": 1,
                                   "registered_workflow": "shop", "base_url": server.url}
    listed = api("GET", "/v1/executions?workflow=shop&status=finished")[2]["executions"]
    assert [e["id"] for e in listed] == [execution_id]
    assert api("GET", "/v1/executions?status=running")[2] == {"executions": []}
    assert api("GET", "/v1/executions?status=done")[0] == 400
    assert api("GET", "/v1/executions/nope")[0] == 404
    assert api("POST", f"/v1/executions/{execution_id}/cancel")[0::2][0] == 409


def test_cancel_stops_a_running_crawl(api: Api, fresh_server: MockServer) -> None:
    status, _, body = api("POST", "/v1/executions", {"document": SLOW, "args": {"base_url": fresh_server.url}})
    assert status == 201
    execution_id = body["execution"]["id"]
    wait_until(lambda: any(p.startswith("/slow/1") for p in fresh_server.paths()), 60, "the first slow page")
    status, _, body = api("POST", f"/v1/executions/{execution_id}/cancel")
    assert (status, body["execution"]["status"]) == (202, "cancelled")
    wait_until(lambda: api.launcher.running() == [], 60, "the crawl process to end")
    execution = api.store.get(execution_id)
    assert (execution.status, execution.finish_reason) == ("cancelled", "shutdown")
    assert execution.stats["wfcrawl/launcher/exit_code"] == 0  # Scrapy's graceful stop
    assert api("POST", f"/v1/executions/{execution_id}/cancel")[0] == 409


def test_wfcrawl_serve_command(tmp_path: Path) -> None:
    env = {**os.environ, "WFCRAWL_API_KEYS": ""}  # settings come from -s
    proc = subprocess.Popen(
        [sys.executable, "-m", "wfcrawl.cli", "serve", "--host", "127.0.0.1", "--port", "0",
         "-s", f"WFCRAWL_API_KEYS={KEYS[0]}", "-s", f"WFCRAWL_LAUNCHER_WORKFLOWS_DIR={tmp_path}"],
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


def test_serve_refuses_to_start_without_keys_or_push() -> None:
    proc = subprocess.run([sys.executable, "-m", "wfcrawl.cli", "serve", "--port", "0"], cwd=ROOT,
                          env={**os.environ, "WFCRAWL_API_KEYS": ""}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "set WFCRAWL_API_KEYS (see `wfcrawl api-key`) or WFCRAWL_PUSH_ENABLED" in proc.stderr
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
    from schemathesis.generation import GenerationMode

    from wfcrawl.launcher import openapi

    schema = schemathesis.openapi.from_dict(openapi.spec())
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    auth = {"Authorization": f"Bearer {WRITER}"}
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
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
