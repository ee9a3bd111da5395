"""Local HTTP server with fixture sites for wfcrawl tests (stdlib only).

In-process::

    with MockServer() as server:          # binds 127.0.0.1:0, serves in a daemon thread
        url = server.url_for("/shop/index.html")
        ...
        assert server.paths() == ["/shop/index.html"]

As a subprocess: ``python tests/mockserver.py`` prints ``URL=http://127.0.0.1:PORT`` on its
first stdout line and serves until killed.

Routes (full description in ``tests/sites/README.md``):

- ``/<site>/...``            static files from ``tests/sites/<site>/`` (``/shop/`` = demo shop)
- ``/api/products?page=N``, ``/api/product/<id>``, ``/api/seller/<id>``  JSON API (``tests/sites/API.md``)
- ``/login``, ``/account``, ``/account/order/<id>``      login flow (``tests/sites/LOGIN.md``)
- ``/catalog?page=N``       3 pages of products; past the last, the last page again
- ``/ticker``                a new number on every request, and a link to itself
- ``/search/search.aspx``    ASP.NET-style search with dependent selects (``tests/sites/search/README.md``)
- ``/broken/...``            binary, empty, bad markup, huge, redirect loop, 404, 500, bad JSON
- ``/slow/index.html``, ``/slow/<1..10>[?delay=SECONDS]``  tiny pages for rate-limit tests
- ``/echo``                  JSON description of the request (any method)
- ``/robots.txt``            always 404
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

SITES_DIR = Path(__file__).resolve().parent / "sites"

HTML = "text/html; charset=utf-8"
JSON = "application/json"
CONTENT_TYPES = {
    ".html": HTML,
    ".htm": HTML,
    ".json": JSON,
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".xml": "application/xml",
    ".png": "image/png",
}


class RequestRecord(NamedTuple):
    """One logged request; a plain tuple ``(method, path, time, headers, body)``."""

    method: str
    path: str  # path with query, exactly as in the request line
    time: float  # time.monotonic() when the request was read
    headers: dict[str, str]  # header names as sent; a repeated header keeps its last value
    body: bytes


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path with query, as sent
    path: str  # percent-decoded path, no query
    query: dict[str, list[str]]
    headers: dict[str, str]
    cookies: dict[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = HTML
    headers: list[tuple[str, str]] = field(default_factory=list)


def html_page(title: str, body: str, status: int = 200) -> Response:
    text = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n'
        f"  <title>{title}</title>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
    return Response(status, text.encode())


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data).encode(), JSON)


def redirect(location: str, status: int = 302) -> Response:
    resp = html_page("Redirect", f'  <a href="{location}">{location}</a>\n', status)
    resp.headers.append(("Location", location))
    return resp


def not_found() -> Response:
    return html_page("Not Found", "  <h1>404 Not Found</h1>\n", 404)


# --------------------------------------------------------------------------- JSON API

API_PRODUCTS: list[dict[str, Any]] = [
    {"id": 1, "name": "Widget Alpha", "price": 12.5, "tags": ["tools", "sale"],
     "specs": {"weight": "120 g", "color": "red"}, "seller": "acme"},
    {"id": 2, "name": "Widget Beta", "price": 8.0, "tags": ["tools"],
     "specs": {"weight": "95 g", "color": "blue"}, "seller": "acme"},
    {"id": 3, "name": "Gadget Gamma", "price": 23.75, "tags": [],
     "specs": {"weight": "300 g", "battery": "2000 mAh"}, "seller": "bolt"},
    {"id": 4, "name": "Gadget Delta", "price": 99.99, "tags": ["electronics", "new"],
     "specs": {"weight": "1.1 kg", "battery": "5000 mAh", "color": "black"}, "seller": "bolt"},
    {"id": 5, "name": "Gizmo Epsilon", "price": 5.0, "tags": ["sale"],
     "specs": {"weight": "40 g"}, "seller": "acme"},
    {"id": 6, "name": "Gizmo Zeta", "price": 42.0, "tags": ["electronics"],
     "specs": {"weight": "650 g", "color": "green"}, "seller": "bolt"},
]
API_SELLERS: dict[str, dict[str, Any]] = {
    "acme": {"id": "acme", "name": "Acme Electronics", "rating": 4.5},
    "bolt": {"id": "bolt", "name": "Bolt Gadgets", "rating": 3.9},
}
API_PAGE_SIZE = 2
API_PAGES = (len(API_PRODUCTS) + API_PAGE_SIZE - 1) // API_PAGE_SIZE


def api_products(server: MockServer, req: Request) -> Response:
    raw = req.arg("page", "1") or ""
    if not raw.isdigit() or int(raw) < 1:
        return json_response({"error": "page must be a positive integer"}, 400)
    page = int(raw)
    chunk = API_PRODUCTS[(page - 1) * API_PAGE_SIZE : page * API_PAGE_SIZE]
    items = [
        {"id": p["id"], "name": p["name"], "price": p["price"],
         "url": f"/api/product/{p['id']}", "tags": p["tags"]}
        for p in chunk
    ]
    return json_response({"page": page, "has_next": page < API_PAGES, "items": items})


def api_product(server: MockServer, req: Request, id: str) -> Response:
    for p in API_PRODUCTS:
        if str(p["id"]) == id:
            return json_response({
                "id": p["id"], "name": p["name"], "price": p["price"],
                "specs": p["specs"], "seller": API_SELLERS[p["seller"]],
            })
    return json_response({"error": "not found"}, 404)


def api_seller(server: MockServer, req: Request, id: str) -> Response:
    seller = API_SELLERS.get(id)
    if seller is None:
        return json_response({"error": "not found"}, 404)
    products = [p["id"] for p in API_PRODUCTS if p["seller"] == id]
    return json_response({**seller, "products": products})


# --------------------------------------------------------------------------- login flow

USERNAME = "demo"
PASSWORD = "s3cret"
VIEWSTATE = "dDwtMTA4MTg0NzQ5Nzs7Pg=="
ORDERS: dict[str, dict[str, Any]] = {
    "A-1": {"total": "10.00", "lines": [("USB cable", 2), ("Screen wipe", 1)]},
    "A-2": {"total": "25.50", "lines": [("Phone case", 1)]},
}


def login_form(server: MockServer, req: Request) -> Response:
    token = server.issue_csrf_token()
    return html_page("Log in", (
        "  <h1>Log in</h1>\n"
        '  <form id="login" action="/login" method="post">\n'
        f'    <input type="hidden" name="csrf_token" value="{token}">\n'
        f'    <input type="hidden" name="__VIEWSTATE" value="{VIEWSTATE}">\n'
        '    <label>Username <input type="text" name="username"></label>\n'
        '    <label>Password <input type="password" name="password"></label>\n'
        '    <button type="submit" name="action" value="login">Log in</button>\n'
        "  </form>\n"
    ))


def login_submit(server: MockServer, req: Request) -> Response:
    form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
    if not server.csrf_token_valid(form.get("csrf_token")):
        reason = "invalid csrf token"
    elif form.get("__VIEWSTATE") != VIEWSTATE:
        reason = "invalid viewstate"
    elif form.get("username") != USERNAME or form.get("password") != PASSWORD:
        reason = "invalid credentials"
    else:
        session = server.new_session()
        resp = redirect("/account")
        resp.headers.append(("Set-Cookie", f"session={session}; Path=/; HttpOnly"))
        return resp
    return html_page("Login failed", (
        '  <h1 class="error">Login failed</h1>\n'
        f'  <p class="reason">{reason}</p>\n'
        '  <a href="/login">Try again</a>\n'
    ), 403)


def account(server: MockServer, req: Request) -> Response:
    if not server.session_valid(req.cookies.get("session")):
        return redirect("/login")
    rows = "".join(
        f'    <li class="order"><span class="id">{oid}</span><span class="total">{o["total"]}</span>'
        f' <a class="order-link" href="/account/order/{oid}">details</a></li>\n'
        for oid, o in ORDERS.items()
    )
    return html_page("Your account", (
        f'  <h1 class="user">{USERNAME}</h1>\n'
        '  <h2>Orders</h2>\n'
        f'  <ul class="orders">\n{rows}  </ul>\n'
    ))


def order(server: MockServer, req: Request, id: str) -> Response:
    if not server.session_valid(req.cookies.get("session")):
        return redirect("/login")
    o = ORDERS.get(id)
    if o is None:
        return not_found()
    lines = "".join(
        f'    <li class="line"><span class="item">{item}</span><span class="qty">{qty}</span></li>\n'
        for item, qty in o["lines"]
    )
    return html_page(f"Order {id}", (
        f'  <h1 class="order-id">{id}</h1>\n'
        f'  <p>Total: <span class="total">{o["total"]}</span></p>\n'
        f'  <ul class="lines">\n{lines}  </ul>\n'
        '  <a href="/account">Back to account</a>\n'
    ))


# --------------------------------------------------------------------------- ASP.NET-style search

SEARCH_FORM = "ctl00$main$"
SEARCH_SECRET = b"mockserver-viewstate-key"


@lru_cache(maxsize=1)
def search_data() -> dict[str, Any]:
    """Authors and quotes of the search site (``tests/sites/search/data.json``)."""
    return json.loads((SITES_DIR / "search" / "data.json").read_text())  # type: ignore[no-any-return]


def _signed(data: Any) -> str:
    payload = base64.b64encode(json.dumps(data, sort_keys=True).encode()).decode()
    mac = hmac.new(SEARCH_SECRET, payload.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{payload}.{mac}"


def _unsigned(value: str | None) -> Any:
    """The data of a value _signed() made; None when it was changed (or missing)."""
    payload, _, mac = (value or "").rpartition(".")
    if not payload or not hmac.compare_digest(mac, hmac.new(SEARCH_SECRET, payload.encode(), hashlib.sha256).hexdigest()[:16]):
        return None
    return json.loads(base64.b64decode(payload))


def _search_tags(author: str) -> list[str]:
    tags = {t for q in search_data()["quotes"] if q["author"] == author for t in q["tags"]}
    return sorted(tags)


def _search_results(author: str, tag: str) -> list[dict[str, Any]]:
    return [q for q in search_data()["quotes"] if q["author"] == author and tag in q["tags"]]


def _select(name: str, placeholder: str, options: list[tuple[str, str]], selected: str | None, postback: bool) -> str:
    onchange = f" onchange=\"javascript:setTimeout('__doPostBack(\\'{SEARCH_FORM}{name}\\',\\'\\')', 0)\"" if postback else ""
    rows = "".join(
        f'        <option value="{v}"{" selected" if v == selected else ""}>{label}</option>\n' for v, label in options
    )
    return (f'      <select name="{SEARCH_FORM}{name}" id="ctl00_main_{name}"{onchange}>\n'
            f'        <option value="">{placeholder}</option>\n{rows}      </select>\n')


def search_page(author: str | None = None, tag: str | None = None, page: int = 0, error: str | None = None) -> Response:
    """The search form; after a search (page >= 1) the results, 2 per page, with a pager."""
    data = search_data()
    tags = _search_tags(author) if author else []
    results = _search_results(author, tag) if author and tag and page else []
    pages = max(1, -(-len(results) // data["page_size"]))
    allowed = ([f"author:{a['id']}" for a in data["authors"]] + [f"tag:{t}" for t in tags] + ["search"]
               + [f"page:{n}" for n in range(1, pages + 1) if page and n != page])
    state = {"author": author, "tag": tag, "page": page}
    body = (
        '  <h1>Quote search</h1>\n'
        '  <form method="post" action="./search.aspx" id="aspnetForm">\n'
        '    <div class="aspNetHidden">\n'
        '      <input type="hidden" name="__EVENTTARGET" id="__EVENTTARGET" value="">\n'
        '      <input type="hidden" name="__EVENTARGUMENT" id="__EVENTARGUMENT" value="">\n'
        f'      <input type="hidden" name="__VIEWSTATE" id="__VIEWSTATE" value="{_signed(state)}">\n'
        f'      <input type="hidden" name="__EVENTVALIDATION" id="__EVENTVALIDATION" value="{_signed(allowed)}">\n'
        '    </div>\n'
        '    <fieldset>\n'
        + _select("author", "-- Select an author --", [(a["id"], a["name"]) for a in data["authors"]], author, True)
        + _select("tag", "-- Select a tag --", [(t, t) for t in tags], tag, False)
        + f'      <input type="submit" name="{SEARCH_FORM}search" value="Search" id="ctl00_main_search">\n'
        '    </fieldset>\n'
    )
    if error:
        body += f'    <p class="error">{error}</p>\n'
    if page:
        names = {a["id"]: a["name"] for a in data["authors"]}
        size = data["page_size"]
        rows = "".join(
            f'      <div class="quote"><span class="text">{q["text"]}</span>'
            f' <span class="author">{names[q["author"]]}</span></div>\n'
            for q in results[(page - 1) * size: page * size]
        )
        links = "".join(
            f'<span class="current">{n}</span>' if n == page else
            f'<a class="page" href="javascript:__doPostBack(&#39;{SEARCH_FORM}results&#39;,&#39;Page${n}&#39;)">{n}</a>'
            for n in range(1, pages + 1)
        )
        if page < pages:
            links += (f' <a class="next" href="javascript:__doPostBack(&#39;{SEARCH_FORM}results&#39;,'
                      f'&#39;Page${page + 1}&#39;)">Next</a>')
        body += (f'    <div id="results">\n      <p class="count">{len(results)} quote(s)</p>\n{rows}'
                 f'      <div class="pager">{links}</div>\n    </div>\n')
    return html_page("Quote search", body + "  </form>\n")


def search_get(server: MockServer, req: Request) -> Response:
    return search_page()


def search_post(server: MockServer, req: Request) -> Response:
    """ASP.NET-like postbacks: __VIEWSTATE and __EVENTVALIDATION must come back
    unchanged; a choice must be one the last page offered; the search must carry
    the view state of the author's postback."""
    form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    state, allowed = _unsigned(form.get("__VIEWSTATE")), _unsigned(form.get("__EVENTVALIDATION"))
    if state is None or allowed is None:
        return html_page("Server Error", "  <h1>Validation of viewstate MAC failed.</h1>\n", 500)
    target = form.get("__EVENTTARGET", "")
    author, tag = form.get(f"{SEARCH_FORM}author", ""), form.get(f"{SEARCH_FORM}tag", "")
    invalid = html_page("Server Error", "  <h1>Invalid postback or callback argument.</h1>\n", 500)
    if target == f"{SEARCH_FORM}author":
        if f"author:{author}" not in allowed:
            return invalid
        return search_page(author)
    if target == f"{SEARCH_FORM}results":
        argument = form.get("__EVENTARGUMENT", "")
        number = argument.removeprefix("Page$")
        if not number.isdigit() or f"page:{number}" not in allowed or not state.get("page"):
            return invalid
        return search_page(state["author"], state["tag"], int(number))
    if f"{SEARCH_FORM}search" in form and not target:
        if f"author:{author}" not in allowed or state.get("author") != author:
            return invalid
        if f"tag:{tag}" not in allowed:
            return search_page(author, error="Select a tag.")
        return search_page(author, tag, 1)
    return invalid


# --------------------------------------------------------------------------- broken pages

BROKEN_PAGES = ["binary", "empty", "markup", "huge", "loop", "404", "500", "json-bad", "ok"]

BROKEN_MARKUP = (
    b"<html><head><title>Broken markup</title>\n"  # no </head>
    b"<body><div class=wrapper><p>unclosed paragraph <b><i>misnested</b></i>\n"
    b'<h1 class="name">Still here</h1>\n'
    b'<ul><li><a class="ok" href="/broken/ok">ok page</a><li>dangling item\n'
    b"<table><tr><td>cell one<td>cell two<tr><td>row two\n"
    b"</span></div></div></section> &bogus; &#xZZZ; <<<>>> <p <a href=\"/broken/ok\">ok</a\n"
    b"\xff\xfe invalid utf-8 \xc3\x28 bytes\n"
    b'<div class="unterminated attr="x>\n'
    b"<!-- unclosed comment\n"
)


@lru_cache(maxsize=1)
def png_bytes() -> bytes:
    """A valid 1x1 red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


HUGE_ROWS = 30_000  # 102 bytes each -> 3,060,136 bytes in total


@lru_cache(maxsize=1)
def huge_page() -> bytes:
    """~3 MB of HTML: an h1 and HUGE_ROWS paragraphs (no links)."""
    filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod"
    rows = "".join(f'<p class="row">Row {i:05d}: {filler}</p>\n' for i in range(HUGE_ROWS))
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Huge page</title></head>\n'
        f'<body>\n<h1 class="name">Huge page</h1>\n{rows}</body></html>\n'
    ).encode()


def broken_index(server: MockServer, req: Request) -> Response:
    links = "".join(f'    <li><a href="/broken/{n}">{n}</a></li>\n' for n in BROKEN_PAGES)
    return html_page("Broken pages", f'  <h1>Broken pages</h1>\n  <ul class="links">\n{links}  </ul>\n')


def broken(server: MockServer, req: Request, name: str) -> Response:
    if name == "binary":
        return Response(200, png_bytes(), "image/png")
    if name == "empty":
        return Response(200, b"", HTML)
    if name == "markup":
        return Response(200, BROKEN_MARKUP, HTML)
    if name == "huge":
        return Response(200, huge_page(), HTML)
    if name == "loop":
        n = req.arg("n", "0") or "0"
        return redirect(f"/broken/loop?n={int(n) + 1 if n.isdigit() else 1}")
    if name == "500":
        return html_page("Server error", "  <h1>500 Internal Server Error</h1>\n", 500)
    if name == "json-bad":
        return Response(200, b'{"page": 1, "items": [{"id": 1, "name": "trunc', JSON)
    if name == "ok":
        return html_page("OK", '  <h1 class="name">OK page</h1>\n  <p>Nothing wrong here.</p>\n')
    return not_found()  # includes /broken/404


# --------------------------------------------------------------------------- catalog, ticker

CATALOG = [["Anvil", "Bucket", "Chisel"], ["Drill", "Easel", "File"], ["Gauge", "Hammer"]]


def catalog(server: MockServer, req: Request) -> Response:
    """``/catalog?page=N``: 3 pages of products; any N past the last answers the last page again."""
    raw = req.arg("page", "1") or "1"
    page = min(int(raw), len(CATALOG)) if raw.isdigit() and int(raw) >= 1 else 1
    rows = "".join(f'    <li class="product"><span class="name">{name}</span></li>\n' for name in CATALOG[page - 1])
    return html_page(f"Catalog page {page}", f'  <h1>Catalog</h1>\n  <ul class="products">\n{rows}  </ul>\n')


def ticker(server: MockServer, req: Request) -> Response:
    """``/ticker``: each request gets the next number; the page links to itself."""
    n = server.tick()
    return html_page("Ticker", f'  <p class="n">{n}</p>\n  <a class="again" href="/ticker">again</a>\n')


# --------------------------------------------------------------------------- slow pages, echo

SLOW_PAGES = 10
MAX_SLOW_PAGES = 200
MAX_DELAY = 5.0


def slow_index(server: MockServer, req: Request) -> Response:
    """``?pages=N`` (default 10, at most 200) links, each with ``?delay=`` when given."""
    count = min(int(req.arg("pages", str(SLOW_PAGES)) or SLOW_PAGES), MAX_SLOW_PAGES)
    query = (f"?pages={count}" if count != SLOW_PAGES else "") + (f"&delay={req.arg('delay')}" if req.arg("delay") else "")
    query = "?" + query.lstrip("?&") if query else ""
    links = "".join(f'    <li><a href="/slow/{n}{query}">page {n}</a></li>\n' for n in range(1, count + 1))
    return html_page("Slow pages", f'  <h1>Slow pages</h1>\n  <ul class="links">\n{links}  </ul>\n')


def slow_page(server: MockServer, req: Request, n: str) -> Response:
    if not 1 <= int(n) <= min(int(req.arg("pages", str(SLOW_PAGES)) or SLOW_PAGES), MAX_SLOW_PAGES):
        return not_found()
    try:
        delay = min(max(float(req.arg("delay", "0") or 0), 0.0), MAX_DELAY)
    except ValueError:
        delay = 0.0
    if delay:
        time.sleep(delay)
    return html_page(f"Slow {n}", f'  <h1 class="name">Slow page {int(n)}</h1>\n  <p class="n">{int(n)}</p>\n')


def echo(server: MockServer, req: Request) -> Response:
    return json_response({
        "method": req.method,
        "path": req.target,
        "query": req.query,
        "headers": req.headers,
        "cookies": req.cookies,
        "body": req.body.decode("utf-8", "replace"),
    })


def robots(server: MockServer, req: Request) -> Response:
    return not_found()


def static(server: MockServer, req: Request) -> Response:
    root = server.sites_dir
    target = (root / req.path.lstrip("/")).resolve()
    if target == root or not target.is_relative_to(root):
        return not_found()
    if target.is_dir():
        if not req.path.endswith("/"):
            query = req.target.partition("?")[2]
            return redirect(req.path + "/" + (f"?{query}" if query else ""), 301)
        target = target / "index.html"
    if not target.is_file() or target.parent == root:  # only files inside a site directory
        return not_found()
    return Response(200, target.read_bytes(), CONTENT_TYPES.get(target.suffix, "application/octet-stream"))


Handler = Callable[..., Response]
# (methods, path regex, handler); GET routes also answer HEAD; "*" = any method.
_ROUTE_TABLE: list[tuple[str, str, Handler]] = [
    ("GET", r"/robots\.txt", robots),
    ("GET", r"/api/products", api_products),
    ("GET", r"/api/product/(?P<id>[^/]+)", api_product),
    ("GET", r"/api/seller/(?P<id>[^/]+)", api_seller),
    ("GET", r"/login", login_form),
    ("POST", r"/login", login_submit),
    ("GET", r"/account", account),
    ("GET", r"/account/order/(?P<id>[^/]+)", order),
    ("GET", r"/catalog", catalog),
    ("GET", r"/ticker", ticker),
    ("GET", r"/search/search\.aspx", search_get),
    ("POST", r"/search/search\.aspx", search_post),
    ("GET", r"/broken/?|/broken/index\.html", broken_index),
    ("GET", r"/broken/(?P<name>[^/]+)", broken),
    ("GET", r"/slow/?|/slow/index\.html", slow_index),
    ("GET", r"/slow/(?P<n>\d+)", slow_page),
    ("*", r"/echo", echo),
    ("GET", r"/.*", static),
]
ROUTES = [(method, re.compile(pattern), handler) for method, pattern, handler in _ROUTE_TABLE]


def dispatch(server: MockServer, req: Request) -> Response:
    method = "GET" if req.method == "HEAD" else req.method
    allowed: list[str] = []
    for route_method, pattern, handler in ROUTES:
        match = pattern.fullmatch(req.path)
        if match is None:
            continue
        if route_method in ("*", method):
            return handler(server, req, **match.groupdict())
        allowed.append(route_method)
    if allowed:
        resp = html_page("Method Not Allowed", "  <h1>405 Method Not Allowed</h1>\n", 405)
        resp.headers.append(("Allow", ", ".join(dict.fromkeys(allowed))))
        return resp
    return not_found()


# --------------------------------------------------------------------------- HTTP plumbing


def parse_cookies(values: list[str]) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for value in values:
        for part in value.split(";"):
            name, sep, val = part.strip().partition("=")
            if sep and name:
                cookies[name] = val
    return cookies


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mock: MockServer, address: tuple[str, int]) -> None:
        self.mock = mock
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients may hang up early
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wfcrawl-mockserver/1.0"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connections.discard(self.connection)

    def do_GET(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(400, "bad Content-Length")
            return
        body = self.rfile.read(length) if length else b""
        headers = dict(self.headers.items())
        record = RequestRecord(self.command, self.path, time.monotonic(), headers, body)
        mock = self.server.mock
        mock._log(record)
        mock._enter()
        try:
            self._answer(mock, record)
        finally:
            mock._leave()

    def _answer(self, mock: MockServer, record: RequestRecord) -> None:
        headers = record.headers
        body = record.body
        url = urlsplit(self.path)
        req = Request(
            method=self.command,
            target=self.path,
            path=unquote(url.path),
            query=parse_qs(url.query),
            headers=headers,
            cookies=parse_cookies(self.headers.get_all("Cookie") or []),
            body=body,
        )
        try:
            resp = dispatch(mock, req)
        except Exception:
            resp = Response(500, traceback.format_exc().encode(), "text/plain; charset=utf-8")
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET  # noqa: N815


class MockServer:
    """The fixture server. ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, sites_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sites_dir = Path(sites_dir or SITES_DIR).resolve()
        self.host = host
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._in_flight = 0
        self.max_in_flight = 0
        self._csrf_tokens: set[str] = set()
        self._sessions: set[str] = set()
        self._ticks = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MockServer:
        if self._httpd is None:
            self._httpd = _HTTPServer(self, (self.host, self._port))
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"mockserver-{self.port}", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if thread is not None:
            thread.join()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("MockServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        """Absolute URL of a server path, e.g. ``url_for("/shop/index.html")``."""
        return self.url + (path if path.startswith("/") else "/" + path)

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def paths(self) -> list[str]:
        """Requested paths (with query string), in arrival order."""
        return [r.path for r in self.requests]

    def clear(self) -> None:
        """Forget logged requests and the in-flight peak (login sessions and CSRF tokens are kept)."""
        with self._lock:
            self._requests.clear()
            self.max_in_flight = self._in_flight

    def _log(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def tick(self) -> int:
        """The next number of /ticker (1, 2, ...; per server)."""
        with self._lock:
            self._ticks += 1
            return self._ticks

    # login state (used by the /login routes)
    def issue_csrf_token(self) -> str:
        token = secrets.token_hex(16)
        with self._lock:
            self._csrf_tokens.add(token)
        return token

    def csrf_token_valid(self, token: str | None) -> bool:
        with self._lock:
            return token in self._csrf_tokens

    def new_session(self) -> str:
        session = secrets.token_hex(16)
        with self._lock:
            self._sessions.add(session)
        return session

    def session_valid(self, session: str | None) -> bool:
        with self._lock:
            return session in self._sessions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="wfcrawl test fixture server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = MockServer(host=args.host, port=args.port).start()
    print(f"URL={server.url}", flush=True)
    try:
        assert server._thread is not None
        server._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
