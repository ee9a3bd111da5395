"""What a document's webhooks may do: reach only allowed addresses, sign with a secret that exists.

A webhook is a POST this machine makes to a URL the document names, signed with
a secret this machine holds: for a launched (untrusted) document, its URL
passes the SSRF policy at load (:func:`webhook_problems`, after DNS) and again
at send time (:func:`guarded_opener`: the address connected to), and its
``secret_env`` must be one of the launcher's allowed variables (a document must
not choose which of this machine's secrets signs what it receives).
"""

from __future__ import annotations

import http.client
import urllib.request
from collections.abc import Collection, Mapping
from typing import Any

from wfcrawl.exceptions import Problem
from wfcrawl.security.resolvers import guarded_connection
from wfcrawl.security.ssrf import AddressPolicy, url_port
from wfcrawl.workflow.plan import Plan, Webhook


def _problem(plan: Plan, hook: Webhook, message: str, where: str = "") -> Problem:
    return Problem(plan.source, hook.line, hook.column, hook.path + where, message, "semantic")


def webhook_problems(
    plan: Plan, *, default_secret: bool, environ: Mapping[str, str], allowed_env: Collection[str] | None = None,
    policy: AddressPolicy | None = None,
) -> list[Problem]:
    """Located problems of the plan's webhooks on this machine.

    A hook needs a secret: its ``secret_env`` set in ``environ`` (and, for
    untrusted documents, in ``allowed_env``), or ``WFCRAWL_WEBHOOKS_SECRET``
    (``default_secret``). With ``policy``, its URL must pass it (DNS resolved:
    blocking, at most one lookup per hook).
    """
    problems = []
    for hook in plan.webhooks:
        if hook.secret_env is not None:
            if allowed_env is not None and hook.secret_env not in allowed_env:
                problems.append(_problem(plan, hook, f"secret_env {hook.secret_env!r} is not one of the variables"
                                                     " launched workflows may read (WFCRAWL_LAUNCHER_ALLOWED_ENV)",
                                         ".secret_env"))
            elif not environ.get(hook.secret_env):
                problems.append(_problem(plan, hook, f"environment variable {hook.secret_env} (this webhook's"
                                                     " secret) is not set", ".secret_env"))
        elif not default_secret:
            problems.append(_problem(plan, hook, "this webhook has no secret to sign with: give secret_env or set"
                                                 " WFCRAWL_WEBHOOKS_SECRET"))
        if policy is not None:
            refusal, host = policy.static_refusal(hook.url)
            if refusal is None and host is not None:
                refusal = policy.host_refusal(host, url_port(hook.url))
            if refusal is not None:
                problems.append(_problem(plan, hook, f"webhook URL refused by the SSRF guard: {refusal.message}",
                                         ".url"))
    return problems


def guarded_opener(policy: AddressPolicy, *handlers: Any) -> urllib.request.OpenerDirector:
    """A urllib opener whose connections go only to addresses ``policy`` allows
    (resolved once, checked, connected to: no DNS rebinding), never through a proxy."""
    create = guarded_connection(policy)

    class _HTTPConnection(http.client.HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = create

    class _HTTPSConnection(http.client.HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = create

    class _HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(_HTTPConnection, req)

    class _HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(_HTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]

    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _HTTPHandler, _HTTPSHandler, *handlers)
