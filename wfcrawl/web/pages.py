"""Server-rendered pages: templates, the signed-in user, problems shown as pages.

Templates are Jinja2 files shipped in the package (``wfcrawl/web/templates/``,
autoescaped), static files likewise (``wfcrawl/web/static/``: the stylesheet and
htmx, no CDN). :func:`render` gives every template ``root`` (the root path, to
prefix links), ``user`` (the signed-in key) and ``csrf_token`` (for forms).

Dashboard routes depend on :func:`signed_in` (a browser without a session is
sent to the sign-in page) and, for POSTs, :func:`csrf_checked`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import RedirectResponse, Response

from wfcrawl.web.auth import ApiKey
from wfcrawl.web.middleware import API_PREFIX, route_path
from wfcrawl.web.problems import ProblemError
from wfcrawl.web.sessions import Session, Sessions, check_csrf


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    seconds = int(((end or datetime.now(timezone.utc)) - start).total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("wfcrawl.web", "templates"), autoescape=select_autoescape(),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.globals["duration"] = _duration
    return env


templates = Jinja2Templates(env=_environment())


def sessions(request: Request) -> Sessions:
    return request.app.state.sessions  # type: ignore[no-any-return]


def session(request: Request) -> Session | None:
    """The request's session (read once per request)."""
    if "wfcrawl.session" not in request.scope:
        request.scope["wfcrawl.session"] = sessions(request).read(request)
    return request.scope["wfcrawl.session"]  # type: ignore[no-any-return]


async def signed_in(request: Request) -> ApiKey:
    """The signed-in key; 401 otherwise (a browser is sent to the sign-in page instead)."""
    key = sessions(request).user(session(request))
    if key is None:
        raise ProblemError(401, "sign in with an API key first")
    return key


async def csrf_checked(request: Request) -> None:
    await check_csrf(request, session(request))


async def may_change(key: Annotated[ApiKey, Depends(signed_in)]) -> ApiKey:
    """The signed-in key, which must be allowed to change things (403 for a read-only key)."""
    if key.read_only:
        raise ProblemError(403, f"the API key {key.name!r} is read-only: it can look, not change anything")
    return key


User = Annotated[ApiKey, Depends(signed_in)]
Writer = Annotated[ApiKey, Depends(may_change)]
CsrfChecked = Depends(csrf_checked)

#: A message for the next page shown (after a redirect): a cookie read once.
FLASH = "wfcrawl_flash"


def flash(response: Response, request: Request, message: str) -> None:
    response.set_cookie(FLASH, quote(message[:500]), max_age=60, path=(request.scope.get("root_path") or "") + "/",
                        httponly=True, samesite="lax", secure=request.url.scheme == "https")


def render(request: Request, template: str, status_code: int = 200, /, **context: Any) -> Response:
    current = session(request)
    message = request.cookies.get(FLASH)
    context.update(root=request.scope.get("root_path", ""), user=sessions(request).user(current),
                   csrf_token=current.csrf if current else "", flash=unquote(message) if message else None)
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    if message:
        response.delete_cookie(FLASH, path=(request.scope.get("root_path") or "") + "/")
    return response


def wants_html(request: Request) -> bool:
    """A browser asking for a page (not the API, not the push endpoint)."""
    path = route_path(request.scope)
    if path.startswith(API_PREFIX) or path.startswith("/pubsub/"):
        return False
    return "text/html" in request.headers.get("accept", "") or request.headers.get("hx-request") == "true"


async def problem_page(request: Request, problem: ProblemError) -> Response | None:
    """A problem as a page for browsers (sign-in first for a 401); None for other clients."""
    if not wants_html(request):
        return None
    if problem.status == 401:
        here = route_path(request.scope) or "/"
        if request.headers.get("hx-request") == "true":
            # htmx refreshing a fragment: the whole page goes to the sign-in form (the session
            # ended), not the form into the fragment.
            here = request.headers.get("hx-current-url", "") or here
            here = urlsplit(here).path[len(request.scope.get("root_path", "")):] or "/"
            login = f"{request.scope.get('root_path', '')}/login?next={quote(here, safe='/')}"
            return Response(status_code=200, headers={"HX-Redirect": login})
        login = f"{request.scope.get('root_path', '')}/login?next={quote(here, safe='/')}"
        return RedirectResponse(login, status_code=303)
    response = render(request, "problem.html", problem.status, problem=problem.body())
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response
