"""The launch message: what a Pub/Sub message's data and an API request body say.

One JSON object, the same for both::

    {"workflow": "shop",                     # a registered (or bundled) workflow, or
     "document": "name: shop\\n...",          # the workflow document itself (YAML/JSON text)
     "args": {"base_url": "https://..."},    # spider arguments (only base_url)
     "execution_id": "shop-2024-06-01"}      # optional: names the run, makes it idempotent

Unknown keys are refused (a typo must not silently launch something else).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from wfcrawl.launcher.launch import LaunchRejectedError, LaunchRequest

FIELDS = frozenset({"workflow", "document", "args", "execution_id"})
#: Spider arguments a message may set: others (``workflow``, ``execution_id``,
#: attributes of the spider) are the launcher's to set.
ARGS = frozenset({"base_url"})


def launch_request(data: Any, *, origin: str, launch_key: str | None = None,
                   params: Mapping[str, Any] | None = None) -> LaunchRequest:
    """A :class:`LaunchRequest` from a decoded message; :class:`LaunchRejectedError` if malformed."""
    if not isinstance(data, dict):
        raise LaunchRejectedError("the launch message must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise LaunchRejectedError(f"unknown field(s) {', '.join(map(repr, unknown))}; expected: {', '.join(sorted(FIELDS))}")
    for name in ("workflow", "document", "execution_id"):
        if name in data and not isinstance(data[name], str):
            raise LaunchRejectedError(f"{name!r} must be a string")
    if ("workflow" in data) == ("document" in data):
        raise LaunchRejectedError("give either 'workflow' (a registered name) or 'document' (the workflow itself)")
    args = data.get("args", {})
    if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
        raise LaunchRejectedError("'args' must be an object of strings")
    bad = sorted(set(args) - ARGS)
    if bad:
        raise LaunchRejectedError(f"argument(s) {', '.join(map(repr, bad))} may not be set; allowed: {', '.join(sorted(ARGS))}")
    return LaunchRequest(
        document=data.get("document"), workflow=data.get("workflow"), base_url=args.get("base_url"),
        execution_id=data.get("execution_id"), launch_key=launch_key, origin=origin,
        params=dict(params or {}),
    )


def pubsub_request(data: bytes, message_id: str, *, origin: str, subscription: str = "") -> LaunchRequest:
    """The launch a Pub/Sub message asks for; idempotent by its message id
    (or by the ``execution_id`` it names)."""
    try:
        decoded = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested past Python's stack
        raise LaunchRejectedError(f"the message data is not JSON: {exc}") from None
    params = {"message_id": message_id}
    if subscription:
        params["subscription"] = subscription
    request = launch_request(decoded, origin=origin, params=params)
    if request.execution_id is None:
        # Message ids are unique per topic: a push and a pull subscription of
        # one topic do not both run the message.
        request = replace(request, launch_key=f"pubsub:{message_id}")
    return request

