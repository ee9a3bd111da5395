"""The page of one execution (``/executions/<id>``), live while it runs.

The page holds a fragment (``/executions/<id>/live``) that htmx fetches again
every ``WFCRAWL_WEB_REFRESH`` seconds while the execution runs, replacing
itself, and no more once it has ended: status and outcome, the per-phase
table, pages/s over time (an SVG drawn here from the launcher's samples),
errors and drops by reason, the funnel, the expectation checks, the comparison
with the previous execution of the workflow, the last items with their
provenance and the log lines (``#L<n>`` and ``#item-<n>`` anchors link to one).

Cancel and re-run are forms (CSRF-checked) that go through
:class:`wfcrawl.web.services.Services`, as the API does, and into the audit log.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from starlette.responses import RedirectResponse, Response

from wfcrawl.exceptions import WorkflowError
from wfcrawl.launcher.checks import LaunchRequest
from wfcrawl.launcher.launch import LauncherBusyError, LaunchRejectedError
from wfcrawl.storage.executions import FINAL_STATUSES, Execution
from wfcrawl.web.api import EXECUTION_ID, launch_problem
from wfcrawl.web.items import item_fill_rates, last_items
from wfcrawl.web.pages import CsrfChecked, User, Writer, flash, render
from wfcrawl.web.problems import ProblemError
from wfcrawl.web.services import Services, services
from wfcrawl.web.views import (
    DROPS,
    ERRORS,
    by_reason,
    chart,
    compare,
    expectation_checks,
    fill_rates,
    funnel,
    phase_rows,
    samples_of,
    totals,
)

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
ExecutionId = Annotated[str, Path(pattern=EXECUTION_ID)]
#: Seconds between two refreshes of a running execution's page.
REFRESH_SECONDS = 2
#: Items shown (the newest of the default sink's file).
LAST_ITEMS = 10


def _execution(svc: Services, execution_id: str) -> Execution:
    execution = svc.launcher.store.get(execution_id)
    if execution is None:
        raise ProblemError(404, f"no execution {execution_id!r}")
    return execution


def _seconds(execution: Execution) -> float:
    if execution.started_at is None:
        return 0.0
    end = execution.finished_at or datetime.now(timezone.utc)
    return max(0.0, (end - execution.started_at).total_seconds())


def _previous(svc: Services, execution: Execution) -> Execution | None:
    """The execution of the same workflow created just before this one, that has ended."""
    for other in svc.launcher.store.list(workflow=execution.workflow, limit=50):
        if other.created_at < execution.created_at and other.status in FINAL_STATUSES:
            return other
    return None


def _expect(svc: Services, execution: Execution) -> Any:
    """The workflow's expectations, from the document the execution ran (or the registered one)."""
    text = svc.launcher.document(execution) or svc.registry.get(execution.workflow)
    if text is None:
        return None
    try:
        return svc.launcher.validate(text, name=execution.workflow).expect
    except (WorkflowError, LaunchRejectedError):
        return None


def _rates(execution: Execution) -> dict[str, float]:
    """Fill rates: counted by the crawl (``expect:`` fill rates), else from its items file."""
    return fill_rates(execution.stats) or item_fill_rates(execution.params.get("items_file"))


def _compared(execution: Execution, previous: Execution) -> Any:
    return compare(execution.stats, previous.stats, _rates(execution), _rates(previous))


def live_context(svc: Services, execution: Execution) -> dict[str, Any]:
    stats = execution.stats
    seconds = _seconds(execution)
    running_here = execution.id in svc.launcher.running()
    log = svc.launcher.log_tail(execution.id) if running_here else None
    if log is None:
        tail = stats.get("wfcrawl/launcher/log_tail")
        log = tail.splitlines() if isinstance(tail, str) and tail else []
    previous = _previous(svc, execution)
    items_file = execution.params.get("items_file")
    return {
        "e": execution, "final": execution.status in FINAL_STATUSES, "refresh": REFRESH_SECONDS,
        "totals": totals(stats), "phases": phase_rows(stats, seconds), "funnel": funnel(stats, seconds),
        "errors": by_reason(stats, ERRORS), "drops": by_reason(stats, DROPS),
        "chart": chart(samples_of(execution, svc.launcher.samples(execution.id))),
        "checks": expectation_checks(stats, _expect(svc, execution)),
        "previous": previous, "compared": _compared(execution, previous) if previous else [],
        "items": last_items(items_file if isinstance(items_file, str) else None, LAST_ITEMS), "items_file": items_file,
        "log": log, "running_here": running_here,
        # What a re-run can run: the same document (archived here), the latest registered one.
        "same": svc.launcher.document(execution) is not None,
        "latest": svc.registry.get(str(execution.params.get("registered_workflow") or execution.workflow)) is not None,
    }


@router.get("/executions/{execution_id}")
def execution_page(execution_id: ExecutionId, request: Request, key: User, svc: Svc) -> Response:
    return render(request, "execution.html", active="executions", **live_context(svc, _execution(svc, execution_id)))


@router.get("/executions/{execution_id}/live")
def execution_live(execution_id: ExecutionId, request: Request, key: User, svc: Svc) -> Response:
    return render(request, "execution_live.html", **live_context(svc, _execution(svc, execution_id)))


def _back(request: Request, execution_id: str) -> RedirectResponse:
    return RedirectResponse(f"{request.scope.get('root_path', '')}/executions/{execution_id}", status_code=303)


@router.post("/executions/{execution_id}/cancel", dependencies=[CsrfChecked])
def cancel(execution_id: ExecutionId, request: Request, key: Writer, svc: Svc) -> Response:
    svc.cancel(key, execution_id)
    response = _back(request, execution_id)
    flash(response, request, f"Execution {execution_id} cancelled.")
    return response


@router.post("/executions/{execution_id}/rerun", dependencies=[CsrfChecked])
def rerun(execution_id: ExecutionId, request: Request, key: Writer, svc: Svc,
          document: Annotated[str, Form(pattern="^(same|latest)$")] = "same") -> Response:
    """Run again: the same document and arguments, or the workflow's latest registered document."""
    execution = _execution(svc, execution_id)
    name = execution.params.get("registered_workflow")
    base_url = execution.params.get("base_url")
    params = {"rerun_of": execution.id, "api_key": key.name}
    if document == "same":
        text = svc.launcher.document(execution)
        if text is None:
            raise ProblemError(409, f"the document execution {execution.id} ran is not kept on this machine: "
                               "re-run it with the latest document", kind="conflict")
        launch = LaunchRequest(document=text, workflow=name if isinstance(name, str) else None,
                               base_url=base_url if isinstance(base_url, str) else None, origin="dashboard",
                               params=params)
    else:
        registered = str(name or execution.workflow)
        if svc.registry.get(registered) is None:
            raise ProblemError(409, f"no workflow named {registered!r} is registered", kind="conflict")
        launch = LaunchRequest(workflow=registered, base_url=base_url if isinstance(base_url, str) else None,
                               origin="dashboard", params=params)
    try:
        started, _ = svc.launch(key, launch, "dashboard")
    except (LaunchRejectedError, LauncherBusyError) as exc:
        raise launch_problem(exc) from None
    response = _back(request, started.id)
    flash(response, request, f"Re-run of {execution.id} ({'same document' if document == 'same' else 'latest document'}) started.")
    return response
