"""Validate a workflow's ``render`` block and turn it into plain request meta.

The JSON Schema checks shapes and ranges; this module checks what the schema
cannot (selectors compile, and select elements) and normalises the block into
the plain dict that travels in ``request.meta["wfcrawl_render"]``: only the keys
the document gives, with selectors rewritten as Playwright selector strings
(``css=...`` / ``xpath=...``). Defaults are applied at download time from the
settings, which keeps the meta small and lets settings change them.

No Scrapy or Playwright imports: ``wfcrawl validate`` uses this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import cssselect

from wfcrawl.workflow.selectors import SelectionError, compile_selection
from wfcrawl.workflow.source import DocPath

#: ``error(path, message, key=False)`` records a located problem.
ErrorSink = Callable[..., None]

#: Keys copied into the meta unchanged (their values are validated by the schema).
_PLAIN_KEYS = ("wait_until", "timeout", "idle", "scroll", "html", "distinct")


def browser_selector(spec: Any, path: DocPath, error: ErrorSink) -> str | None:
    """A ``render_selector`` value as a Playwright selector, or None (error recorded).

    A string is CSS; ``{css: ...}`` or ``{xpath: ...}`` name the kind. CSS is
    checked with the same translator the extract nodes use, and must select
    elements: parsel's ``::text`` / ``::attr()`` mean nothing to a browser.
    """
    if isinstance(spec, str):
        kind, expression, at = "css", spec, path
    else:
        kind, expression = next(iter(spec.items()))
        at = (*path, kind)
    try:
        compile_selection(kind, expression)
        if kind == "css":
            if ":contains(" in expression:
                raise SelectionError(
                    f"{expression!r}: :contains() is a cssselect extension that browsers do not "
                    "know; use XPath (contains(., '...'))"
                )
            for selector in cssselect.parse(expression):
                if selector.pseudo_element is not None:
                    raise SelectionError(
                        f"render selectors select elements; {expression!r} has the "
                        f"pseudo-element ::{_pseudo_name(selector.pseudo_element)}"
                    )
    except SelectionError as exc:
        error(at, str(exc))
        return None
    return f"{kind}={expression}"


def _pseudo_name(pseudo: Any) -> str:
    return pseudo if isinstance(pseudo, str) else f"{pseudo.name}()"


def compile_render(spec: Mapping[str, Any], path: DocPath, error: ErrorSink) -> dict[str, Any] | None:
    """The plain-data form of a schema-valid render block (None when it has errors)."""
    out: dict[str, Any] = {k: spec[k] for k in _PLAIN_KEYS if k in spec}
    ok = True
    if "wait_for" in spec:
        selector = browser_selector(spec["wait_for"], (*path, "wait_for"), error)
        ok = ok and selector is not None
        out["wait_for"] = selector
    if "click" in spec:
        click = dict(spec["click"])
        selector = browser_selector(click["selector"], (*path, "click", "selector"), error)
        ok = ok and selector is not None
        click["selector"] = selector
        out["click"] = click
    if "screenshot" in spec:
        shot = spec["screenshot"]
        if isinstance(shot, dict):
            out["screenshot"] = {"full_page": bool(shot.get("full_page", False))}
        elif shot:
            out["screenshot"] = {"full_page": False}
    return out if ok else None


def render_blocks(plan: Any) -> Iterator[Mapping[str, Any]]:
    """Every render block of a compiled plan (phases, then extract_links nodes)."""
    for phase in plan.phases.values():
        if getattr(phase, "render", None) is not None:
            yield phase.render
        for node in phase.nodes:
            if getattr(node, "render", None) is not None:
                yield node.render


def plan_renders(plan: Any) -> bool:
    """Whether any request of this plan is fetched in a browser."""
    return next(render_blocks(plan), None) is not None
