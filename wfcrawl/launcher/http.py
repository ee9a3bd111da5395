"""The launcher's HTTP plumbing: a threading stdlib server, JSON replies.

Deliberately small (``http.server.ThreadingHTTPServer``): the endpoints are
few, the work is a validation and a ``fork``/``exec``, and a thread per
request lets a push request wait for its crawl without an event loop. An
application is any callable from :class:`HttpRequest` to :class:`Reply`.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from wfcrawl.storage.executions import Execution

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Reply:
    status: int
    payload: Any = None  # JSON-serialisable; None: no body
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, message: str, **extra: Any) -> Reply:
    return Reply(status, {"error": message, **extra})


def execution_json(execution: Execution) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": execution.id, "workflow": execution.workflow, "status": execution.status,
        "params": execution.params, "created_at": iso(execution.created_at),
        "started_at": iso(execution.started_at), "finished_at": iso(execution.finished_at),
        "finish_reason": execution.finish_reason, "stats": execution.stats, "error": execution.error,
    }


App = Callable[[HttpRequest], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Cloud Run and most tests: IPv4; "::" would need address_family = AF_INET6.
    address_family = socket.AF_INET

    def __init__(self, address: tuple[str, int], app: App, max_body: int) -> None:
        self.app = app
        self.max_body = max_body
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hang up
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wfcrawl-launcher"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _reply(self, reply: Reply) -> None:
        body = b"" if reply.payload is None else json.dumps(reply.payload, default=str).encode()
        self.send_response(reply.status)
        if reply.payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._reply(error(411, "send a Content-Length (chunked bodies are not accepted)"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._reply(error(400, "invalid Content-Length"))
            return
        if length > self.server.max_body:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            self._reply(error(413, f"the body is larger than {self.server.max_body} bytes"))
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = HttpRequest(
            self.command, url.path, parse_qs(url.query, keep_blank_values=True),
            {k.lower(): v for k, v in self.headers.items()}, body,
        )
        try:
            reply = self.server.app(request)
        except Exception:
            logger.exception("Unhandled error in %s %s", self.command, url.path)
            reply = error(500, "internal error")
        self._reply(reply)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle  # noqa: N815


class HttpService:
    """Serve ``app`` on ``host:port`` (port 0: any free port, see :attr:`port`) in a thread."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0, *, max_body: int = 2 << 20) -> None:
        self._server = _Server((host, port), app, max_body)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{self.port}"

    def start(self) -> HttpService:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="wfcrawl-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
