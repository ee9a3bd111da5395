"""The dashboard's routes: sign in and out, and the executions list at ``/``.

The list is filtered by workflow, status and a search (id, workflow, error and
reasons), newest first, a page of :data:`PAGE_SIZE` at a time; ticked rows are
cancelled together (``POST /executions/cancel``). The other pages are in
:mod:`wfcrawl.web.execution` (one execution), :mod:`wfcrawl.web.workflows` and
:mod:`wfcrawl.web.operations` (schedules, fleet, audit log); they share
:mod:`wfcrawl.web.pages` (:func:`~wfcrawl.web.pages.render`, ``User``,
``CsrfChecked``) and :mod:`wfcrawl.web.services` (the launcher and the audit log).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from wfcrawl.storage.executions import FINAL_STATUSES, STATUSES, Execution
from wfcrawl.web.auth import AuthError
from wfcrawl.web.pages import CsrfChecked, Writer, flash, render, session, sessions
from wfcrawl.web.problems import ProblemError
from wfcrawl.web.services import Services, actor, services
from wfcrawl.web.views import totals

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
Svc = Annotated[Services, Depends(services)]


def _local(path: str | None) -> str:
    """Where to go after signing in: a path of this app only (never another site)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)


#: Executions per page of the list; the filters look at the newest SCAN_LIMIT.
PAGE_SIZE = 25
SCAN_LIMIT = 2000


def _matches(execution: Execution, words: list[str]) -> bool:
    text = " ".join([execution.id, execution.workflow, execution.status, execution.error or "",
                     *(f"{r.get('code', '')} {r.get('message', '')}" for r in execution.reasons)]).lower()
    return all(word in text for word in words)


@router.get("/")
def executions_page(request: Request, svc: Svc, status: Annotated[str | None, Query(max_length=20)] = None,
                    workflow: Annotated[str | None, Query(max_length=200)] = None,
                    q: Annotated[str | None, Query(max_length=200)] = None,
                    page: Annotated[int, Query(ge=1, le=10_000)] = 1) -> Response:
    if sessions(request).user(session(request)) is None:
        return _redirect(request, "/login")  # the front door: whoever knocks is shown the way in
    chosen = status if status in STATUSES else None
    workflow = (workflow or "").strip() or None
    words = (q or "").lower().split()
    store = svc.launcher.store
    found = store.list(workflow=workflow, status=chosen, limit=SCAN_LIMIT if words else page * PAGE_SIZE + 1)
    if words:
        found = [e for e in found if _matches(e, words)]
    shown = found[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    workflows = sorted({e.workflow for e in store.list(limit=500)} | set(svc.registry.names()))
    query = {k: v for k, v in (("status", chosen), ("workflow", workflow), ("q", q)) if v}
    return render(request, "executions.html", active="executions", executions=shown,
                  totals={e.id: totals(e.stats) for e in shown}, statuses=STATUSES, status=chosen,
                  workflow=workflow, workflows=workflows, q=q or "", page=page,
                  more=len(found) > page * PAGE_SIZE, query=query, final=FINAL_STATUSES)


@router.post("/executions/cancel", dependencies=[CsrfChecked])
async def cancel_many(request: Request, svc: Svc, key: Writer) -> Response:
    """Cancel the ticked executions (those that ended already are left as they are, and said so)."""
    form = await request.form()
    ids = [str(v) for v in form.getlist("id")][:PAGE_SIZE * 4]
    cancelled, skipped = [], []
    for execution_id in ids:
        try:
            await run_in_threadpool(svc.cancel, key, execution_id)
            cancelled.append(execution_id)
        except ProblemError as exc:
            skipped.append(f"{execution_id} ({exc.detail})")
    message = f"Cancelled {len(cancelled)} execution(s)" + (f"; not cancelled: {', '.join(skipped)}" if skipped else "")
    back = str(form.get("back") or "/")
    response = _redirect(request, _local(back))
    flash(response, request, message)
    return response


@router.get("/login")
def login_page(request: Request, svc: Svc, next: str | None = None, token: str | None = None) -> Response:
    current = session(request)
    if sessions(request).user(current) is not None:
        return _redirect(request, _local(next))
    if token is not None and svc.token_login:
        # The link `wfcrawl serve` prints with its one-time key (loopback only).
        return login(request, svc, token, next or "/")
    fresh = current or sessions(request).anonymous()
    request.scope["wfcrawl.session"] = fresh
    response = render(request, "login.html", next=_local(next))
    if current is None:
        sessions(request).write(response, request, fresh)
    return response


@router.post("/login", dependencies=[CsrfChecked])
def login(request: Request, svc: Svc, api_key: Annotated[str, Form(max_length=512)] = "",
          next: Annotated[str, Form(max_length=2048)] = "/") -> Response:
    try:
        key = svc.auth.check(api_key.strip())
    except AuthError:
        logger.warning("Dashboard sign-in refused (an invalid API key) from %s",
                       request.client.host if request.client else "?")
        return render(request, "login.html", 401, next=_local(next), error="This API key is not valid.")
    new = sessions(request).signed_in(key)
    response = _redirect(request, _local(next))
    sessions(request).write(response, request, new)  # a new session (and token): no fixation
    svc.record(actor(key), "session.signed_in", key.name)
    return response


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request, svc: Svc) -> Response:
    key = sessions(request).user(session(request))
    response = _redirect(request, "/login")
    sessions(request).clear(response, request)
    if key is not None:
        svc.record(actor(key), "session.signed_out", key.name)
    return response
