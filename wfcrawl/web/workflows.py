"""The workflows pages: the registered (and bundled) documents, an editor, launching.

``/workflows`` lists them with where each comes from, its schedule and its
last execution; ``/workflows/<name>`` shows its source with line numbers, an
editor and the launch form. The editor (``/workflows/new`` for a new one) posts
the text to be validated (``action=validate``) or registered (``action=save``);
either way a document with problems comes back with each problem located
(``file:line:col: path: message``, as ``wfcrawl validate`` prints it) and shown
under its line of the source. Registering and launching go through
:class:`wfcrawl.web.services.Services`, as the API does, and into the audit log.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from starlette.responses import RedirectResponse, Response

from wfcrawl.cron.service import schedule_of
from wfcrawl.exceptions import WorkflowError
from wfcrawl.launcher.checks import LaunchRequest
from wfcrawl.launcher.launch import LauncherBusyError, LaunchRejectedError
from wfcrawl.launcher.registry import NAME
from wfcrawl.web.api import launch_problem, path_pattern
from wfcrawl.web.pages import CsrfChecked, User, Writer, flash, render
from wfcrawl.web.problems import ProblemError
from wfcrawl.web.services import Services, services
from wfcrawl.workflow.bundled import bundled_document

router = APIRouter(include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
Name = Annotated[str, Path(pattern=path_pattern(NAME))]
MAX_DOCUMENT = 1_000_000


def _source(svc: Services, name: str, text: str) -> str:
    return "bundled with wfcrawl" if bundled_document(name) == text else "registered"


def _schedule(text: str, name: str) -> str:
    try:
        found = schedule_of(text, name)
    except WorkflowError:
        return "invalid schedule"
    if found is None:
        return ""
    schedule = found[1]
    return f"{schedule.cron} ({schedule.timezone}){'' if schedule.enabled else ', disabled'}"


@router.get("/workflows")
def workflows_page(request: Request, key: User, svc: Svc) -> Response:
    rows: list[dict[str, Any]] = []
    for name in svc.registry.names():
        text = svc.registry.get(name) or ""
        last = svc.launcher.store.list(workflow=name, limit=1)
        rows.append({"name": name, "source": _source(svc, name, text), "schedule": _schedule(text, name),
                     "last": last[0] if last else None, "lines": len(text.splitlines())})
    return render(request, "workflows.html", active="workflows", workflows=rows)


def _annotated(text: str, problems: list[Any]) -> list[dict[str, Any]]:
    """The document's lines, each with the problems located on it."""
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # the document's final newline ends its last line; it starts no other
    at: dict[int, list[Any]] = {}
    for p in problems:
        at.setdefault(min(max(p.line, 1), len(lines)), []).append(p)
    return [{"n": i, "text": line, "problems": at.get(i, [])} for i, line in enumerate(lines, 1)]


def _editor(request: Request, svc: Svc, *, name: str | None, text: str, problems: list[Any] | None = None,
            status_code: int = 200, message: str | None = None, valid: bool = False) -> Response:
    existing = svc.registry.get(name) if name else None
    return render(request, "workflow.html", status_code, active="workflows", name=name, text=text,
                  source=_source(svc, name, existing) if name and existing else None, problems=problems or [],
                  lines=_annotated(text, problems or []), message=message, valid=valid,
                  schedule=_schedule(text, name or "<workflow>"),
                  recent=svc.launcher.store.list(workflow=name, limit=10) if name else [])


@router.get("/workflows/new")
def new_workflow(request: Request, key: User, svc: Svc) -> Response:
    return _editor(request, svc, name=None, text="")


@router.get("/workflows/{name}")
def workflow_page(name: Name, request: Request, key: User, svc: Svc) -> Response:
    text = svc.registry.get(name)
    if text is None:
        raise ProblemError(404, f"no workflow named {name!r}")
    return _editor(request, svc, name=name, text=text)


@router.post("/workflows/edit", dependencies=[CsrfChecked])
def edit(request: Request, key: User, svc: Svc, document: Annotated[str, Form(max_length=MAX_DOCUMENT)] = "",
         action: Annotated[str, Form(pattern="^(validate|save)$")] = "validate",
         name: Annotated[str, Form(max_length=64)] = "") -> Response:
    """Validate, or register (``save``, not for read-only keys), a pasted or edited document."""
    text = document.replace("\r\n", "\n")
    shown = name if NAME.match(name) else None
    if action == "save" and key.read_only:
        raise ProblemError(403, f"the API key {key.name!r} is read-only: it can look, not change anything")
    try:
        if action == "save":
            registered, created = svc.register(key, text)
        else:
            plan = svc.launcher.validate(text, name=f"<{shown or 'pasted'}>")
    except WorkflowError as exc:
        return _editor(request, svc, name=shown, text=text, problems=list(exc.problems), status_code=422)
    except LaunchRejectedError as exc:
        return _editor(request, svc, name=shown, text=text, message=exc.message, status_code=422)
    if action == "validate":
        return _editor(request, svc, name=shown, text=text, valid=True,
                       message=f"Valid: workflow {plan.name}, {len(plan.phases)} phase(s).")
    response = RedirectResponse(f"{request.scope.get('root_path', '')}/workflows/{registered}", status_code=303)
    flash(response, request, f"Workflow {registered} {'registered' if created else 'saved'}.")
    return response


@router.post("/workflows/{name}/launch", dependencies=[CsrfChecked])
def launch(name: Name, request: Request, key: Writer, svc: Svc,
           base_url: Annotated[str, Form(max_length=2048)] = "",
           execution_id: Annotated[str, Form(max_length=64)] = "") -> Response:
    """Launch the registered document with its arguments (``base_url``), under a chosen id if given."""
    if svc.registry.get(name) is None:
        raise ProblemError(404, f"no workflow named {name!r}")
    request_ = LaunchRequest(workflow=name, base_url=base_url.strip() or None, origin="dashboard",
                             execution_id=execution_id.strip() or None, params={"api_key": key.name})
    try:
        execution, _ = svc.launch(key, request_, "dashboard")
    except (LaunchRejectedError, LauncherBusyError) as exc:
        raise launch_problem(exc) from None
    response = RedirectResponse(f"{request.scope.get('root_path', '')}/executions/{execution.id}", status_code=303)
    flash(response, request, f"Execution {execution.id} of {name} started.")
    return response
