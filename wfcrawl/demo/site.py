"""The bundled demo shop: a small deterministic site served on a local port.

3 categories, each 2 listing pages of 6 products (36 product pages), with
attribute tables, a nested seller block, reviews and tags. Used by
``wfcrawl demo``; stdlib only.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CATEGORIES = ("books", "games", "tools")
PER_PAGE = 6
PAGES = 2
SELLERS = ("Acme Ltd", "Globex", "Initech")


def _product(category: str, n: int) -> dict[str, object]:
    sku = f"{category[:2].upper()}-{n:03d}"
    return {
        "sku": sku,
        "name": f"{category.title()[:-1]} {n}",
        "price": f"{(n * 7) % 90 + 9}.{n % 100:02d}",
        "attributes": {"Colour": ("red", "green", "blue")[n % 3], "Weight": f"{n % 5 + 1}00 g"},
        "seller": SELLERS[n % len(SELLERS)],
        "rating": f"{3 + n % 3}.{n % 10}",
        "reviews": [(f"user{n}{r}", (n + r) % 5 + 1) for r in range(n % 3)],
        "tags": [category, ("new", "sale", "classic")[n % 3]],
    }


def _page(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        "<nav><a href='/'>Home</a></nav>"
        f"{body}<footer><a href='https://example.com/'>elsewhere</a></footer></body></html>"
    ).encode()


def build_site() -> dict[str, bytes]:
    """Path -> body of every page of the demo shop."""
    pages: dict[str, bytes] = {}
    links = "".join(f"<li><a href='/c/{c}/1.html'>{c.title()}</a></li>" for c in CATEGORIES)
    pages["/"] = _page("Demo shop", f"<h1>Demo shop</h1><ul class='categories'>{links}</ul>")
    pages["/robots.txt"] = b"User-agent: *\nDisallow: /private/\n"
    number = 0
    for category in CATEGORIES:
        for page in range(1, PAGES + 1):
            cards = []
            for _ in range(PER_PAGE):
                number += 1
                p = _product(category, number)
                cards.append(
                    f"<div class='card'><a class='title' href='/p/{p['sku']}.html'>{p['name']}</a>"
                    f"<span class='price'>${p['price']}</span></div>"
                )
                rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in p["attributes"].items())  # type: ignore[attr-defined]
                reviews = "".join(
                    f"<li class='review'><span class='author'>{a}</span> <span class='stars'>{s}</span></li>"
                    for a, s in p["reviews"]  # type: ignore[attr-defined]
                )
                tags = "".join(f"<li>{t}</li>" for t in p["tags"])  # type: ignore[attr-defined]
                pages[f"/p/{p['sku']}.html"] = _page(
                    str(p["name"]),
                    f"<h1 class='name'>{p['name']}</h1><p class='price'>Price: ${p['price']}</p>"
                    f"<p class='sku'>SKU {p['sku']}</p><table class='attributes'>{rows}</table>"
                    f"<div class='seller'><span class='name'>{p['seller']}</span>"
                    f"<span class='rating'>{p['rating']}</span></div>"
                    f"<ul class='reviews'>{reviews}</ul><ul class='tags'>{tags}</ul>"
                    f"<a href='/c/{category}/1.html'>Back</a><a href='/private/admin'>admin</a>",
                )
            nxt = f"<a class='next' href='/c/{category}/{page + 1}.html'>Next</a>" if page < PAGES else ""
            pages[f"/c/{category}/{page}.html"] = _page(
                f"{category} {page}", f"<h1>{category.title()}</h1>{''.join(cards)}{nxt}"
            )
    return pages


class _Handler(BaseHTTPRequestHandler):
    pages: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path.split("?", 1)[0])
        status = 200 if body is not None else 404
        body = body if body is not None else b"not found"
        self.send_response(status)
        kind = "text/plain" if self.path.endswith(".txt") or status == 404 else "text/html; charset=utf-8"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/":  # as real shops do: the crawl handles cookies (and their domains) too
            self.send_header("Set-Cookie", "session=demo; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@contextmanager
def serve() -> Iterator[str]:
    """Serve the demo shop on 127.0.0.1 (a port the kernel picks); yields its URL."""
    handler = type("DemoHandler", (_Handler,), {"pages": build_site()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
