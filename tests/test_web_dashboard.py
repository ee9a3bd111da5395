"""The dashboard's sign-in: API key -> signed session cookie (flags, expiry, key changes),
CSRF on every browser POST, sign-out, the executions page, problems shown as pages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from parsel import Selector

from tests.launcher_support import make_launcher, problem, web_server
from wfcrawl.launcher.registry import MemoryWorkflowRegistry
from wfcrawl.storage.executions import Execution, MemoryExecutionStore
from wfcrawl.web.auth import key_digest

ADMIN = "wfk_dashboard-admin-0123456789abcdefghijklmnopqrstu"
VIEWER = "wfk_dashboard-viewer-0123456789abcdefghijklmnopqrst"
KEYS = [f"admin:{key_digest(ADMIN)}", f"viewer:{key_digest(VIEWER)}:read"]
SECRET = "a-secret-shared-by-the-instances-of-this-test"
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)


@dataclass
class Dashboard:
    url: str
    store: MemoryExecutionStore
    stop: Any

    def browser(self) -> requests.Session:
        session = requests.Session()
        session.headers["Accept"] = "text/html"
        return session

    def csrf(self, browser: requests.Session, path: str = "/login") -> str:
        page = browser.get(self.url + path, allow_redirects=False)
        token = Selector(page.text).css('input[name="csrf_token"]::attr(value)').get()
        assert token, page.text
        return token

    def sign_in(self, browser: requests.Session, key: str, next: str = "/") -> requests.Response:
        token = self.csrf(browser)
        return browser.post(self.url + "/login", data={"csrf_token": token, "api_key": key, "next": next},
                            allow_redirects=False)


def serve(tmp_path: Path, keys: list[str] = KEYS, **settings: Any) -> Dashboard:
    store = MemoryExecutionStore()
    launcher = make_launcher(tmp_path, store, MemoryWorkflowRegistry())
    server = web_server(tmp_path, launcher, keys, WFCRAWL_WEB_SECRET_KEY=SECRET, **settings)

    def stop() -> None:
        server.stop()
        launcher.shutdown()

    return Dashboard(server.url, store, stop)


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    served = serve(tmp_path)
    yield served
    served.stop()


def cookie_attributes(response: requests.Response) -> list[str]:
    header = response.headers["set-cookie"]
    name_value, *attributes = header.split("; ")
    assert name_value.startswith("wfcrawl_session=")
    return attributes


def rows(page: str) -> list[tuple[str, ...]]:
    return [tuple(" ".join(" ".join(td.css("::text").getall()).split()) for td in tr.css("td"))
            for tr in Selector(page).css("table.list tbody tr")]


def test_sign_in_with_an_api_key_then_the_executions_newest_first(dashboard: Dashboard) -> None:
    errors = {"code": "error_count_above_limit", "message": "closed after CLOSESPIDER_ERRORCOUNT errors", "errors": 3}
    never = {"code": "node_never_matched", "message": "node colours of phase product matched nothing on any of its "
             "8 page(s)", "phase": "product", "node": "colours", "pages": 8}
    for i, (status, reason, reasons) in enumerate([
        ("finished", "finished", []),  # a record from before outcomes: shown as succeeded
        ("failed", "closespider_errorcount", [errors]), ("degraded", "finished", [never]), ("running", None, []),
    ]):
        dashboard.store.create(Execution(f"e{i}", "shop", status=status, finish_reason=reason, reasons=reasons,
                                         created_at=T0 + timedelta(minutes=i)))
    browser = dashboard.browser()
    front = browser.get(dashboard.url + "/", allow_redirects=False)
    assert (front.status_code, front.headers["location"]) == (303, "/login")

    form = browser.get(dashboard.url + "/login", allow_redirects=False)
    assert form.status_code == 200 and "Content-Security-Policy" in form.headers
    # A visitor's (anonymous) session carries the form's CSRF token; over http, no Secure.
    assert cookie_attributes(form) == ["HttpOnly", "Max-Age=28800", "Path=/", "SameSite=lax"]
    anonymous = browser.cookies["wfcrawl_session"]

    token = Selector(form.text).css('input[name="csrf_token"]::attr(value)').get()
    wrong = browser.post(dashboard.url + "/login", data={"csrf_token": token, "api_key": ADMIN[:-1] + "x"},
                         allow_redirects=False)
    assert (wrong.status_code, Selector(wrong.text).css(".error::text").get()) == (401, "This API key is not valid.")
    assert "set-cookie" not in wrong.headers

    signed = browser.post(dashboard.url + "/login", data={"csrf_token": token, "api_key": ADMIN, "next": "/"},
                          allow_redirects=False)
    assert (signed.status_code, signed.headers["location"]) == (303, "/")
    assert cookie_attributes(signed) == ["HttpOnly", "Max-Age=28800", "Path=/", "SameSite=lax"]
    assert browser.cookies["wfcrawl_session"] != anonymous  # a new session on sign-in (no fixation)

    page = browser.get(dashboard.url + "/", allow_redirects=False)
    assert page.status_code == 200
    assert rows(page.text) == [
        ("", "e3", "shop", "running", "2026-06-01 08:03:00 UTC", "", "0", "0", "0"),
        ("", "e2", "shop", "degraded node_never_matched node colours of phase product matched nothing on any of "
         "its 8 page(s)", "2026-06-01 08:02:00 UTC", "", "0", "0", "0"),
        ("", "e1", "shop", "failed error_count_above_limit closed after CLOSESPIDER_ERRORCOUNT errors",
         "2026-06-01 08:01:00 UTC", "", "0", "0", "0"),
        ("", "e0", "shop", "succeeded", "2026-06-01 08:00:00 UTC", "", "0", "0", "0"),
    ]
    assert Selector(page.text).css("td span.status::attr(class)").getall() == [
        "status status-running", "status status-degraded", "status status-failed", "status status-succeeded"]
    assert Selector(page.text).css("select#status option::attr(value)").getall() == [
        "", "queued", "running", "succeeded", "degraded", "failed", "cancelled"]
    assert Selector(page.text).css(".who span::text").get() == "admin"
    failed = browser.get(dashboard.url + "/?status=failed", allow_redirects=False)
    assert [r[1] for r in rows(failed.text)] == ["e1"]
    degraded = browser.get(dashboard.url + "/?status=degraded", allow_redirects=False)
    assert [r[1] for r in rows(degraded.text)] == ["e2"]
    assert [(e.actor, e.action, e.target) for e in dashboard.store.list_audit()] == [
        ("key:admin", "session.signed_in", "admin")]

    token = Selector(page.text).css('.who input[name="csrf_token"]::attr(value)').get()
    out = browser.post(dashboard.url + "/logout", data={"csrf_token": token}, allow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert 'wfcrawl_session=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert browser.get(dashboard.url + "/", allow_redirects=False).status_code == 303
    assert [e.action for e in dashboard.store.list_audit()] == ["session.signed_out", "session.signed_in"]


def test_every_browser_post_needs_its_sessions_csrf_token(dashboard: Dashboard) -> None:
    refused = problem(403, "the form's CSRF token is missing or wrong: reload the page and try again", "csrf")
    stranger = requests.post(dashboard.url + "/login", data={"api_key": ADMIN})  # no session, no token
    assert (stranger.status_code, stranger.json()) == (403, refused)

    browser = dashboard.browser()
    token = dashboard.csrf(browser)
    other = dashboard.browser()
    other_token = dashboard.csrf(other)
    assert other_token != token
    for data in ({"api_key": ADMIN}, {"api_key": ADMIN, "csrf_token": other_token}):
        answer = browser.post(dashboard.url + "/login", data=data, allow_redirects=False)
        assert answer.status_code == 403  # a page for the browser
        assert Selector(answer.text).css("h1::text").get() == "The form is not from this site or has expired"
    assert browser.get(dashboard.url + "/", allow_redirects=False).status_code == 303  # not signed in

    assert dashboard.sign_in(browser, ADMIN).status_code == 303
    assert browser.post(dashboard.url + "/logout", allow_redirects=False).status_code == 403
    token = dashboard.csrf(browser, "/")
    # Scripts (htmx) send the token as a header.
    out = browser.post(dashboard.url + "/logout", headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/login")


def test_a_session_ends_when_tampered_expired_or_its_key_replaced(tmp_path: Path) -> None:
    first = serve(tmp_path, WFCRAWL_WEB_SESSION_MAX_AGE=2)
    try:
        browser = first.browser()
        assert first.sign_in(browser, VIEWER).status_code == 303
        page = browser.get(first.url + "/", allow_redirects=False)
        assert Selector(page.text).css(".who span .tag::text").get() == "read-only"
        cookie = browser.cookies["wfcrawl_session"]
        assert cookie is not None
        tampered = first.browser()
        tampered.cookies.set("wfcrawl_session", cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))
        assert tampered.get(first.url + "/", allow_redirects=False).status_code == 303
        time.sleep(3.1)  # past WFCRAWL_WEB_SESSION_MAX_AGE (whole seconds)
        assert browser.get(first.url + "/", allow_redirects=False).status_code == 303
    finally:
        first.stop()

    # Instances with the same secret share sessions, while the key is the same.
    same, twin = serve(tmp_path), serve(tmp_path)
    replaced = serve(tmp_path, keys=[KEYS[0], f"viewer:{key_digest('wfk_a-new-viewer-key')}"])
    try:
        browser = same.browser()
        assert same.sign_in(browser, VIEWER).status_code == 303
        other = requests.Session()  # the same cookie, on other instances
        other.cookies.set("wfcrawl_session", browser.cookies["wfcrawl_session"])
        assert other.get(twin.url + "/", allow_redirects=False).status_code == 200
        # ... where "viewer" now has another key: that session has ended.
        assert other.get(replaced.url + "/", allow_redirects=False).status_code == 303
    finally:
        for served in (same, twin, replaced):
            served.stop()


def test_after_sign_in_only_a_local_page(dashboard: Dashboard) -> None:
    for asked, location in [("/?status=failed", "/?status=failed"), ("//evil.example/", "/"),
                            ("https://evil.example/", "/"), ("/\\evil.example", "/")]:
        browser = dashboard.browser()
        answer = dashboard.sign_in(browser, ADMIN, next=asked)
        assert (answer.status_code, answer.headers["location"]) == (303, location)
    # Signed in, /login sends the browser on.
    login = browser.get(dashboard.url + "/login?next=/", allow_redirects=False)
    assert (login.status_code, login.headers["location"]) == (303, "/")


def test_problems_are_pages_for_browsers_and_json_for_others(dashboard: Dashboard) -> None:
    page = dashboard.browser().get(dashboard.url + "/nothing-here")
    assert (page.status_code, page.headers["content-type"]) == (404, "text/html; charset=utf-8")
    assert Selector(page.text).css("h1::text, main p::text").getall()[:3] == ["404", "Not Found", "nothing at /nothing-here"]
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["cache-control"] == "no-store"
    plain = requests.get(dashboard.url + "/nothing-here")
    assert (plain.status_code, plain.headers["content-type"], plain.json()) == (
        404, "application/problem+json", problem(404, "nothing at /nothing-here"))
    # The API answers problems, whatever the client accepts.
    api = dashboard.browser().get(dashboard.url + "/v1/workflows")
    assert (api.status_code, api.headers["content-type"]) == (401, "application/problem+json")
    assert requests.get(dashboard.url + "/static/htmx.min.js").text.startswith("var htmx=function()")
