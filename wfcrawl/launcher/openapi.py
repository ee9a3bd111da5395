"""The OpenAPI 3.0 document of the launcher's HTTP API (served at ``/openapi.json``).

Kept next to the handlers and fuzzed against them (tests/test_launcher_api.py
runs schemathesis over it): an undocumented status code or a response that
does not match its schema fails the tests.
"""

from __future__ import annotations

from typing import Any

from wfcrawl import __version__
from wfcrawl.storage.executions import STATUSES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response = _json(_ref("Error"), description)
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}}
_COMMON = {
    "400": _error("Malformed request (body, query or header)."),
    "401": _error("No API key, or an unknown one."),
    "413": _error("Body larger than WFCRAWL_API_MAX_BODY_BYTES."),
    "429": _error("Rate limit of the key exceeded, or (starting) the launcher is busy.", _RETRY_AFTER),
}

_PROBLEM = {
    "type": "object",
    "required": ["line", "column", "path", "message", "kind"],
    "properties": {
        "line": {"type": "integer"}, "column": {"type": "integer"}, "path": {"type": "string"},
        "message": {"type": "string"},
        "kind": {"type": "string", "enum": ["parse", "schema", "semantic", "policy"]},
    },
}
_EXECUTION = {
    "type": "object",
    "required": ["id", "workflow", "status", "params", "created_at", "started_at", "finished_at",
                 "finish_reason", "stats", "error"],
    "properties": {
        "id": {"type": "string"},
        "workflow": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "params": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": "string", "format": "date-time", "nullable": True},
        "finished_at": {"type": "string", "format": "date-time", "nullable": True},
        "finish_reason": {"type": "string", "nullable": True},
        "stats": {"type": "object", "description": "The crawl's final (or latest) Scrapy stats, plus "
                  "wfcrawl/launcher/exit_code and wfcrawl/launcher/log_tail."},
        "error": {"type": "string", "nullable": True},
    },
}
_LAUNCH = {
    "type": "object",
    "additionalProperties": False,
    "description": "Exactly one of workflow (a registered name) and document.",
    "properties": {
        "workflow": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"},
        "document": {"type": "string", "description": "Workflow document (YAML or JSON text)."},
        "args": {"type": "object", "additionalProperties": False,
                 "properties": {"base_url": {"type": "string", "format": "uri"}}},
        "execution_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
    },
}
_DOCUMENT = {"type": "object", "required": ["document"], "additionalProperties": False,
             "properties": {"document": {"type": "string"}}}


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        parameters: list[dict[str, Any]] | None = None, write: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**_COMMON, **responses}}
    if write:
        op["responses"]["403"] = _error("The API key is read-only.")
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if parameters:
        op["parameters"] = parameters
    return op


def _path_param(name: str, pattern: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": pattern}}


def spec() -> dict[str, Any]:
    execution = _json({"type": "object", "required": ["execution"],
                       "properties": {"execution": _ref("Execution")}}, "The execution.")
    started = _json({"type": "object", "required": ["execution", "started"],
                     "properties": {"execution": _ref("Execution"), "started": {"type": "boolean"}}},
                    "The execution.")
    rejected = _json({"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"}, "problems": {"type": "array"}}}, "The workflow or launch was refused.")
    not_found = _error("No such object.")
    workflow_id = _path_param("name", "^[a-z0-9_-]{1,64}$")
    execution_id = _path_param("id", "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    paths: dict[str, Any] = {
        "/v1/validate": {"post": _op("Validate a workflow document (nothing is stored or started)", {
            "200": _json({"type": "object", "required": ["valid", "name", "problems"], "properties": {
                "valid": {"type": "boolean"}, "name": {"type": "string", "nullable": True},
                "problems": {"type": "array", "items": _ref("Problem")}}}, "Validation result."),
        }, body=_DOCUMENT)},
        "/v1/workflows": {
            "get": _op("List registered (and bundled) workflows", {"200": _json(
                {"type": "object", "required": ["workflows"],
                 "properties": {"workflows": {"type": "array", "items": {"type": "string"}}}}, "Names.")}),
            "post": _op("Register a workflow under its name (replaces an existing one)", {
                "200": _json(_ref("Registered"), "Replaced."), "201": _json(_ref("Registered"), "Registered."),
                "422": rejected}, body=_DOCUMENT, write=True),
        },
        "/v1/workflows/{name}": {"get": _op("A registered workflow's document", {
            "200": _json({"type": "object", "required": ["name", "document"], "properties": {
                "name": {"type": "string"}, "document": {"type": "string"}}}, "The document."),
            "404": not_found}, parameters=[workflow_id])},
        "/v1/executions": {
            "get": _op("List executions, newest first", {"200": _json(
                {"type": "object", "required": ["executions"],
                 "properties": {"executions": {"type": "array", "items": _ref("Execution")}}}, "Executions.")},
                parameters=[
                    {"name": "workflow", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATUSES)}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                ]),
            "post": _op("Start an execution (validated first; idempotent with Idempotency-Key or execution_id)", {
                "200": started, "201": started, "422": rejected}, body=_LAUNCH, write=True,
                parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                             "schema": {"type": "string", "minLength": 1, "maxLength": 200}}]),
        },
        "/v1/executions/{id}": {"get": _op("An execution: status, stats, error", {
            "200": execution, "404": not_found}, parameters=[execution_id])},
        "/v1/executions/{id}/cancel": {"post": _op("Cancel an execution (its crawl is stopped)", {
            "202": execution, "404": not_found,
            "409": _json({"type": "object", "required": ["error", "execution"], "properties": {
                "error": {"type": "string"}, "execution": _ref("Execution")}}, "Already final."),
        }, parameters=[execution_id], write=True)},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "wfcrawl launcher API", "version": __version__,
                 "description": "Register workflows and start, watch and cancel crawls (docs/launching.md)."},
        "paths": paths,
        "security": [{"bearer": []}, {"apiKey": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (wfk_...)."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Problem": _PROBLEM,
                "Execution": _EXECUTION,
                "Registered": {"type": "object", "required": ["name", "created"], "properties": {
                    "name": {"type": "string"}, "created": {"type": "boolean"}}},
            },
        },
    }
