"""Exact behaviour of the fixture server (tests/mockserver.py) and its documented data."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urldefrag, urlencode, urljoin, urlsplit

import pytest
from parsel import Selector

from tests.mockserver import SITES_DIR, MockServer, RequestRecord

HTML = "text/html; charset=utf-8"


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    """This module's own server (overrides conftest's): these tests read and clear its log."""
    with MockServer() as s:
        yield s


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx response


def fetch(
    url: str, data: bytes | None = None, opener: urllib.request.OpenerDirector | None = None,
    method: str | None = None,
) -> tuple[int, Message, bytes]:
    """(status, headers, body); does not follow redirects unless given a following opener."""
    opener = opener or urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with opener.open(request, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def get_json(server: MockServer, path: str) -> tuple[int, Any]:
    status, headers, body = fetch(server.url_for(path))
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


def md_json_block(text: str, heading: str) -> Any:
    match = re.search(re.escape(heading) + r"\n.*?```json\n(.*?)```", text, re.S)
    assert match, heading
    return json.loads(match.group(1))


# --------------------------------------------------------------------------- static files


def test_static_file(server: MockServer) -> None:
    expected = (SITES_DIR / "shop" / "index.html").read_bytes()
    status, headers, body = fetch(server.url_for("/shop/index.html"))
    assert (status, headers["Content-Type"], body) == (200, HTML, expected)
    assert int(headers["Content-Length"]) == len(expected)
    assert b'<ul class="categories">' in body

    assert fetch(server.url_for("/shop/"))[2] == expected  # directory index
    status, headers, _ = fetch(server.url_for("/shop"))
    assert (status, headers["Location"]) == (301, "/shop/")
    status, headers, _ = fetch(server.url_for("/shop/EXPECTED.md"))
    assert (status, headers["Content-Type"]) == (200, "text/markdown; charset=utf-8")


@pytest.mark.parametrize("path", [
    "/shop/missing.html", "/robots.txt", "/", "/README.md", "/shop/category/",
    "/shop/%2e%2e/mockserver.py", "/nosuch/index.html", "/broken/404", "/broken/nope",
    "/slow/11", "/account/order/A-1/x",
])
def test_not_found(server: MockServer, path: str) -> None:
    status, headers, body = fetch(server.url_for(path))
    assert (status, headers["Content-Type"]) == (404, HTML)
    assert b"<h1>404 Not Found</h1>" in body


def test_head_and_wrong_method(server: MockServer) -> None:
    size = (SITES_DIR / "shop" / "about.html").stat().st_size
    status, headers, body = fetch(server.url_for("/shop/about.html"), method="HEAD")
    assert (status, int(headers["Content-Length"]), body) == (200, size, b"")
    status, headers, _ = fetch(server.url_for("/shop/about.html"), data=b"x=1")
    assert (status, headers["Allow"]) == (405, "GET")


def test_keep_alive_and_stop() -> None:
    with MockServer() as s:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        for path in ["/shop/index.html", "/slow/1", "/api/products?page=2"]:
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200 and resp.version == 11
            resp.read()
        assert s.paths() == ["/shop/index.html", "/slow/1", "/api/products?page=2"]
        port = s.port
    with pytest.raises(OSError):  # the idle keep-alive connection was closed by stop()
        conn.request("GET", "/shop/index.html")
        conn.getresponse()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/shop/index.html", timeout=2)


def test_subprocess_mode() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(SITES_DIR.parent / "mockserver.py")], stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert re.fullmatch(r"URL=http://127\.0\.0\.1:\d+", line)
        status, headers, _ = fetch(line.removeprefix("URL=") + "/shop/index.html")
        assert (status, headers["Content-Type"]) == (200, HTML)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


# --------------------------------------------------------------------------- JSON API


def test_api_pagination(server: MockServer) -> None:
    pages = {}
    for n in range(1, 5):
        status, data = get_json(server, f"/api/products?page={n}")
        assert status == 200
        pages[n] = data
    assert [(d["page"], d["has_next"], [i["id"] for i in d["items"]]) for d in pages.values()] == [
        (1, True, [1, 2]), (2, True, [3, 4]), (3, False, [5, 6]), (4, False, []),
    ]
    assert pages[1]["items"][0] == {
        "id": 1, "name": "Widget Alpha", "price": 12.5, "url": "/api/product/1", "tags": ["tools", "sale"],
    }
    assert get_json(server, "/api/products") == (200, pages[1])
    assert get_json(server, "/api/products?page=x") == (400, {"error": "page must be a positive integer"})
    assert get_json(server, "/api/product/3") == (200, {
        "id": 3, "name": "Gadget Gamma", "price": 23.75,
        "specs": {"weight": "300 g", "battery": "2000 mAh"},
        "seller": {"id": "bolt", "name": "Bolt Gadgets", "rating": 3.9},
    })
    assert get_json(server, "/api/product/7") == (404, {"error": "not found"})


def test_api_doc_matches_server(server: MockServer) -> None:
    doc = (SITES_DIR / "API.md").read_text()
    blocks = re.findall(r"### `GET (\S+)`(?: -> (\d+))?\n\n```json\n(.*?)```", doc, re.S)
    assert len(blocks) == 12
    for path, status, text in blocks:
        assert get_json(server, path) == (int(status or 200), json.loads(text)), path


# --------------------------------------------------------------------------- login flow


def login_form(server: MockServer, opener: urllib.request.OpenerDirector) -> dict[str, str]:
    status, _, body = fetch(server.url_for("/login"), opener=opener)
    assert status == 200
    form = Selector(text=body.decode()).css("form#login")
    assert form.attrib["action"] == "/login" and form.attrib["method"] == "post"
    return {i.attrib["name"]: i.attrib.get("value", "") for i in form.css("input")}


def test_login_flow(server: MockServer) -> None:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))  # follows redirects
    status, _, body = fetch(server.url_for("/account"), opener=opener)
    assert status == 200 and b'<form id="login"' in body  # redirected to /login

    fields = login_form(server, opener)
    assert set(fields) == {"csrf_token", "__VIEWSTATE", "username", "password"}
    assert re.fullmatch(r"[0-9a-f]{32}", fields["csrf_token"])
    assert fields != login_form(server, opener)  # a new token per GET

    server.clear()
    data = urlencode({**fields, "username": "demo", "password": "s3cret", "action": "login"}).encode()
    status, _, body = fetch(server.url_for("/login"), data=data, opener=opener)
    assert status == 200
    page = Selector(text=body.decode())
    assert page.css("h1.user::text").get() == "demo"
    assert page.css("li.order span.id::text").getall() == ["A-1", "A-2"]
    assert page.css("li.order span.total::text").getall() == ["10.00", "25.50"]
    assert page.css("a.order-link::attr(href)").getall() == ["/account/order/A-1", "/account/order/A-2"]
    assert server.paths() == ["/login", "/account"]
    assert [c.name for c in jar] == ["session"]
    assert re.fullmatch(r"session=[0-9a-f]{32}", server.requests[-1].headers["Cookie"])

    status, _, body = fetch(server.url_for("/account/order/A-2"), opener=opener)
    order = Selector(text=body.decode())
    assert status == 200
    assert order.css("h1.order-id::text").get() == "A-2"
    assert order.css("span.total::text").get() == "25.50"
    assert order.css("li.line span.item::text").getall() == ["Phone case"]
    assert fetch(server.url_for("/account/order/Z-9"), opener=opener)[0] == 404

    # without the cookie: redirected to the login page
    for path in ["/account", "/account/order/A-1"]:
        status, headers, _ = fetch(server.url_for(path))
        assert (status, headers["Location"]) == (302, "/login")


@pytest.mark.parametrize(("override", "reason"), [
    ({"csrf_token": "0" * 32}, "invalid csrf token"),
    ({"csrf_token": ""}, "invalid csrf token"),
    ({"__VIEWSTATE": "tampered"}, "invalid viewstate"),
    ({"password": "wrong"}, "invalid credentials"),
    ({"username": "admin"}, "invalid credentials"),
])
def test_login_rejected(server: MockServer, override: dict[str, str], reason: str) -> None:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    fields = {**login_form(server, opener), "username": "demo", "password": "s3cret", **override}
    status, headers, body = fetch(server.url_for("/login"), data=urlencode(fields).encode(), opener=opener)
    page = Selector(text=body.decode())
    assert (status, headers["Content-Type"]) == (403, HTML)
    assert page.css("h1.error::text").get() == "Login failed"
    assert page.css("p.reason::text").get() == reason
    assert "Set-Cookie" not in headers and len(jar) == 0


def test_login_success_response(server: MockServer) -> None:
    opener = urllib.request.build_opener(_NoRedirect)
    fields = {**login_form(server, opener), "username": "demo", "password": "s3cret"}
    status, headers, _ = fetch(server.url_for("/login"), data=urlencode(fields).encode())
    assert (status, headers["Location"]) == (302, "/account")
    assert re.fullmatch(r"session=[0-9a-f]{32}; Path=/; HttpOnly", headers["Set-Cookie"])


# --------------------------------------------------------------------------- broken pages


def test_broken_index(server: MockServer) -> None:
    _, _, body = fetch(server.url_for("/broken/index.html"))
    assert Selector(text=body.decode()).css("ul.links a::attr(href)").getall() == [
        f"/broken/{n}" for n in ["binary", "empty", "markup", "huge", "loop", "404", "500", "json-bad", "ok"]
    ]


def test_broken_pages(server: MockServer) -> None:
    status, headers, body = fetch(server.url_for("/broken/binary"))
    assert (status, headers["Content-Type"], body[:8], len(body)) == (200, "image/png", b"\x89PNG\r\n\x1a\n", 69)

    status, headers, body = fetch(server.url_for("/broken/empty"))
    assert (status, headers["Content-Type"], headers["Content-Length"], body) == (200, HTML, "0", b"")

    status, _, body = fetch(server.url_for("/broken/markup"))
    page = Selector(text=body.decode("utf-8", "replace"))
    assert status == 200
    assert page.css("h1.name::text").getall() == ["Still here"]
    assert page.css("a::attr(href)").getall() == ["/broken/ok"]
    with pytest.raises(UnicodeDecodeError):
        body.decode()

    status, headers, body = fetch(server.url_for("/broken/huge"))
    assert (status, headers["Content-Type"], len(body)) == (200, HTML, 3_060_136)
    assert int(headers["Content-Length"]) == len(body)
    assert body.count(b'<p class="row">') == 30_000 and b"<a " not in body
    assert Selector(text=body.decode()).css("h1.name::text").get() == "Huge page"

    status, _, body = fetch(server.url_for("/broken/500"))
    assert (status, b"<h1>500 Internal Server Error</h1>" in body) == (500, True)
    assert fetch(server.url_for("/broken/500"))[0] == 500

    status, headers, body = fetch(server.url_for("/broken/json-bad"))
    assert (status, headers["Content-Type"]) == (200, "application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)

    status, headers, body = fetch(server.url_for("/broken/ok"))
    assert (status, headers["Content-Type"]) == (200, HTML)
    assert Selector(text=body.decode()).css("h1.name::text").get() == "OK page"


def test_redirect_loop(server: MockServer) -> None:
    path = "/broken/loop"
    for n in range(1, 6):
        status, headers, _ = fetch(server.url_for(path))
        assert (status, headers["Location"]) == (302, f"/broken/loop?n={n}")
        path = headers["Location"]
    server.clear()
    following = urllib.request.build_opener()
    status, _, _ = fetch(server.url_for("/broken/loop"), opener=following)
    assert status == 302  # urllib gave up: "infinite loop"
    assert server.paths() == ["/broken/loop"] + [f"/broken/loop?n={n}" for n in range(1, 11)]


# --------------------------------------------------------------------------- slow pages, log, echo


def test_slow_pages(server: MockServer) -> None:
    _, _, body = fetch(server.url_for("/slow/index.html"))
    assert Selector(text=body.decode()).css("ul.links a::attr(href)").getall() == [
        f"/slow/{n}" for n in range(1, 11)
    ]
    _, _, body = fetch(server.url_for("/slow/7"))
    assert Selector(text=body.decode()).css("h1.name::text").get() == "Slow page 7"
    start = time.monotonic()
    assert fetch(server.url_for("/slow/2?delay=0.3"))[0] == 200
    assert time.monotonic() - start >= 0.3


def test_request_log(server: MockServer) -> None:
    server.clear()
    assert server.requests == [] and server.paths() == []
    before = time.monotonic()
    fetch(server.url_for("/slow/1"))
    fetch(server.url_for("/shop/missing.html"))
    fetch(server.url_for("/echo?x=1"), data=b"a=1&b=2")
    after = time.monotonic()
    records = server.requests
    assert server.paths() == ["/slow/1", "/shop/missing.html", "/echo?x=1"]
    assert [r.method for r in records] == ["GET", "GET", "POST"]
    times = [r.time for r in records]
    assert before <= times[0] <= times[1] <= times[2] <= after
    assert records[2].body == b"a=1&b=2" and records[0].body == b""
    assert records[2].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert records[0].headers["User-Agent"].startswith("Python-urllib/")
    method, path, t, _headers, _body = records[0]  # plain tuples too
    assert isinstance(records[0], RequestRecord) and (method, path, t) == ("GET", "/slow/1", times[0])
    records.clear()  # a snapshot: the server's log is unaffected
    assert len(server.requests) == 3
    server.clear()
    assert server.requests == []


def test_echo(server: MockServer) -> None:
    request = urllib.request.Request(
        server.url_for("/echo?q=a&q=b"), data=b'{"k": 1}', method="PUT",
        headers={"Cookie": "a=1; session=xyz", "X-Test": "yes"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        data = json.loads(resp.read())
    assert data["method"] == "PUT"
    assert data["path"] == "/echo?q=a&q=b"
    assert data["query"] == {"q": ["a", "b"]}
    assert data["cookies"] == {"a": "1", "session": "xyz"}
    assert data["headers"]["X-Test"] == "yes"
    assert data["body"] == '{"k": 1}'


# --------------------------------------------------------------------------- shop data vs EXPECTED.md

SHOP_PAGES = {
    "/shop/index.html", "/shop/about.html",
    "/shop/category/laptops-1.html", "/shop/category/laptops-2.html", "/shop/category/phones-1.html",
    *(f"/shop/product/{sku}.html" for sku in
      ["lp-001", "lp-002", "lp-003", "lp-004", "lp-005", "ph-001", "ph-002", "ph-003"]),
    "/shop/seller/acme.html", "/shop/seller/bolt.html",
}


def page(server: MockServer, path: str) -> Selector:
    status, headers, body = fetch(server.url_for(path))
    assert (status, headers["Content-Type"]) == (200, HTML), path
    return Selector(text=body.decode())


def test_shop_link_graph(server: MockServer) -> None:
    seen: set[str] = set()
    external: set[str] = set()
    queue = ["/shop/index.html"]
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for href in page(server, path).css("a::attr(href)").getall():
            url = urldefrag(urljoin(server.url_for(path), href.strip())).url
            if not url.startswith(server.url):
                external.add(url)
            else:
                queue.append(urlsplit(url).path)
    assert seen == SHOP_PAGES
    assert external == {"http://example.com/x"}


def test_shop_expected_data(server: MockServer) -> None:
    doc = (SITES_DIR / "shop" / "EXPECTED.md").read_text()

    cards = []
    for path in sorted(p for p in SHOP_PAGES if "/category/" in p):
        for card in page(server, path).css("div.product-card"):
            href = card.css("a.title::attr(href)").get("")
            cards.append({
                "page": path,
                "name": card.css("a.title::text").get("").strip(),
                "href": href,
                "url": urldefrag(urljoin(path, href.strip())).url,
                "price": card.css("span.price::text").get(),
            })
    assert cards == md_json_block(doc, "### Cards (JSON)")

    products = []
    for path in sorted(p for p in SHOP_PAGES if "/product/" in p):
        sel = page(server, path)
        products.append({
            "url": path,
            "name": sel.css("h1.name::text").get("").strip(),
            "price": sel.css("span.price::text").get(),
            "sku": sel.css("span.sku::text").get(),
            "available": sel.css("span.stock::attr(data-available)").get(),
            "stock": sel.css("span.stock::text").get(),
            "released": sel.css("time.released::attr(datetime)").get(),
            "released_text": sel.css("time.released::text").get(),
            "category": urljoin(path, sel.css("a.category::attr(href)").get()),
            "attributes": {
                tr.css("th::text").get("").strip(): tr.css("td::text").get("").strip()
                for tr in sel.css("table.attributes tr")
            },
            "specs": dict(
                zip(sel.css("dl.specs dt::text").getall(), sel.css("dl.specs dd::text").getall(), strict=True)
            ),
            "seller": {
                "name": sel.css("div.seller span.name::text").get(),
                "rating": sel.css("div.seller span.rating::text").get(),
                "profile": sel.css("div.seller a.profile::attr(href)").get(),
            },
            "tags": sel.css("ul.tags li::text").getall(),
            "reviews": [
                {"author": r.css("span.author::text").get(), "stars": r.css("span.stars::text").get(),
                 "text": r.css("p.text::text").get()}
                for r in sel.css("ul.reviews li.review")
            ],
            "related": [urljoin(path, h) for h in sel.css("div.related a::attr(href)").getall()],
        })
    assert products == md_json_block(doc, "### Products (JSON)")
    for path in SHOP_PAGES:
        assert 2000 <= len(page(server, path).get()) <= 4000 or "/product/" not in path
