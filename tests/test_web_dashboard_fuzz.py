"""The dashboard's routes with random paths, queries and forms (hypothesis, bounded examples):
never a 5xx. The API is fuzzed by schemathesis from its OpenAPI document
(tests/test_launcher_api.py); the dashboard's routes are not in that document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.launcher_support import make_launcher, web_server
from tests.test_web_dashboard import ADMIN, KEYS, SECRET, Dashboard
from wfcrawl.launcher.registry import MemoryWorkflowRegistry
from wfcrawl.storage.executions import Execution, MemoryExecutionStore

text = st.text(max_size=40)
#: A few that name something, among random ones.
ids = st.one_of(st.sampled_from(["r1", "f1", "nope"]), text)
names = st.one_of(st.sampled_from(["nightly", "shop"]), text)
bounded = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))
SCHEDULED = 'name: nightly\nstart_urls: [https://example.com/]\nschedule:\n  cron: "0 6 * * *"\nphases:\n  home:\n' \
            "    nodes:\n      - {type: extract, item: page, fields: {title: title}}\n"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dashboard, requests.Session, str]]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz")
    store = MemoryExecutionStore()
    store.create(Execution("r1", "shop", status="running"))
    store.create(Execution("f1", "shop", status="failed", stats={"wfcrawl/launcher/samples": "x 1:2:3 :::"}))
    registry = MemoryWorkflowRegistry()  # nothing bundled: a random name never launches a crawl
    registry.put("nightly", SCHEDULED)
    launcher = make_launcher(tmp_path, store, registry)
    server = web_server(tmp_path, launcher, KEYS, WFCRAWL_WEB_SECRET_KEY=SECRET)
    d = Dashboard(server.url, store, None)
    browser = d.browser()
    assert d.sign_in(browser, ADMIN).status_code == 303
    yield d, browser, d.csrf(browser, "/")
    server.stop()
    launcher.shutdown()


def ok(response: requests.Response) -> None:
    assert response.status_code < 500, (response.request.method, response.request.url, response.text[:500])


def test_pages_with_random_paths_and_queries(signed: Any) -> None:
    d, browser, _ = signed
    calls: list[int] = []

    @bounded
    @given(status=text, workflow=text, q=text, page=st.one_of(st.integers(-5, 20_000), text), target=text,
           limit=st.one_of(st.integers(-5, 5000), text), execution_id=ids, name=names)
    def run(status: str, workflow: str, q: str, page: Any, target: str, limit: Any, execution_id: str,
            name: str) -> None:
        calls.append(1)
        ok(browser.get(d.url + "/", params={"status": status, "workflow": workflow, "q": q, "page": page},
                       allow_redirects=False))
        ok(browser.get(d.url + "/audit", params={"target": target, "limit": limit}, allow_redirects=False))
        for path in (f"/executions/{quote(execution_id, safe='')}", f"/executions/{quote(execution_id, safe='')}/live",
                     f"/workflows/{quote(name, safe='')}"):
            ok(browser.get(d.url + path, allow_redirects=False))

    run()
    assert len(calls) == 25
    for path in ("/workflows", "/workflows/new", "/schedules", "/fleet", "/executions/f1"):
        assert browser.get(d.url + path, allow_redirects=False).status_code == 200


def test_forms_with_random_fields(signed: Any) -> None:
    d, browser, token = signed
    statuses: set[int] = set()

    @bounded
    @given(execution_id=ids, name=names, document=text, action=st.one_of(st.sampled_from(["validate", "save"]), text),
           field=text, many=st.lists(ids, max_size=3))
    def run(execution_id: str, name: str, document: str, action: str, field: str, many: list[str]) -> None:
        e, n = quote(execution_id, safe=""), quote(name, safe="")
        forms: list[tuple[str, dict[str, Any]]] = [
            ("/executions/cancel", {"id": many, "back": field}),
            (f"/executions/{e}/cancel", {}),
            (f"/executions/{e}/rerun", {"document": field}),
            ("/workflows/edit", {"document": document, "action": action, "name": name}),
            (f"/workflows/{n}/launch", {"base_url": field}),
            (f"/schedules/{n}", {"enabled": field}),
        ]
        for path, data in forms:
            response = browser.post(d.url + path, data={"csrf_token": token, **data}, allow_redirects=False)
            ok(response)
            statuses.add(response.status_code)

    run()
    assert {303, 400, 404, 409, 422} <= statuses  # done, and refused in each way
