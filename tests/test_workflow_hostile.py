"""Hostile documents (tests/hostile/corpus.py): each gives exactly its located problems,
never a traceback, within a memory bound, and the API answers them without a 5xx.

The loader runs in a child process under an address-space limit (``RLIMIT_AS``)
and a time-out that only guards against hangs; the memory each document needs is
measured with tracemalloc in that process and bounded here.
"""

from __future__ import annotations

import base64
import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.hostile.corpus import CORPUS, Case
from tests.launcher_support import http, launch_settings, make_launcher, web_server
from wfcrawl.launcher.registry import MemoryWorkflowRegistry
from wfcrawl.storage.executions import MemoryExecutionStore
from wfcrawl.web.auth import key_digest
from wfcrawl.web.push import PushConfig, PushEndpoint
from wfcrawl.web.pushauth import push_verifier
from wfcrawl.workflow.regex import compile_regex
from wfcrawl.workflow.selectors import compile_selection
from wfcrawl.workflow.validate import schema

#: Address space of the loading process: the issue's alias bomb went past 4.6 GB.
ADDRESS_SPACE = 2 << 30
#: Python memory one document may take while it loads (the largest valid-size
#: documents of the corpus need about 12 MiB).
PEAK_BYTES = 32 << 20
#: Seconds for the whole corpus: a guard against hangs, not a speed test.
HANG_GUARD = 600
KEY = "wfk_hostile-corpus-key-0123456789abcdefghijklmnopqrst"
SECRET = "push-secret-for-the-hostile-corpus"


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.hostile.harness"], cwd=ROOT, capture_output=True, text=True,
        timeout=HANG_GUARD, preexec_fn=_limit_address_space,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}


def test_the_corpus_is_large_and_every_document_is_reported(results: dict[str, dict[str, Any]]) -> None:
    assert len(CORPUS) >= 100
    assert len({case.id for case in CORPUS}) == len(CORPUS)
    assert sorted(results) == sorted(case.id for case in CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_hostile_document(case: Case, results: dict[str, dict[str, Any]]) -> None:
    result = results[case.id]
    assert result["traceback"] is None
    assert result["problems"] == list(case.expected)
    assert result["peak"] < PEAK_BYTES


def test_every_number_in_the_schema_has_a_maximum() -> None:
    """Delays, limits, depths, counts, time-outs: each documented with its range."""
    unbounded = []
    stack: list[tuple[str, Any]] = [("$", schema())]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            kinds = node.get("type")  # a keyword where it is a string or a list (else a property named type)
            kinds = kinds if isinstance(kinds, list) else [kinds] if isinstance(kinds, str) else []
            if {"number", "integer"} & set(kinds) and "maximum" not in node:
                unbounded.append(path)
            stack.extend((f"{path}.{k}", v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(node))
    assert unbounded == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("pattern", "text"), [
    ("(a+)+$", "a" * 200_000 + "!"), ("^(([a-z])+.)+[A-Z]([a-z])+$", "a" * 200_000 + "!"),
    ("(x+x+)+y", "x" * 200_000), ("(.*a){20}b", "a" * 200_000), ("^(a|a?)+$", "a" * 200_000 + "!"),
])
def test_regex_bombs_run_in_linear_time(pattern: str, text: str) -> None:
    """What backtracks for longer than the universe with Python's re ends at once on RE2."""
    assert compile_regex(pattern).search(text) is None


@pytest.mark.timeout(120)
def test_xpath_regex_functions_run_on_re2_at_crawl_time() -> None:
    """lxml's own EXSLT re: functions use Python's re: a page's text would hang them."""
    from lxml import etree

    page = etree.HTML("<p>" + "a" * 100_000 + "!</p><p>ok</p>")
    assert compile_selection("xpath", "//p[re:test(., '(a+)+$')]").apply(page) == []
    assert compile_selection("xpath", "//p[re:test(., '^o')]/text()").apply(page) == ["ok"]
    assert [e.text for e in compile_selection("xpath", "re:match(//p[2], '(o)(k)')").apply(page)] == ["ok", "o", "k"]
    assert compile_selection("xpath", "re:replace(//p[2], 'O', 'gi', '0')").apply(page) == ["0k"]
    # CSS is translated to XPath: whatever it becomes is evaluated the same way.
    assert compile_selection("css", "p:contains('ok')").apply(page)[0].text == "ok"


class Service:
    def __init__(self, tmp_path: Path) -> None:
        settings = launch_settings(tmp_path, WFCRAWL_PUSH_ENABLED=True, WFCRAWL_PUSH_SECRET=SECRET,
                                   WFCRAWL_SSRF_ALLOWED_NETWORKS=[])
        self.store = MemoryExecutionStore()
        self.launcher = make_launcher(tmp_path, self.store, MemoryWorkflowRegistry(), WFCRAWL_SSRF_ALLOWED_NETWORKS=[])
        push = PushEndpoint(self.launcher, push_verifier(settings), PushConfig.from_settings(settings))
        self.http = web_server(tmp_path, self.launcher, [f"ci:{key_digest(KEY)}"], push=push,
                               WFCRAWL_API_RATE_LIMIT=60_000, WFCRAWL_API_RATE_BURST=10_000)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, _, payload = http("POST", self.http.url + path, headers={"Authorization": f"Bearer {KEY}"}, raw=raw)
        return status, payload

    def stop(self) -> None:
        self.http.stop()
        self.launcher.shutdown()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    s = Service(tmp_path_factory.mktemp("hostile-api"))
    yield s
    s.stop()


def _body(case: Case, field: str = "document") -> Any:
    """The JSON body carrying the document; bytes that are not UTF-8 go raw, as an attacker would send them."""
    if isinstance(case.document, bytes):
        return b'{"' + field.encode() + b'": "' + case.document.replace(b"\\", b"\\\\").replace(b'"', b'\\"') \
            .replace(b"\n", b"\\n") + b'"}'
    return {field: case.document}


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_api_answers_every_hostile_document_without_a_5xx(case: Case, service: Service) -> None:
    status, body = service.post("/v1/validate", _body(case))
    if isinstance(case.document, bytes):
        assert status == 400 and body["detail"].startswith("the body is not JSON"), body
    else:
        assert status == 200, body
        size = len(case.document.encode("utf-8", "surrogatepass"))
        if size > service.launcher.config.max_document_bytes:
            assert body["problems"] == [{"line": 1, "column": 1, "path": "$", "kind": "policy", "message":
                                         f"the workflow document is {size} bytes; the limit is 262144"}]
        elif case.name == "wf.yaml":
            found = [f"{p['line']}:{p['column']}: {p['path']}: {p['message']}" for p in body["problems"]]
            assert found == list(case.expected)
            assert body["valid"] is (not case.expected)
    # Launching it: refused (invalid, or its start URL does not resolve), nothing created.
    status, body = service.post("/v1/executions", _body(case))
    assert status in (400, 422), body
    # Pub/Sub push: refused (400, dead-lettered after the subscription's attempts).
    message = case.document if isinstance(case.document, bytes) else json.dumps({"document": case.document}).encode()
    envelope = {"message": {"data": base64.b64encode(message).decode(), "messageId": f"m-{case.id}"},
                "subscription": "projects/p/subscriptions/s"}
    status, body = service.post(f"/pubsub/push?token={SECRET}", envelope)
    assert status == 400, body
    assert service.store.list() == []
