"""The dashboard in a real browser (Playwright driving Debian's Chromium): sign in, launch
the demo workflow and watch it end without a page reload, a crawl that failed and why,
cancelling a slow crawl, a broken document's located problems.

Screenshots are saved as test artifacts: in the test's tmp dir, and in
``test-artifacts/`` when ``WFCRAWL_TEST_ARTIFACTS`` is set (a path, or ``1`` for
``test-artifacts/`` at the repository's root).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_service
from tests.launcher_support import make_launcher, web_server
from tests.test_web_dashboard import ADMIN, KEYS, SECRET
from wfcrawl.demo.site import serve as demo_site
from wfcrawl.launcher.registry import MemoryWorkflowRegistry
from wfcrawl.storage.executions import Execution
from wfcrawl.storage.sqlite.executions import SQLiteExecutionStore

pytestmark = pytest.mark.requires_browser

CHROMIUM = "/usr/bin/chromium"
DEMO = (ROOT / "workflows" / "demo.yaml").read_text()
#: The demo, one page a second: slow enough to be cancelled while it runs.
SLOW = DEMO.replace("name: demo\n", "name: slow_demo\n", 1).replace("rate_limit: {concurrency: 8}",
                                                                   "rate_limit: {delay: 1, concurrency: 1}", 1)
BROKEN = """name: broken
start_urls: [/]
phases:
  home:
    nodes:
      - type: extract_links
        css: "ul.categories a["
        marker: category
    transitions:
      - {marker: category, to: listing}
"""


def artifacts(tmp_path: Path) -> list[Path]:
    where = [tmp_path / "screenshots"]
    wanted = os.environ.get("WFCRAWL_TEST_ARTIFACTS")
    if wanted:
        where.append(ROOT / "test-artifacts" if wanted == "1" else Path(wanted))
    for path in where:
        path.mkdir(parents=True, exist_ok=True)
    return where


class Shots:
    def __init__(self, page: Any, where: list[Path]) -> None:
        self.page = page
        self.where = where
        self.taken: list[str] = []

    def __call__(self, name: str) -> None:
        first = self.where[0] / f"dashboard-{name}.png"
        self.page.screenshot(path=str(first), full_page=True)
        for other in self.where[1:]:
            shutil.copy(first, other / first.name)
        self.taken.append(first.name)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, SQLiteExecutionStore]]:
    require_service("Chromium", Path(CHROMIUM).exists(), "apt-get install chromium")
    store = SQLiteExecutionStore(tmp_path / "executions.sqlite3")
    registry = MemoryWorkflowRegistry(bundled=True)  # the bundled demo is there by name
    launcher = make_launcher(tmp_path, store, registry, WFCRAWL_LAUNCHER_MAX_CRAWLS=4)
    server = web_server(tmp_path, launcher, KEYS, WFCRAWL_WEB_SECRET_KEY=SECRET)
    with demo_site() as site:
        yield server.url, site, store
    server.stop()
    launcher.shutdown()
    store.close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        # Script errors and CSP refusals; not the 4xx answers pages give on purpose (a 422 editor page).
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not m.text.startswith(
            "Failed to load resource: the server responded with a status of 4") else None)
        page.on("dialog", lambda d: d.accept())  # the confirm() of cancel buttons
        yield page
        assert errors == []  # no CSP refusal, no script error
        browser.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Any, page: Any, timeout: float = 60) -> None:
    # Polled from here: the page's CSP forbids the eval that page.wait_for_function needs.
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(200)


def sign_in(page: Any, url: str) -> None:
    page.goto(url + "/")
    assert page.url == url + "/login"
    page.fill("#api_key", ADMIN)
    page.click("form[action='/login'] button")
    page.wait_for_url(url + "/")


def test_launch_the_demo_and_watch_it_end_live(served: Any, page: Any, tmp_path: Path) -> None:
    url, site, _store = served
    shot = Shots(page, artifacts(tmp_path))
    sign_in(page, url)
    shot("01-executions-empty")
    page.click("nav a:text('Workflows')")
    page.click("#workflows a:text('demo')")
    page.fill("#base_url", site)
    page.fill("#execution_id", "demo-run-1")
    shot("02-workflow-demo")
    page.click("#launch button")
    execution_id = "demo-run-1"
    page.wait_for_url(url + "/executions/demo-run-1")  # a stable link
    assert page.text_content(".flash") == f"Execution {execution_id} of demo started."
    # The page is never reloaded: this mark survives only in the same document.
    page.evaluate("window.wfcrawlMark = 1")
    page.wait_for_selector("#status:text('succeeded')", timeout=60_000)
    assert page.evaluate("window.wfcrawlMark") == 1
    assert page.text_content("#items") == "72"
    assert page.text_content("#pages") == "43"
    phases = page.eval_on_selector_all("#phases tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [row[:3] for row in phases] == [["home", "1", "0"], ["listing", "6", "36"], ["product", "36", "36"]]
    assert page.text_content("#outcome h2") == "Outcome: succeeded"
    assert page.locator("#last-items tbody tr").count() == 10
    shot("03-execution-demo-succeeded")
    page.goto(url + "/executions/demo-run-1#L3")  # a link to one log line
    assert page.get_attribute("#L3", "class") == "target"
    page.goto(url + "/executions/demo-run-1#item-2")  # and to one item
    assert page.get_attribute("#item-2", "class") == "target"
    page.click("nav a:text('Executions')")
    rows = page.eval_on_selector_all("table.executions tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")
    assert [(r[1], r[2], r[3].split()[0], r[6], r[7], r[8]) for r in rows] == [
        (execution_id, "demo", "succeeded", "43", "72", "0")]
    shot("04-executions")
    page.click("nav a:text('Audit log')")
    assert page.eval_on_selector_all("#audit tbody tr td:nth-child(3)", "cells => cells.map(c => c.textContent)") == [
        "execution.launched", "session.signed_in"]
    shot("05-audit")


def test_a_failed_crawl_says_why(served: Any, page: Any, tmp_path: Path) -> None:
    url, _site, _store = served
    shot = Shots(page, artifacts(tmp_path))
    sign_in(page, url)
    page.goto(url + "/workflows/demo")
    page.fill("#base_url", f"http://127.0.0.1:{closed_port()}")
    page.click("#launch button")
    page.wait_for_url(url + "/executions/*")
    execution_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#status:text('failed')", timeout=60_000)
    reasons = page.eval_on_selector_all("#outcome ul.reasons li code", "codes => codes.map(c => c.textContent)")
    assert reasons == ["all_start_requests_failed"]
    assert "all 1 start request(s) failed" in page.text_content("#outcome ul.reasons li")
    assert page.text_content("#pages") == "0"
    shot("06-execution-failed")
    page.goto(url + "/?status=failed")
    assert page.locator("table.executions tbody tr").count() == 1
    assert page.text_content("table.executions tbody td:nth-child(2)") == execution_id[:12] + "…"  # a uuid, shortened
    assert page.get_attribute("table.executions tbody td:nth-child(2) a", "title") == execution_id
    assert "all_start_requests_failed" in page.text_content("table.executions tbody tr")
    shot("07-executions-failed-filter")


def test_cancel_a_slow_crawl(served: Any, page: Any, tmp_path: Path) -> None:
    url, site, store = served
    shot = Shots(page, artifacts(tmp_path))
    sign_in(page, url)
    page.goto(url + "/workflows/new")
    page.fill("#document", SLOW)
    page.click("#editor button[value='save']")
    page.wait_for_url(url + "/workflows/slow_demo")
    assert page.text_content(".flash") == "Workflow slow_demo registered."
    page.fill("#base_url", site)
    page.click("#launch button")
    page.wait_for_url(url + "/executions/*")
    execution_id = page.url.rsplit("/", 1)[1]
    wait_for(lambda: int(page.text_content("#pages")) >= 2, page)  # live: no reload
    shot("08-execution-slow-running")
    page.click("#cancel")
    page.wait_for_url(url + f"/executions/{execution_id}")
    assert page.text_content(".flash") == f"Execution {execution_id} cancelled."
    page.wait_for_selector("#status:text('cancelled')", timeout=60_000)
    assert page.text_content("#outcome ul.reasons li") == "cancelled cancelled by an operator"
    shot("09-execution-cancelled")
    execution = store.get(execution_id)
    assert execution is not None and execution.status == "cancelled"
    assert [(e.actor, e.action, e.target) for e in store.list_audit(limit=3)] == [
        ("key:admin", "execution.cancelled", execution_id), ("key:admin", "execution.launched", execution_id),
        ("key:admin", "workflow.registered", "slow_demo")]


def test_a_broken_document_shows_its_located_problems(served: Any, page: Any, tmp_path: Path) -> None:
    url, _site, _store = served
    shot = Shots(page, artifacts(tmp_path))
    sign_in(page, url)
    page.click("nav a:text('Workflows')")
    page.click("a:text('Paste a document')")
    page.fill("#document", BROKEN)
    page.click("#editor button[value='validate']")
    problems = page.eval_on_selector_all("#problems li", "items => items.map(i => i.textContent.trim())")
    assert problems == [
        "<pasted>:2:14 $.start_urls[0] relative URL '/' needs base_url",
        "<pasted>:7:14 $.phases.home.nodes[0].css invalid CSS selector 'ul.categories a[': "
        "Expected ident or '*', got <EOF at 16>",
        "<pasted>:10:32 $.phases.home.transitions[0].to unknown phase 'listing'; phases: home",
    ]
    assert page.eval_on_selector_all("#source li.has-problem", "items => items.map(i => i.id)") == [
        "line-2", "line-7", "line-10"]
    assert page.text_content("#line-7 .inline-problem") == (
        " " * 13 + "^ $.phases.home.nodes[0].css: invalid CSS selector 'ul.categories a[': Expected ident or '*', "
        "got <EOF at 16>")
    assert page.locator("#document").input_value() == BROKEN
    shot("10-workflow-broken-document")


def test_workflows_schedules_and_fleet_pages(served: Any, page: Any, tmp_path: Path) -> None:
    url, _site, store = served
    shot = Shots(page, artifacts(tmp_path))
    sign_in(page, url)
    page.goto(url + "/workflows/new")
    page.fill("#document", DEMO.replace("name: demo\n", "name: nightly_demo\nschedule:\n  cron: \"30 5 * * *\"\n", 1))
    page.click("#editor button[value='save']")
    page.wait_for_url(url + "/workflows/nightly_demo")
    page.click("nav a:text('Workflows')")
    assert page.text_content("#workflows a:text('nightly_demo') >> xpath=../../td[3]").strip() == "30 5 * * * (UTC)"
    shot("11-workflows")
    page.click("nav a:text('Schedules')")
    assert page.text_content("#schedules tbody tr td:nth-child(6) .status") == "enabled"
    page.click("#schedules button:text('Disable')")
    page.wait_for_url(url + "/schedules")
    assert page.text_content(".flash") == "Schedule of nightly_demo disabled."
    assert page.text_content("#schedules tbody tr td:nth-child(6) .status") == "disabled"
    shot("12-schedules")
    assert [(e.action, e.target) for e in store.list_audit(limit=2)] == [
        ("schedule.disabled", "nightly_demo"), ("workflow.registered", "nightly_demo")]
    page.click("nav a:text('Fleet')")
    assert page.text_content("#not-configured h2") == "Not configured"
    shot("13-fleet-not-configured")


def test_select_all_and_cancel_together(served: Any, page: Any, tmp_path: Path) -> None:
    url, _site, store = served
    shot = Shots(page, artifacts(tmp_path))
    for name, status in (("queued1", "queued"), ("running1", "running"), ("done1", "succeeded")):
        store.create(Execution(name, "shop", status=status))
    sign_in(page, url)
    assert page.eval_on_selector_all("td.tick input", "boxes => boxes.map(b => b.value)") == ["running1", "queued1"]
    page.check("th.tick input")
    assert page.eval_on_selector_all("td.tick input", "boxes => boxes.map(b => b.checked)") == [True, True]
    shot("14-executions-selected")
    page.click("button:text('Cancel selected')")
    page.wait_for_url(url + "/")
    assert page.text_content(".flash") == "Cancelled 2 execution(s)"
    assert [store.get(n).status for n in ("queued1", "running1", "done1")] == ["cancelled", "cancelled", "succeeded"]
