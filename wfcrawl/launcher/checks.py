"""Checks of untrusted launch requests: what may run, before anything starts.

Size, arguments, the document validated and compiled with the script-module
allowlist, no environment variables unless allowed, and every start URL
through the SSRF policy (after DNS). Used by :class:`wfcrawl.launcher.launch.Launcher`
and by the API's validate/register endpoints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from wfcrawl.exceptions import Problem, WfcrawlError, WorkflowError
from wfcrawl.launcher.config import LauncherConfig
from wfcrawl.launcher.registry import WorkflowRegistry
from wfcrawl.security.ssrf import Refusal, url_port
from wfcrawl.security.webhooks import webhook_problems
from wfcrawl.workflow import Plan, load_text
from wfcrawl.workflow.limits import describe_char

#: Caller-chosen execution ids: they name a directory and appear in URLs
#: (``\Z``: ``$`` would let an id end in a newline).
EXECUTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
#: Distinct start URL hosts resolved before a launch (the crawl's guard checks every one).
MAX_PREFLIGHT_HOSTS = 20
#: Seconds a busy launcher asks callers to wait before trying again.
BUSY_RETRY_AFTER = 10


class LaunchRejectedError(WfcrawlError):
    """The request cannot run as it is (retrying the same request cannot help)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.message = message
        self.problems = list(problems)
        super().__init__("\n".join([message, *self.problems]))


class LaunchConflictError(LaunchRejectedError):
    """The launch key (Idempotency-Key, execution id) names an execution of another request."""


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
        problems = webhook_problems(plan, default_secret=self.config.webhooks_secret, environ=os.environ,
                                    allowed_env=self.config.allowed_env)
        if problems:
            raise WorkflowError(problems)
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
        _check_unicode(request)
        text = self._document(request)
        _check_arguments(request)
        try:
            plan = self.validate(text, name=f"<{request.origin}>", base_url=request.base_url)
        except WorkflowError as exc:
            raise LaunchRejectedError("invalid workflow", [str(p) for p in exc.problems]) from None
        self._check_addresses(plan)
        return plan, text

    def _check_addresses(self, plan: Plan) -> None:
        """The webhook and start URLs through the SSRF policy (each host resolved once)."""
        refused = []
        hosts: dict[tuple[str, int], Refusal | None] = {}
        policy = self.config.policy
        # Webhooks first: each is resolved (the crawl checks again when it sends).
        urls = [("webhook URL", h.url) for h in plan.webhooks] + [("start URL", s.url) for s in plan.start_urls]
        for what, url in urls:
            refusal, host = policy.static_refusal(url)
            if refusal is None and host is not None:
                key = (host, url_port(url))
                if key not in hosts and len(hosts) < MAX_PREFLIGHT_HOSTS:
                    hosts[key] = policy.host_refusal(*key)
                refusal = hosts.get(key)
            if refusal is not None:
                refused.append(f"{what} {url} refused by the SSRF guard: {refusal.message}")
        if refused:
            only_starts = all(line.startswith("start URL ") for line in refused)
            raise LaunchRejectedError("start URLs refused" if only_starts else "URLs refused by the SSRF guard", refused)

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


def _check_arguments(request: LaunchRequest) -> None:
    """The execution id and base URL a caller gave are well formed."""
    if request.execution_id is not None and not EXECUTION_ID.match(request.execution_id):
        raise LaunchRejectedError("execution_id must be 1-64 letters, digits, '_' or '-' (not first)")
    if request.base_url is not None:
        try:
            parts = urlsplit(request.base_url)
            scheme, hostname = parts.scheme, parts.hostname
        except ValueError:  # "https://[::1"
            scheme, hostname = "", None
        if scheme not in ("http", "https") or not hostname or len(request.base_url) > 2048:
            raise LaunchRejectedError("base_url must be an absolute http(s) URL (at most 2048 characters)")


def _check_unicode(request: LaunchRequest) -> None:
    """Every string of the request is valid Unicode (a JSON ``"\\ud800"`` is not):
    the document's own characters are located by its loader; the others here."""
    fields: list[tuple[str, Any]] = [
        ("workflow", request.workflow), ("base_url", request.base_url), ("execution_id", request.execution_id),
        ("launch key", request.launch_key), ("params", request.params),
    ]
    while fields:
        name, value = fields.pop()
        if isinstance(value, dict):
            fields.extend((f"{name}.{k}", v) for k, v in value.items())
            fields.extend((f"{name} key {k!r}", k) for k in value)
        elif isinstance(value, list):
            fields.extend((f"{name}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise LaunchRejectedError(
                    f"{name} is not valid Unicode: {describe_char(value[exc.start])} at offset {exc.start}"
                ) from None
