"""The API's request and response bodies (pydantic): the OpenAPI document is generated from them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wfcrawl.exceptions import WorkflowError
from wfcrawl.storage.executions import Execution

#: An execution's status (wfcrawl.storage.executions.STATUSES): queued, running, then its
#: outcome (docs/operations.md#outcomes).
Status = Literal["queued", "running", "succeeded", "degraded", "failed", "cancelled"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentBody(_Strict):
    document: str = Field(description="A workflow document (YAML or JSON text).")


class LaunchArgs(_Strict):
    base_url: str | None = Field(None, description="The site the workflow's relative start URLs are resolved against.")


class LaunchBody(_Strict):
    """A registered workflow by name, or a document; as a Pub/Sub launch message (docs/launching.md)."""

    workflow: str | None = Field(None, description="The name of a registered (or bundled) workflow.")
    document: str | None = Field(None, description="A workflow document (YAML or JSON text).")
    args: LaunchArgs | None = None
    execution_id: str | None = Field(
        None, description="Names the execution; a second launch with the same id starts nothing.")

    def message(self) -> dict[str, Any]:
        """As a launch message (:func:`wfcrawl.launcher.messages.launch_request` checks the rest)."""
        return self.model_dump(exclude_none=True)


class Problem(BaseModel):
    """Problem details (RFC 9457); extension members as documented in docs/launching.md."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str


class WorkflowProblem(BaseModel):
    line: int
    column: int
    path: str
    message: str
    kind: str

    @classmethod
    def all(cls, exc: WorkflowError) -> list[WorkflowProblem]:
        return [cls(line=p.line, column=p.column, path=p.path, message=p.message, kind=p.kind) for p in exc.problems]


class ValidationResult(BaseModel):
    valid: bool
    name: str | None
    problems: list[WorkflowProblem]


class Registered(BaseModel):
    name: str
    created: bool


class WorkflowList(BaseModel):
    workflows: list[str]


class WorkflowDocument(BaseModel):
    name: str
    document: str


class Reason(BaseModel):
    """Why an outcome is what it is (wfcrawl.outcome.Reason): a stable code, a message, and
    details that depend on the code (item_type, field, phase, node, expected, actual, ...)."""

    model_config = ConfigDict(extra="allow")
    code: str = Field(description="no_pages, items_below_expectation, timed_out, ... (docs/operations.md#outcomes).")
    message: str


class ExecutionOut(BaseModel):
    id: str
    workflow: str
    status: Status = Field(description="queued, running, then the outcome: succeeded, degraded, failed or cancelled.")
    reasons: list[Reason] = Field(description="Why the outcome is what it is (empty while running and when it "
                                  "plainly succeeded).")
    params: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    finish_reason: str | None
    stats: dict[str, Any]
    error: str | None

    @classmethod
    def of(cls, execution: Execution) -> ExecutionOut:
        # Built, not validated: the store's records are ours (validating every stats
        # value of a 100-execution list was most of the list endpoint's time).
        return cls.model_construct(
            id=execution.id, workflow=execution.workflow, status=execution.status,
            reasons=[Reason.model_construct(**r) for r in execution.reasons], params=execution.params,
            created_at=execution.created_at, started_at=execution.started_at, finished_at=execution.finished_at,
            finish_reason=execution.finish_reason, stats=execution.stats, error=execution.error)


class ExecutionReply(BaseModel):
    execution: ExecutionOut


class Started(BaseModel):
    execution: ExecutionOut
    started: bool


class ExecutionList(BaseModel):
    executions: list[ExecutionOut]


class Health(BaseModel):
    status: Literal["ok"]
    running: int
