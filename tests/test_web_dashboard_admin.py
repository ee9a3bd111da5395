"""The dashboard's workflows (editor, located problems, register, launch), schedules
(enable/disable), audit log and fleet pages over HTTP. Every action is CSRF-checked,
refused to read-only keys and audited."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from parsel import Selector

from tests.conftest import require_service
from tests.launcher_support import make_launcher, web_server
from tests.test_web_dashboard import KEYS, SECRET, VIEWER, Dashboard
from tests.test_web_dashboard_pages import T0, flash_of, post, serve_pages, signed_in, table
from wfcrawl.launcher.registry import MemoryWorkflowRegistry
from wfcrawl.storage.executions import Execution, MemoryExecutionStore

SCHEDULED = """name: nightly
start_urls: [https://example.com/]
schedule:
  cron: "0 6 * * *"
phases:
  home:
    nodes:
      - {type: extract, item: page, fields: {title: title}}
"""



@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Dashboard, Any, MemoryWorkflowRegistry]]:
    yield from serve_pages(tmp_path)

def test_workflows_list_edit_validate_register_and_launch(served: Any) -> None:
    d, _, registry = served
    registry.put("nightly", SCHEDULED)
    browser = signed_in(d)
    rows = table(browser.get(d.url + "/workflows").text, "#workflows")
    assert rows[0] == ["api", "bundled with wfcrawl", "", "never run", "67"]
    assert [r for r in rows if r[0] == "nightly"] == [["nightly", "registered", "0 6 * * * (UTC)", "never run", "8"]]
    shown = Selector(browser.get(d.url + "/workflows/nightly").text)
    assert shown.css("#source li code::text").getall()[:2] == ["name: nightly", "start_urls: [https://example.com/]"]
    assert shown.css("#document::text").get() == SCHEDULED

    broken = SCHEDULED + "    transitions: [{marker: x, to: nowhere}]\n"
    answer = post(d, browser, "/workflows/edit", {"document": broken, "action": "validate"}, "/workflows/new")
    assert answer.status_code == 422
    page = Selector(answer.text)
    assert [" ".join("".join(li.css("::text").getall()).split()) for li in page.css("#problems li")] == [
        "<pasted>:9:28 $.phases.home.transitions[0].marker no node of phase 'home' produces links with marker 'x'",
        "<pasted>:9:35 $.phases.home.transitions[0].to unknown phase 'nowhere'; phases: home"]
    assert page.css("#source li.has-problem::attr(id)").getall() == ["line-9"]
    assert page.css("#line-9 .inline-problem .caret::text").getall() == [" " * 27 + "^", " " * 34 + "^"]
    valid = post(d, browser, "/workflows/edit", {"document": SCHEDULED, "action": "validate"}, "/workflows/new")
    assert Selector(valid.text).css("#message::text").get() == "Valid: workflow nightly, 1 phase(s)."
    assert post(d, browser, "/workflows/edit", {"document": broken, "action": "save"}).status_code == 422
    assert registry.get("nightly") == SCHEDULED
    changed = SCHEDULED.replace("title}", "title, h1: h1}")
    saved = post(d, browser, "/workflows/edit", {"document": changed, "action": "save", "name": "nightly"})
    assert (saved.status_code, saved.headers["location"]) == (303, "/workflows/nightly")
    assert registry.get("nightly") == changed
    assert flash_of(browser, d, "/workflows/nightly") == "Workflow nightly saved."
    assert [(e.action, e.target) for e in d.store.list_audit(limit=1)] == [("workflow.replaced", "nightly")]
    viewer = signed_in(d, VIEWER)
    assert post(d, viewer, "/workflows/edit", {"document": SCHEDULED, "action": "save"}).status_code == 403
    assert post(d, viewer, "/workflows/edit", {"document": SCHEDULED, "action": "validate"}).status_code == 200
    assert registry.get("nightly") == changed
    bad = post(d, browser, "/workflows/demo/launch", {"base_url": "ftp://example.com"}, "/workflows/demo")
    assert (bad.status_code, Selector(bad.text).css("main p::text").getall()[1]) == (
        422, "base_url must be an absolute http(s) URL (at most 2048 characters)")
    bad_id = post(d, browser, "/workflows/demo/launch", {"execution_id": "-x"}, "/workflows/demo")
    assert (bad_id.status_code, Selector(bad_id.text).css("main p::text").getall()[1]) == (
        422, "execution_id must be 1-64 letters, digits, '_' or '-' (not first)")
    assert post(d, viewer, "/workflows/demo/launch", {}, "/workflows/demo").status_code == 403
    assert d.store.list() == []


def test_schedules_show_next_runs_and_switch_on_and_off(served: Any) -> None:
    d, _, registry = served
    registry.put("nightly", SCHEDULED)
    d.store.create(Execution("s1", "nightly", status="succeeded", params={"origin": "schedule"}, created_at=T0))
    d.store.create(Execution("s2", "nightly", status="failed", params={"origin": "api"}, created_at=T0))
    browser = signed_in(d)
    now = datetime.now(timezone.utc)
    next_run = now.replace(hour=6, minute=0, second=0, microsecond=0)
    if next_run <= now:
        next_run += timedelta(days=1)
    assert table(browser.get(d.url + "/schedules").text, "#schedules") == [
        ["nightly", "0 6 * * * UTC", "latest", next_run.strftime("%Y-%m-%d %H:%M:%S UTC"),
         "succeeded 2026-06-01 08:00:00 UTC", "enabled Disable"]]
    off = post(d, browser, "/schedules/nightly", {"enabled": "false"}, "/schedules")
    assert (off.status_code, off.headers["location"]) == (303, "/schedules")
    assert registry.get("nightly") == SCHEDULED.replace('  cron: "0 6', '  enabled: false\n  cron: "0 6')
    assert table(browser.get(d.url + "/schedules").text, "#schedules")[0][3:] == [
        "—", "succeeded 2026-06-01 08:00:00 UTC", "disabled Enable"]
    assert post(d, browser, "/schedules/nightly", {"enabled": "true"}, "/schedules").status_code == 303
    assert registry.get("nightly") == SCHEDULED.replace('  cron: "0 6', '  enabled: true\n  cron: "0 6')
    assert [(e.action, e.target) for e in d.store.list_audit(limit=2)] == [
        ("schedule.enabled", "nightly"), ("schedule.disabled", "nightly")]
    registry.put("flow", SCHEDULED.replace("name: nightly", "name: flow").replace(
        'schedule:\n  cron: "0 6 * * *"', 'schedule: {cron: "0 6 * * *"}'))
    refused = post(d, browser, "/schedules/flow", {"enabled": "false"}, "/schedules")
    assert (refused.status_code, Selector(refused.text).css("main p::text").getall()[1]) == (
        409, "the schedule of flow is written in a way this page cannot edit: set schedule.enabled to false in "
        "the document (Workflows)")
    assert browser.post(d.url + "/schedules/nightly", data={"enabled": "false"}, allow_redirects=False).status_code == 403
    assert post(d, signed_in(d, VIEWER), "/schedules/nightly", {"enabled": "false"}, "/schedules").status_code == 403


def test_the_audit_log_lists_who_did_what(served: Any) -> None:
    d, _, _ = served
    d.store.create(Execution("a1", "shop", status="running"))
    browser = signed_in(d)
    post(d, browser, "/executions/a1/cancel", {})
    rows = table(browser.get(d.url + "/audit").text, "#audit")
    assert [r[1:4] for r in rows] == [["key:admin", "execution.cancelled", "a1"],
                                      ["key:admin", "session.signed_in", "admin"]]
    assert rows[0][4] == "workflow: shop"
    assert [r[3] for r in table(browser.get(d.url + "/audit?target=a1").text, "#audit")] == ["a1"]


def test_the_fleet_page_without_and_with_redis(served: Any, tmp_path: Path) -> None:
    d, _, _ = served
    browser = signed_in(d)
    page = Selector(browser.get(d.url + "/fleet").text)
    assert page.css("#not-configured h2::text").get() == "Not configured"

    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        client.ping()
        up = True
    except redis.ConnectionError:
        up = False
    require_service("Redis", up, "redis-server on 127.0.0.1:6379")
    prefix = f"dashtest-{uuid.uuid4().hex[:8]}"
    store = MemoryExecutionStore()
    store.create(Execution("f1", "shop", status="running"))
    launcher = make_launcher(tmp_path, store, MemoryWorkflowRegistry())
    server = web_server(tmp_path, launcher, KEYS, WFCRAWL_WEB_SECRET_KEY=SECRET, redis=client, redis_prefix=prefix)
    base = f"{prefix}:{{shop:f1}}:"
    try:
        client.zadd(base + "queue", {"r1": 0, "r2": 0, "r3": 0})
        client.zadd(base + "leases", {"r4": 1, "r5": 1})
        client.hset(base + "owners", mapping={"r4": "host/1/aa", "r5": "host/2/bb"})
        seconds, micros = client.time()
        client.set(base + "rate:example.com", (seconds + 30) * 1_000_000 + micros)
        other = Dashboard(server.url, store, None)
        s = Selector(signed_in(other).get(other.url + "/fleet").text)
        assert [s.css(f"#{i}::text").get() for i in ("running", "alive")] == ["1", "2"]
        assert " ".join(s.css(".run > p ::text").getall()) == "Queue  3  · leased  2"
        run = s.css(".run").get()
        assert table(run, "table:nth-of-type(1)")[:2] == [["host/1/aa", "", "1"], ["host/2/bb", "", "1"]]
        waits = table(run, ".grid > div:nth-child(2) table")
        assert [w[0] for w in waits] == ["example.com"] and 29.0 < float(waits[0][1].split()[0]) <= 30.0
    finally:
        for key in client.scan_iter(match=base.replace("{", "\\{").replace("}", "\\}") + "*"):
            client.delete(key)
        server.stop()
        launcher.shutdown()
