"""ASGI middleware of the web application: root path, request body limits, the API's key gate."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wfcrawl.web.auth import AuthError
from wfcrawl.web.problems import ProblemError, problem_response

API_PREFIX = "/v1/"


def route_path(scope: Scope) -> str:
    """The path without the root path (what the routes match)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class RootPath:
    """Serve under ``root_path`` (``WFCRAWL_WEB_ROOT_PATH``) whether or not the proxy strips it.

    A proxy that serves the app at ``/crawls/`` either passes ``/crawls/v1/...``
    on or strips it to ``/v1/...``; both arrive here as the ASGI spec wants them
    (``path`` with the prefix, ``root_path`` the prefix), so that routing ignores the
    prefix and every link and redirect the app makes has it.
    """

    def __init__(self, app: ASGIApp, root_path: str) -> None:
        self.app = app
        self.root_path = root_path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = self.root_path
        if root and scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if path != root and not path.startswith(root + "/"):  # the proxy stripped the prefix
                raw = scope.get("raw_path") or path.encode()
                scope = {**scope, "path": root + path, "raw_path": root.encode() + raw}
            scope = {**scope, "root_path": root}
        await self.app(scope, receive, send)


class BodyLimits:
    """The request body: at most ``max_bytes`` (413), within ``timeout`` seconds of the headers (408).

    A declared ``Content-Length`` over the limit is refused before anything is
    read; a chunked body (no length) is counted as it arrives and refused as soon
    as it passes the limit. Both answers close the connection (the rest of the
    body is never read).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    def _too_large(self) -> ProblemError:
        return ProblemError(413, f"the request body is larger than {self.max_bytes} bytes",
                            headers={"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await problem_response(self._too_large())(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        received = 0
        complete = False

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: later calls wait for a disconnect, without a deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise ProblemError(408, f"the request body did not arrive within {self.timeout:g} s",
                                   kind="body-timeout", headers={"Connection": "close"}) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        await self.app(scope, limited, send)


class ApiKeyGate:
    """``/v1/``: an API key (401), then its rate limit (429), before the request is even read.

    The key is left in ``scope["state"]["api_key"]`` for the handlers
    (:func:`wfcrawl.web.api.api_key`). Everything else passes through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not route_path(scope).startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        services: Any = scope["app"].state.services
        try:
            key = services.auth.authenticate(Headers(scope=scope))
        except AuthError as exc:
            problem = ProblemError(exc.status, exc.message, headers={"WWW-Authenticate": "Bearer"})
            await problem_response(problem)(scope, receive, send)
            return
        wait = services.limiter.take(key.name)
        if wait is not None:
            problem = ProblemError(429, f"the API key {key.name!r} made too many requests; retry in {wait} s",
                                   kind="rate-limited", headers={"Retry-After": str(wait)})
            await problem_response(problem)(scope, receive, send)
            return
        scope.setdefault("state", {})["api_key"] = key
        content_type = Headers(scope=scope).get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json" and not content_type.endswith("+json"):
            # The API speaks JSON only: a body is JSON whatever it is labelled (`curl -d`
            # says form-urlencoded), as clients of the first API could rely on.
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope["headers"].append((b"content-type", b"application/json"))
        await self.app(scope, receive, send)


#: Pages load only what the package ships: its stylesheet and scripts, nothing inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


class SecurityHeaders:
    """Headers every response gets (pages: a Content-Security-Policy, and never cached)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
