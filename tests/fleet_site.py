"""A generated shop whose pages answer after a fixed latency, with its ground truth.

``/index.html`` links ``lists`` list pages, each list page links its products
(``/p/<n>``); a product page holds one product (``sku``, ``name``, ``price``).
Every page answers after ``latency`` seconds, so crawl instances are bound by the
site's latency, not by the CPU: what a fleet benchmark measures is coordination.

The server is threaded (one thread per connection, a large listen backlog: a
hundred instances connect at once) and keeps an access log: the time each request
arrived (``time.monotonic()``), its path and the client's address (with instances in
network namespaces, the address says which instance asked).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WORKFLOW = """\
name: fleetshop
start_urls: [/index.html]
obey_robots: false
rate_limit: {delay: %(delay)s, concurrency: %(concurrency)d}
phases:
  index:
    nodes:
      - {type: extract_links, css: a.list, marker: list}
    transitions:
      - {marker: list, to: list}
  list:
    nodes:
      - {type: extract_links, css: a.product, marker: product}
    transitions:
      - {marker: product, to: product}
  product:
    nodes:
      - type: extract
        item: product
        fields:
          sku: {css: span.sku::text, required: true}
          name: {css: h1::text, required: true}
          price: {css: span.price::text, type: float, required: true}
items:
  product:
    key: [sku]
"""


def workflow(delay: float = 0, concurrency: int = 8) -> str:
    """The workflow that crawls this site (``rate_limit`` as given)."""
    return WORKFLOW % {"delay": delay, "concurrency": concurrency}


@dataclass(frozen=True)
class Hit:
    time: float  # monotonic, when the request line was read
    path: str
    client: str


class FleetSite:
    """``with FleetSite("10.1.2.1", products=400) as site: site.url``."""

    def __init__(self, host: str, *, products: int, per_list: int = 50, latency: float = 0.2) -> None:
        self.host = host
        self.products = products
        self.per_list = per_list
        self.lists = (products + per_list - 1) // per_list
        self.latency = latency
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self.url = ""

    @property
    def pages(self) -> int:
        """Pages a complete crawl fetches: the index, the lists, the products."""
        return 1 + self.lists + self.products

    def truth(self) -> set[tuple[str, str, float]]:
        """Every product as ``(sku, name, price)``."""
        return {(f"SKU-{n:06d}", f"Product {n}", n + 0.5) for n in range(self.products)}

    def page(self, path: str) -> bytes | None:
        if path == "/index.html":
            body = "".join(f'<a class="list" href="/list/{i}">{i}</a>\n' for i in range(self.lists))
        elif path.startswith("/list/") and path[6:].isdigit() and int(path[6:]) < self.lists:
            first = int(path[6:]) * self.per_list
            body = "".join(f'<a class="product" href="/p/{n}">{n}</a>\n'
                           for n in range(first, min(first + self.per_list, self.products)))
        elif path.startswith("/p/") and path[3:].isdigit() and int(path[3:]) < self.products:
            n = int(path[3:])
            body = f'<h1>Product {n}</h1><span class="sku">SKU-{n:06d}</span><span class="price">{n + 0.5}</span>'
        else:
            return None
        return f"<html><body>{body}</body></html>".encode()

    def fetched(self) -> int:
        with self._lock:
            return len(self.hits)

    def log(self) -> list[Hit]:
        with self._lock:
            return sorted(self.hits, key=lambda h: h.time)

    def __enter__(self) -> FleetSite:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                arrived = time.monotonic()
                with site._lock:
                    site.hits.append(Hit(arrived, self.path, self.client_address[0]))
                body = site.page(self.path)
                time.sleep(max(0.0, arrived + site.latency - time.monotonic()))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024
            daemon_threads = True

        self.httpd = Server((self.host, 0), Handler)
        self.url = f"http://{self.host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fleet-site", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
