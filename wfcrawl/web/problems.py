"""Every error as problem details (RFC 9457, ``application/problem+json``).

A problem is a JSON object with ``type`` (a URI: ``about:blank`` when the status
code says it all, else ``urn:wfcrawl:problem:<name>``), ``title`` (the same for
every problem of that type), ``status``, ``detail`` (this occurrence, in words)
and, where a client can use them, extension members: ``errors`` (the located
problems of an invalid request), ``problems`` (of a workflow document),
``execution``. Handlers raise :class:`ProblemError`; :func:`install` turns it,
Starlette's HTTP errors, request validation errors and any unexpected exception
into such a response. An unexpected exception is logged with its traceback and
answered 500 with nothing of it: no stack trace ever reaches a client.

A browser that asks for HTML (``Accept: text/html``) outside the API gets the same
problem rendered as a page (:func:`wfcrawl.web.pages.problem_page`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
#: Problem types of wfcrawl (``urn:wfcrawl:problem:<name>``) and their titles.
TITLES = {
    "invalid-request": "The request is malformed",
    "invalid-workflow": "The workflow document is invalid",
    "launch-rejected": "The launch was refused",
    "rate-limited": "Too many requests for this API key",
    "busy": "This launcher runs as many crawls as it may",
    "already-final": "The execution has already ended",
    "conflict": "The request conflicts with an earlier one",
    "crawl-failed": "The crawl failed",
    "still-running": "The crawl is still running",
    "csrf": "The form is not from this site or has expired",
    "body-timeout": "The request body was not received in time",
}


def type_uri(name: str) -> str:
    return f"urn:wfcrawl:problem:{name}"


class ProblemError(HTTPException):
    """An error answered as problem details; ``kind`` is a :data:`TITLES` key (or None: about:blank).

    A Starlette ``HTTPException``, so that it passes through FastAPI's body reading
    unchanged (a limit hit while the body arrives) to the handler :func:`install` adds.
    """

    def __init__(self, status: int, detail: str, *, kind: str | None = None,
                 headers: Mapping[str, str] | None = None, **extensions: Any) -> None:
        if kind is not None and kind not in TITLES:
            raise ValueError(f"unknown problem type {kind!r}")
        super().__init__(status, detail, dict(headers or {}))
        self.status = status
        self.detail: str = detail
        self.kind = kind
        self.headers: dict[str, str] = dict(headers or {})
        self.extensions = extensions

    def body(self) -> dict[str, Any]:
        return {
            "type": "about:blank" if self.kind is None else type_uri(self.kind),
            "title": HTTPStatus(self.status).phrase if self.kind is None else TITLES[self.kind],
            "status": self.status, "detail": self.detail, **self.extensions,
        }


def problem_response(problem: ProblemError) -> Response:
    """The problem as an ``application/problem+json`` response."""
    body = json.dumps(problem.body(), default=str).encode()
    return Response(body, problem.status, headers=problem.headers, media_type=MEDIA_TYPE)


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic's errors, located: ``pointer`` (JSON pointer into the body), ``parameter`` or ``header``.

    The offending input is never echoed (it may be a secret pasted in the wrong field).
    """
    located = []
    for error in errors:
        where, *path = error.get("loc") or ("body",)
        entry: dict[str, Any] = {"detail": error.get("msg", "invalid"), "type": error.get("type", "invalid")}
        if where == "body":
            entry["pointer"] = "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)
        elif where == "header":
            entry["header"] = str(path[0]) if path else ""
        else:  # query, path, cookie
            entry["parameter"] = str(path[0]) if path else ""
        if error.get("type") == "json_invalid":
            entry["detail"] = f"the body is not JSON: {(error.get('ctx') or {}).get('error', 'invalid')}"
            entry["pointer"] = "#"
        located.append(entry)
    return located


def _allowed(request: Request) -> list[str]:
    """Every method some route at this path takes (Starlette names only the first route's)."""
    routes = request.app.router.routes
    return [method for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)]


Renderer = Callable[[Request, ProblemError], Awaitable[Response | None]]


def install(app: FastAPI, html: Renderer | None = None) -> None:
    """Answer every error of ``app`` with problem details (``html``: a page for browsers, or None)."""

    async def respond(request: Request, problem: ProblemError) -> Response:
        if html is not None:
            page = await html(request, problem)
            if page is not None:
                return page
        return problem_response(problem)

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return await respond(request, exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            # FastAPI's words for a body json.loads could not even start on (bytes that are not UTF-8).
            detail = "the body is not JSON: it is not UTF-8 text"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"nothing at {request.url.path}"
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"{request.method} is not allowed here"
            headers["Allow"] = ", ".join(_allowed(request))
        return await respond(request, ProblemError(exc.status_code, detail, headers=headers))

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(exc.errors())
        return await respond(request, ProblemError(400, "the request is invalid (see errors)",
                                                   kind="invalid-request", errors=errors))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Starlette raises the exception again after this answer: uvicorn logs its traceback.
        logger.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return problem_response(ProblemError(500, "an internal error occurred; it has been logged"))

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(Exception, on_unexpected)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problems an operation may answer."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {status: {"description": HTTPStatus(status).phrase, "content": {MEDIA_TYPE: {"schema": schema}}}
            for status in statuses}
