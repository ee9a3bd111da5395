"""Checks of untrusted launch requests: what may run, before anything starts.

Size, arguments, the document validated and compiled with the script-module
allowlist, no environment variables unless allowed, and every start URL
through the SSRF policy (after DNS). Used by :class:`wfcrawl.launcher.launch.Launcher`
and by the API's validate/register endpoints.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from wfcrawl.exceptions import Problem, WfcrawlError, WorkflowError
from wfcrawl.launcher.config import LauncherConfig
from wfcrawl.launcher.registry import WorkflowRegistry
from wfcrawl.middlewares.ssrf import Refusal, url_port
from wfcrawl.workflow import Plan, load_text

#: Caller-chosen execution ids: they name a directory and appear in URLs.
EXECUTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: Seconds a busy launcher asks callers to wait before trying again.
BUSY_RETRY_AFTER = 10


class LaunchRejectedError(WfcrawlError):
    """The request cannot run as it is (retrying the same request cannot help)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.message = message
        self.problems = list(problems)
        super().__init__("\n".join([message, *self.problems]))


class LauncherBusyError(WfcrawlError):
    """This launcher runs ``WFCRAWL_LAUNCHER_MAX_CRAWLS`` crawls already: try later."""

    retry_after = BUSY_RETRY_AFTER


@dataclass(frozen=True)
class LaunchRequest:
    """What to run: ``document`` (untrusted text) or ``workflow`` (a registered name);
    with both, the document runs and the name is recorded."""

    document: str | None = None
    workflow: str | None = None
    base_url: str | None = None
    execution_id: str | None = None
    launch_key: str | None = None
    origin: str = "api"
    params: dict[str, Any] = field(default_factory=dict)  # recorded on the execution


class RequestChecker:
    """:meth:`validate` a document, :meth:`check` a whole request (base of the Launcher)."""

    def __init__(self, config: LauncherConfig, registry: WorkflowRegistry | None) -> None:
        self.config = config
        self.registry = registry

    def validate(self, text: str, *, name: str = "<workflow>", base_url: str | None = None) -> Plan:
        """Check an untrusted document: size, schema, semantics, script allowlist, environment.

        Raises :class:`WorkflowError` (located problems) or :class:`LaunchRejectedError`.
        """
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > self.config.max_document_bytes:
            raise LaunchRejectedError(
                f"the workflow document is {size} bytes; the limit is {self.config.max_document_bytes}"
            )
        try:
            plan = load_text(text, name, base_url=base_url, script_modules=self.config.script_modules)
        except yaml.YAMLError as exc:
            # PyYAML refuses some characters before parsing starts (found by fuzzing the API).
            raise WorkflowError([Problem(name, 1, 1, "$", f"YAML error: {exc}", "parse")]) from None
        secrets = sorted(set(plan.env_names) - self.config.allowed_env)
        if secrets:
            # A form node would send these values to the document author's site.
            raise LaunchRejectedError(
                "the workflow reads environment variables that untrusted workflows may not read: "
                + ", ".join(secrets) + " (WFCRAWL_LAUNCHER_ALLOWED_ENV)"
            )
        return plan

    def check(self, request: LaunchRequest) -> tuple[Plan, str]:
        """Validate an untrusted request: (plan, document text) or :class:`LaunchRejectedError`."""
        text = self._document(request)
        if request.execution_id is not None and not EXECUTION_ID.match(request.execution_id):
            raise LaunchRejectedError("execution_id must be 1-64 letters, digits, '_' or '-' (not first)")
        if request.base_url is not None:
            parts = urlsplit(request.base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname or len(request.base_url) > 2048:
                raise LaunchRejectedError("base_url must be an absolute http(s) URL (at most 2048 characters)")
        try:
            plan = self.validate(text, name=f"<{request.origin}>", base_url=request.base_url)
        except WorkflowError as exc:
            raise LaunchRejectedError("invalid workflow", [str(p) for p in exc.problems]) from None
        refused = []
        hosts: dict[tuple[str, int], Refusal | None] = {}  # resolve each host once
        policy = self.config.policy
        for start in plan.start_urls:
            refusal, host = policy.static_refusal(start.url)
            if refusal is None and host is not None:
                key = (host, url_port(start.url))
                if key not in hosts:
                    hosts[key] = policy.host_refusal(*key)
                refusal = hosts[key]
            if refusal is not None:
                refused.append(f"start URL {start.url} refused by the SSRF guard: {refusal.message}")
        if refused:
            raise LaunchRejectedError("start URLs refused", refused)
        return plan, text

    def _document(self, request: LaunchRequest) -> str:
        # Both given (the scheduler passes a registered workflow's text): the text
        # runs, the name is recorded. Messages and API bodies may give only one.
        if request.document is not None:
            return request.document
        if request.workflow is None:
            raise LaunchRejectedError("give either a workflow document or the name of a registered workflow")
        found = self.registry.get(request.workflow) if self.registry is not None else None
        if found is None:
            raise LaunchRejectedError(f"no registered workflow named {request.workflow!r}")
        return found
