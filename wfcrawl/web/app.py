"""The one ASGI application ``wfcrawl serve`` answers with (FastAPI).

=====================  ===========================================================
path                   what
=====================  ===========================================================
``/v1/...``            the HTTP API (:mod:`wfcrawl.web.api`): API keys, rate limits
``/pubsub/push``       Pub/Sub push (:mod:`wfcrawl.web.push`), when enabled
``/healthz``           liveness: ``{"status": "ok", "running": N}``
``/openapi.json``      the OpenAPI document, generated from the handlers
``/``, ``/login``...   the dashboard (:mod:`wfcrawl.web.dashboard`), signed in by session
``/static/...``        the dashboard's stylesheet and scripts (shipped in the package)
=====================  ===========================================================

Middleware, outermost first: security headers, request body limits
(:class:`~wfcrawl.web.middleware.BodyLimits`), the API's key gate; every error is
problem details (:mod:`wfcrawl.web.problems`). :func:`asgi` wraps the app for a
root path; :mod:`wfcrawl.web.server` serves it with uvicorn.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from wfcrawl import __version__
from wfcrawl.web import api, dashboard, execution, operations, workflows
from wfcrawl.web.middleware import ApiKeyGate, BodyLimits, RootPath, SecurityHeaders
from wfcrawl.web.models import Health, Problem
from wfcrawl.web.pages import problem_page
from wfcrawl.web.problems import MEDIA_TYPE, install
from wfcrawl.web.services import Services
from wfcrawl.web.sessions import Sessions

DESCRIPTION = (
    "Register workflows and start, watch and cancel crawls (docs/launching.md). "
    "Errors are problem details (RFC 9457, application/problem+json)."
)


def create_app(services: Services) -> FastAPI:
    config = services.config
    app = FastAPI(title="wfcrawl launcher API", version=__version__, description=DESCRIPTION,
                  docs_url=None, redoc_url=None)  # their pages load scripts from a CDN
    app.state.services = services
    app.state.sessions = Sessions(config.secret_key or secrets.token_urlsafe(32), config.session_max_age,
                                  services.auth)
    install(app, html=problem_page)
    app.add_middleware(ApiKeyGate)
    app.add_middleware(BodyLimits, max_bytes=config.max_body_bytes, timeout=config.body_timeout)
    app.add_middleware(SecurityHeaders)

    @app.get("/healthz", summary="Liveness: the number of crawls this instance runs")
    def healthz() -> Health:
        return Health(status="ok", running=len(services.launcher.running()))

    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
    app.include_router(api.router)
    if services.push is not None:
        from wfcrawl.web.push import route

        app.include_router(route(services.push))
    app.include_router(dashboard.router)
    app.include_router(execution.router)
    app.include_router(workflows.router)
    app.include_router(operations.router)
    app.mount("/static", StaticFiles(packages=[("wfcrawl.web", "static")]), name="static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with problem details in place of its default 422 validation errors."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                             servers=app.servers or None)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                default = operation.get("responses", {}).get("422", {})
                if "application/json" in default.get("content", {}) and MEDIA_TYPE not in default["content"]:
                    del operation["responses"]["422"]  # FastAPI's; invalid requests are 400 problems here
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        schemas["Problem"] = Problem.model_json_schema()
        app.openapi_schema = schema
    return app.openapi_schema


def asgi(app: FastAPI, root_path: str = "") -> ASGIApp:
    """The application as served: under ``root_path`` when a proxy puts it there."""
    return RootPath(app, root_path) if root_path else app
