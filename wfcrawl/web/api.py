"""The HTTP API (``/v1/``): workflows and executions, for people and tools.

Every request needs an API key (401 without a valid one; 403 when a read-only
key asks to change something) and is rate limited per key (429 with
``Retry-After``); :class:`wfcrawl.web.middleware.ApiKeyGate` checks both before
the request is even read, so nothing is validated or started before. Errors are
problem details (:mod:`wfcrawl.web.problems`). The OpenAPI document
(``/openapi.json``) is generated from these handlers and :mod:`wfcrawl.web.models`.

Handlers are plain functions: FastAPI runs them in its thread pool, where the
launcher and the stores may block.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel

from wfcrawl.exceptions import WorkflowError
from wfcrawl.launcher.checks import EXECUTION_ID as LAUNCHER_EXECUTION_ID
from wfcrawl.launcher.launch import LaunchConflictError, LauncherBusyError, LaunchRejectedError
from wfcrawl.launcher.messages import launch_request
from wfcrawl.launcher.registry import NAME
from wfcrawl.web.auth import ApiKey
from wfcrawl.web.models import (
    DocumentBody,
    ExecutionList,
    ExecutionOut,
    ExecutionReply,
    LaunchBody,
    Registered,
    Started,
    Status,
    ValidationResult,
    WorkflowDocument,
    WorkflowList,
    WorkflowProblem,
)
from wfcrawl.web.problems import ProblemError, responses
from wfcrawl.web.services import Services, services

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 200


def path_pattern(rx: re.Pattern[str]) -> str:
    """A launcher pattern (anchored with ``\\Z``) for path parameters and JSON Schema: there
    (pydantic's Rust engine, ECMA regular expressions) ``$`` ends the text, and ``\\Z`` is unknown."""
    return "^" + rx.pattern.removesuffix(r"\Z") + "$"


#: Execution ids and workflow names in paths, as the launcher allows them.
EXECUTION_ID = path_pattern(LAUNCHER_EXECUTION_ID)

# Declared for the OpenAPI document (either header carries the key); ApiKeyGate checks them.
_bearer = HTTPBearer(auto_error=False, description="An API key (wfk_...).")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (wfk_...).")

router = APIRouter(prefix="/v1", dependencies=[Security(_bearer), Security(_header)],
                   responses=responses(400, 401, 429))


# Dependencies that do not block are coroutines: FastAPI runs plain functions in its
# thread pool, a hop each that costs more than their work.

async def api_key(request: Request) -> ApiKey:
    """The request's API key (authenticated by ApiKeyGate)."""
    return cast(ApiKey, request.state.api_key)


async def write_key(key: Annotated[ApiKey, Depends(api_key)]) -> ApiKey:
    """The request's API key, which must be allowed to change things."""
    if key.read_only:
        raise ProblemError(403, f"the API key {key.name!r} is read-only")
    return key


Reader = Annotated[ApiKey, Depends(api_key)]
Writer = Annotated[ApiKey, Depends(write_key)]
Svc = Annotated[Services, Depends(services)]


def reply(model: BaseModel, status: int = 200) -> Response:
    """``model`` as the JSON response, serialized once.

    A handler returning a Response skips FastAPI's validation of its return value
    (for a plain-function handler, another thread pool hop); the operations still
    name their models (``response_model``) for the OpenAPI document.
    """
    return Response(model.model_dump_json().encode(), status, media_type="application/json")


def launch_problem(exc: LaunchRejectedError | LauncherBusyError) -> ProblemError:
    """The answer to a launch the launcher refused (the API's and the dashboard's)."""
    if isinstance(exc, LauncherBusyError):
        return ProblemError(429, str(exc), kind="busy", headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, LaunchConflictError):
        return ProblemError(409, exc.message, kind="conflict")
    return ProblemError(422, exc.message, kind="launch-rejected", problems=exc.problems)


# ------------------------------------------------------------ workflows

@router.post("/validate", summary="Validate a workflow document (nothing is stored or started)",
             response_model=ValidationResult)
def validate(body: DocumentBody, key: Reader, svc: Svc) -> Response:
    try:
        plan = svc.launcher.validate(body.document)
    except WorkflowError as exc:
        return reply(ValidationResult(valid=False, name=None, problems=WorkflowProblem.all(exc)))
    except LaunchRejectedError as exc:
        policy = WorkflowProblem(line=1, column=1, path="$", message=exc.message, kind="policy")
        return reply(ValidationResult(valid=False, name=None, problems=[policy]))
    return reply(ValidationResult(valid=True, name=plan.name, problems=[]))


@router.get("/workflows", summary="List registered (and bundled) workflows", response_model=WorkflowList)
def list_workflows(key: Reader, svc: Svc) -> Response:
    return reply(WorkflowList(workflows=svc.registry.names()))


@router.post("/workflows", status_code=201, summary="Register a workflow under its name (replaces an existing one)",
             response_model=Registered,
             responses={200: {"description": "Replaced.", "model": Registered}, **responses(403, 422)})
def register(body: DocumentBody, key: Writer, svc: Svc) -> Response:
    try:
        name, created = svc.register(key, body.document)
    except WorkflowError as exc:
        problems = [p.model_dump() for p in WorkflowProblem.all(exc)]
        raise ProblemError(422, "invalid workflow", kind="invalid-workflow", problems=problems) from None
    except LaunchRejectedError as exc:
        raise ProblemError(422, exc.message, kind="invalid-workflow", problems=[]) from None
    return reply(Registered(name=name, created=created), 201 if created else 200)


@router.get("/workflows/{name}", summary="A registered workflow's document", response_model=WorkflowDocument,
            responses=responses(404))
def get_workflow(name: Annotated[str, Path(pattern=path_pattern(NAME))], key: Reader, svc: Svc) -> Response:
    document = svc.registry.get(name)
    if document is None:
        raise ProblemError(404, f"no workflow named {name!r}")
    return reply(WorkflowDocument(name=name, document=document))


# ------------------------------------------------------------ executions

@router.post("/executions", status_code=201,
             summary="Start an execution (validated first; idempotent with Idempotency-Key or execution_id)",
             response_model=Started,
             responses={200: {"description": "Already started before (same key or id).", "model": Started},
                        **responses(403, 409, 422)})
def start(body: LaunchBody, key: Writer, svc: Svc,
          idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                                        max_length=MAX_IDEMPOTENCY_KEY)] = None) -> Response:
    # Scoped by key: one client's idempotency keys cannot collide with another's.
    launch_key = f"api:{key.name}:{idempotency_key}" if idempotency_key else None
    try:
        launch = launch_request(body.message(), origin="api", launch_key=launch_key, params={"api_key": key.name})
        execution, started = svc.launch(key, launch, "api")
    except (LaunchRejectedError, LauncherBusyError) as exc:
        raise launch_problem(exc) from None
    return reply(Started(execution=ExecutionOut.of(execution), started=started), 201 if started else 200)


@router.get("/executions", summary="List executions, newest first", response_model=ExecutionList)
def list_executions(key: Reader, svc: Svc, workflow: str | None = None, status: Status | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
    found = svc.launcher.store.list(workflow=workflow, status=status, limit=limit)
    return reply(ExecutionList(executions=[ExecutionOut.of(e) for e in found]))


ExecutionId = Annotated[str, Path(pattern=EXECUTION_ID)]


@router.get("/executions/{execution_id}", summary="An execution: status, stats, error",
            response_model=ExecutionReply, responses=responses(404))
def get_execution(execution_id: ExecutionId, key: Reader, svc: Svc) -> Response:
    execution = svc.launcher.store.get(execution_id)
    if execution is None:
        raise ProblemError(404, f"no execution {execution_id!r}")
    return reply(ExecutionReply(execution=ExecutionOut.of(execution)))


@router.post("/executions/{execution_id}/cancel", status_code=202,
             summary="Cancel an execution (its crawl is stopped)", response_model=ExecutionReply,
             responses=responses(403, 404, 409))
def cancel(execution_id: ExecutionId, key: Writer, svc: Svc) -> Response:
    try:
        after = svc.cancel(key, execution_id)
    except ProblemError as exc:
        current = svc.launcher.store.get(execution_id) if exc.status == 409 else None
        if current is not None:  # the API's answer says what it is now
            raise ProblemError(409, str(exc.detail), kind="already-final",
                               execution=ExecutionOut.of(current).model_dump(mode="json")) from None
        raise
    return reply(ExecutionReply(execution=ExecutionOut.of(after)), 202)
