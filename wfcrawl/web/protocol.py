"""uvicorn's HTTP/1.1 protocol (httptools) with the limits a public server needs.

uvicorn closes a keep-alive connection that stays idle ``timeout_keep_alive``
seconds after a response, but any byte received restarts that wait, and a
connection that never completes its first request has no time limit at all:
300 clients sending nothing, or a header byte every few seconds (slowloris),
each hold a connection forever. :func:`guarded_protocol` adds:

- a deadline for the request line and headers (``WFCRAWL_WEB_HEADER_TIMEOUT``),
  from the moment the connection is made or the previous response is complete,
  which bytes arriving do not extend: an idle connection is closed, one that
  sent part of its headers gets a 408 first;
- a size limit for them (``WFCRAWL_WEB_MAX_HEADER_BYTES``; 431);
- ``limit_concurrency`` (connections plus requests) answered as problem details
  (503 with ``Retry-After``) instead of uvicorn's plain text; so are malformed
  requests (400).

The request body's deadline and size are the application's
(:class:`wfcrawl.web.middleware.BodyLimits`), where a handler that reads the
body can be told why it stopped.

A connection answered before its request was read to the end (413 while the
body still arrives, 401 before it, 431, 408) closes the way nginx's
``lingering_close`` does: the response is sent, the write side is shut, and
what the client still sends is read and discarded for at most
:data:`LINGER_SECONDS` and :data:`LINGER_BYTES` before the socket closes.
Closing at once with unread bytes makes the kernel reset the connection, and a
client still sending its body then gets ``EPIPE``/``ECONNRESET`` and never
reads the answer that says why.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from wfcrawl.web.problems import MEDIA_TYPE, ProblemError

LINGER_SECONDS = 2.0
"""How long a connection answered mid-request still reads (and discards) what arrives."""
LINGER_BYTES = 1 << 20
"""How much it reads so before closing anyway."""


class _LingeringTransport:
    """The transport uvicorn is given: its ``close()`` is the protocol's lingering close."""

    def __init__(self, transport: asyncio.Transport, on_close: Any) -> None:
        self._transport = transport
        self._on_close = on_close
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._on_close()


def problem_bytes(status: int, detail: str, *headers: tuple[str, str]) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with a problem body."""
    body = json.dumps(ProblemError(status, detail).body()).encode()
    head = [STATUS_LINE[status], f"content-type: {MEDIA_TYPE}\r\n".encode(),
            f"content-length: {len(body)}\r\n".encode(), b"connection: close\r\n"]
    head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
    return b"".join(head) + b"\r\n" + body


async def _overloaded(scope: Any, receive: Any, send: Any) -> None:
    body = json.dumps(ProblemError(503, "the server is at its limit of connections and requests; retry").body())
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body.encode()})


def guarded_protocol(*, header_timeout: float, max_header_bytes: int, limit_concurrency: int) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``)."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.limit_concurrency = None  # checked below, answered as a problem
            self._deadline: asyncio.TimerHandle | None = None
            self._header_bytes = 0
            self._awaiting_headers = False
            self._real_transport: asyncio.Transport | None = None
            self._linger_left = -1  # bytes still read and discarded; -1: not lingering
            self._linger_timer: asyncio.TimerHandle | None = None

        def _await_headers(self) -> None:
            self._cancel_deadline()
            self._awaiting_headers = True
            self._header_bytes = 0
            self._deadline = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _cancel_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _refuse(self, status: int, detail: str) -> None:
            self._cancel_deadline()
            self.transport.write(problem_bytes(status, detail))
            self.transport.close()

        def _headers_too_slow(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self._header_bytes == 0 or (self.cycle is not None and self.cycle.more_body):
                # Idle, or still sending the body of a request already answered (401, 413...):
                # nothing to answer.
                self.transport.close()
            else:
                self._refuse(408, f"the request headers did not arrive within {header_timeout:g} s")

        def _close(self) -> None:
            """Close now if the request was read to its end, else linger (module docstring)."""
            self._cancel_deadline()
            real = self._real_transport
            assert real is not None
            unread = (self.cycle is not None and self.cycle.more_body and not self.cycle.disconnected) or (
                self._awaiting_headers and self._header_bytes > 0)
            if not unread or real.is_closing() or not real.can_write_eof():
                real.close()
                return
            real.write_eof()  # after what is buffered: the response, then FIN
            self._linger_left = LINGER_BYTES
            self._linger_timer = self.loop.call_later(LINGER_SECONDS, real.close)
            real.resume_reading()

        # uvicorn's protocol interface

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self._real_transport = transport  # type: ignore[assignment]
            super().connection_made(_LingeringTransport(transport, self._close))  # type: ignore[arg-type]
            self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_deadline()
            if self._linger_timer is not None:
                self._linger_timer.cancel()
            super().connection_lost(exc)

        def eof_received(self) -> None:
            if self._linger_left >= 0 and self._real_transport is not None:
                self._real_transport.close()  # the client sent all it had: done

        def data_received(self, data: bytes) -> None:
            if self._linger_left >= 0:
                self._linger_left -= len(data)
                if self._linger_left < 0 and self._real_transport is not None:
                    self._real_transport.close()
                return
            if self._awaiting_headers:
                self._header_bytes += len(data)
            super().data_received(data)
            # Still in the headers after this data (else on_headers_complete ran).
            if self._awaiting_headers and self._header_bytes > max_header_bytes and not self.transport.is_closing():
                self._refuse(431, f"the request line and headers are larger than {max_header_bytes} bytes")

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            self._cancel_deadline()
            if len(self.connections) >= limit_concurrency or len(self.tasks) >= limit_concurrency:
                app, self.app = self.app, _overloaded
                try:
                    super().on_headers_complete()
                finally:
                    self.app = app
            else:
                super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # Waiting for the next request (unless a pipelined one just started).
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._await_headers()

        def send_400_response(self, msg: str) -> None:
            self._refuse(400, msg)

    return GuardedHttpToolsProtocol
