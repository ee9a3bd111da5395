"""The browser's guard: an HTTP proxy on loopback that applies the SSRF policy.

A rendered page makes the browser connect on its own: redirects (Playwright's
request routing never sees them), subresources, fetch/XHR, WebSockets, meta
refresh, preconnects, service workers. Chromium is therefore launched with this
proxy as its only way out (``--proxy-server``, loopback not bypassed): every
connection it wants is a ``CONNECT host:port`` (https, wss) or an absolute-URL
request (http, ws) here, which :class:`GuardProxy` resolves, checks with the
:class:`~wfcrawl.security.ssrf.AddressPolicy`, and connects to the very address
it checked (no DNS rebinding); a refused one gets ``403`` and is counted.

Plain HTTP requests are forwarded with ``Connection: close`` (one request per
connection: a browser reuses proxy connections across hosts); HTTPS is a tunnel
(nothing decrypted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from wfcrawl.security.ssrf import AddressPolicy, Refusal

logger = logging.getLogger(__name__)

#: Bytes of a request head (request line and headers) the proxy reads at most.
MAX_HEAD = 64 * 1024
#: Seconds a client may take to send its request head, and a connection to open.
TIMEOUT = 30.0
_HOP_BY_HOP = frozenset({"connection", "proxy-connection", "keep-alive", "proxy-authorization", "te", "trailer",
                         "upgrade"})


class GuardProxy:
    """A forward proxy for one crawl's browser; ``url`` is what the browser is given.

    The listening socket is bound when the object is made (its port goes into
    the browser's launch options before the crawl starts); :meth:`start` serves
    it on the running asyncio loop. ``on_refused`` is called with each refusal.
    """

    def __init__(self, policy: AddressPolicy, on_refused: Callable[[Refusal], None] | None = None) -> None:
        self.policy = policy
        self.on_refused = on_refused
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(256)
        self._socket.setblocking(False)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server: asyncio.base_events.Server | None = None
        self._logged: set[tuple[str, str]] = set()

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._client, sock=self._socket, limit=MAX_HEAD)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self._socket.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ", 2)
            if method.upper() == "CONNECT":
                host, port = _host_port(target)
                connected = await self._connect(host, port, writer)
                if connected is None:
                    return
                up_reader, upstream = connected
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            else:
                parts = urlsplit(target)
                if parts.scheme not in ("http", "ws") or not parts.hostname:
                    await _answer(writer, 400, "only absolute http URLs and CONNECT")
                    return
                connected = await self._connect(parts.hostname, parts.port or 80, writer)
                if connected is None:
                    return
                up_reader, upstream = connected
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                kept = [h for h in header_lines if h.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP]
                upgrade = [h for h in header_lines if h.split(":", 1)[0].strip().lower() in ("upgrade", "connection")
                           and "upgrade" in h.lower()]
                # A WebSocket keeps its Upgrade; anything else is one request per connection.
                tail = upgrade if len(upgrade) == 2 else ["Connection: close"]
                upstream.write(f"{method} {path} {version}\r\n".encode("latin-1")
                               + "".join(f"{h}\r\n" for h in [*kept, *tail]).encode("latin-1") + b"\r\n")
            # Either side done (the server closed after its answer, a tunnel ended): both are.
            tasks = [asyncio.ensure_future(_pipe(reader, upstream)), asyncio.ensure_future(_pipe(up_reader, writer))]
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            pass
        finally:
            for stream in (upstream, writer):
                if stream is not None:
                    stream.close()

    async def _connect(
        self, host: str, port: int, client: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Resolve, check every address, connect to a checked one; None (answered 403) if refused."""
        refusal, name = self.policy.static_refusal(f"http://{_bracket(host)}:{port}/")
        addresses: list[str] = [host.strip("[]")] if refusal is None and name is None else []
        if refusal is None and name is not None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                await _answer(client, 502, f"cannot resolve {name}: {exc}")
                return None
            addresses = sorted({str(info[4][0]).split("%", 1)[0] for info in infos})
            for address in addresses:
                refusal = refusal or self.policy.address_refusal(address, name)
        if refusal is not None:
            self._refused(host, refusal)
            await _answer(client, 403, f"SSRF guard: {refusal.message}")
            return None
        last: Exception | None = None
        for address in addresses:
            try:
                return await asyncio.wait_for(asyncio.open_connection(address, port), TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                last = exc
        await _answer(client, 502, f"cannot connect to {host}:{port}: {last}")
        return None

    def _refused(self, host: str, refusal: Refusal) -> None:
        if self.on_refused is not None:
            self.on_refused(refusal)
        if (host, refusal.reason) not in self._logged:
            self._logged.add((host, refusal.reason))
            logger.warning("SSRF guard refused a browser connection to %s: %s", host, refusal.message)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _host_port(target: str) -> tuple[str, int]:
    """``example.com:443`` or ``[::1]:443`` -> (host, port)."""
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bad CONNECT target {target!r}")
    return host.strip("[]"), int(port)


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    body = message.encode("utf-8", "replace")
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1") + body)
    with contextlib.suppress(OSError):
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
