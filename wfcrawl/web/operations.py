"""The schedules, fleet and audit log pages.

``/schedules``: the registered workflows with a ``schedule:`` block (what
``wfcrawl scheduler`` launches), each with its next slot and its last scheduled
executions; enabling or disabling one changes ``schedule.enabled`` in the
registered document (the scheduler reads the registry every tick), audited as
``schedule.enabled`` / ``schedule.disabled``.

``/fleet``: with ``REDIS_URL``, the shared state of the running executions
(:mod:`wfcrawl.web.fleet`); without, a page that says it is not configured.

``/audit``: the audit log, newest first, filtered by target.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from starlette.responses import RedirectResponse, Response

from wfcrawl.cron.service import schedule_of
from wfcrawl.exceptions import WorkflowError
from wfcrawl.launcher.registry import NAME
from wfcrawl.web.api import path_pattern
from wfcrawl.web.fleet import read_fleet
from wfcrawl.web.pages import CsrfChecked, User, Writer, flash, render
from wfcrawl.web.problems import ProblemError
from wfcrawl.web.services import Services, actor, services
from wfcrawl.workflow.schedule import slots_between
from wfcrawl.workflow.source import parse_text

router = APIRouter(include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
Name = Annotated[str, Path(pattern=path_pattern(NAME))]
_BOOL = re.compile(r"(true|false|True|False|TRUE|FALSE|yes|no|on|off)\b")


# ------------------------------------------------------------ schedules

def _next_slot(schedule: Any, now: datetime) -> datetime | None:
    return next(slots_between(schedule, now, now + timedelta(days=400)), None)


@router.get("/schedules")
def schedules_page(request: Request, key: User, svc: Svc) -> Response:
    now = datetime.now(timezone.utc)
    rows: list[dict[str, Any]] = []
    for name in svc.registry.names():
        text = svc.registry.get(name) or ""
        try:
            found = schedule_of(text, name)
        except WorkflowError as exc:
            rows.append({"name": name, "problem": str(exc.problems[0]) if exc.problems else "invalid schedule"})
            continue
        if found is None:
            continue
        schedule = found[1]
        runs = [e for e in svc.launcher.store.list(workflow=name, limit=200) if e.params.get("origin") == "schedule"]
        rows.append({"name": name, "schedule": schedule, "next": _next_slot(schedule, now) if schedule.enabled else None,
                     "last": runs[:3], "problem": None})
    return render(request, "schedules.html", active="schedules", schedules=rows)


def set_enabled(text: str, enabled: bool) -> str | None:
    """The document with ``schedule.enabled`` set (None: its layout is not one this can edit).

    An edit of the text at the positions the parser reports, so that the rest of the
    document (comments, order, quoting) stays as it was.
    """
    source = parse_text(text)
    lines = text.split("\n")
    value = "true" if enabled else "false"
    if ("schedule", "enabled") in source.positions:
        line, column = source.positions[("schedule", "enabled")]
        current = lines[line - 1]
        match = _BOOL.match(current, column - 1)
        if match is None:
            return None
        lines[line - 1] = current[:match.start()] + value + current[match.end():]
        return "\n".join(lines)
    if ("schedule", "cron") not in source.key_positions:
        return None
    line, column = source.key_positions[("schedule", "cron")]
    if lines[line - 1][:column - 1].strip():  # a flow mapping ({cron: ...}) or another key before it
        return None
    lines.insert(line - 1, " " * (column - 1) + f"enabled: {value}")
    return "\n".join(lines)


@router.post("/schedules/{name}", dependencies=[CsrfChecked])
def toggle(name: Name, request: Request, key: Writer, svc: Svc,
           enabled: Annotated[str, Form(pattern="^(true|false)$")]) -> Response:
    text = svc.registry.get(name)
    if text is None:
        raise ProblemError(404, f"no workflow named {name!r}")
    want = enabled == "true"
    changed = set_enabled(text, want)
    if changed is None:
        raise ProblemError(409, f"the schedule of {name} is written in a way this page cannot edit: set "
                           f"schedule.enabled to {str(want).lower()} in the document (Workflows)", kind="conflict")
    svc.launcher.validate(changed, name=name)  # it was valid; an edit of one flag keeps it so
    svc.registry.put(name, changed)
    svc.record(actor(key), "schedule.enabled" if want else "schedule.disabled", name)
    response = RedirectResponse(f"{request.scope.get('root_path', '')}/schedules", status_code=303)
    flash(response, request, f"Schedule of {name} {'enabled' if want else 'disabled'}.")
    return response


# ------------------------------------------------------------ fleet

@router.get("/fleet")
def fleet_page(request: Request, key: User, svc: Svc) -> Response:
    if svc.redis is None:
        return render(request, "fleet.html", active="fleet", configured=False)
    try:
        runs, alive = read_fleet(svc.redis, svc.redis_prefix, svc.launcher.store)
    except Exception as exc:  # Redis down: the page says so (it is what an operator needs to know)
        return render(request, "fleet.html", 503, active="fleet", configured=True, error=str(exc) or type(exc).__name__)
    return render(request, "fleet.html", active="fleet", configured=True, runs=runs, alive=alive)


# ------------------------------------------------------------ audit log

@router.get("/audit")
def audit_page(request: Request, key: User, svc: Svc,
               target: Annotated[str | None, Query(max_length=200)] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> Response:
    entries = svc.audit.list_audit(limit=limit, target=(target or "").strip() or None)
    return render(request, "audit.html", active="audit", entries=entries, target=target or "")
