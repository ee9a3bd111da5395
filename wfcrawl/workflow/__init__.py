"""Workflow documents: load, validate and compile into a :class:`Plan`.

No Scrapy imports here: ``wfcrawl validate``, the API and the launchers use
this package without a crawler.
"""

from __future__ import annotations

from pathlib import Path

from wfcrawl.exceptions import Problem, WorkflowError
from wfcrawl.workflow.compile import compile_source
from wfcrawl.workflow.nodes import ScriptContext
from wfcrawl.workflow.page import Item, Link, Value
from wfcrawl.workflow.plan import Plan
from wfcrawl.workflow.prune import prune
from wfcrawl.workflow.source import Source, load_source, parse_text
from wfcrawl.workflow.validate import schema, schema_check

__all__ = [
    "Item", "Link", "Plan", "ScriptContext", "Value", "check_source", "load_plan",
    "plan_from_source", "schema",
]


def check_source(
    source: Source, *, base_url: str | None = None, script_modules: tuple[str, ...] | None = None
) -> tuple[Plan | None, list[Problem]]:
    """Validate and compile; returns (plan, problems): every problem, schema and semantic.

    With schema problems, the semantic checks run on the rest of the document
    (:mod:`wfcrawl.workflow.prune`) and no plan is returned.
    """
    problems, paths = schema_check(source)
    problems = sorted(set(problems))
    if not problems:
        return compile_source(source, base_url=base_url, script_modules=script_modules)
    # The smallest parts first (a refused entry of a node's mapping); if the compiler
    # cannot take the node without it, the node (field, transition) as a whole.
    for fine in (True, False):
        pruned = prune(source, paths, fine=fine)
        if pruned is None:
            break
        try:
            _, semantic = compile_source(pruned, base_url=base_url, script_modules=script_modules)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            continue  # what the schema refused still reached the compiler
        return None, sorted(set(problems) | (set(semantic) - pruned.consequences))
    return None, problems


def plan_from_source(
    source: Source, *, base_url: str | None = None, script_modules: tuple[str, ...] | None = None
) -> Plan:
    plan, problems = check_source(source, base_url=base_url, script_modules=script_modules)
    if plan is None:
        raise WorkflowError(problems)
    return plan


def load_plan(
    path: str | Path, *, base_url: str | None = None, script_modules: tuple[str, ...] | None = None
) -> Plan:
    """Load, validate and compile a workflow file; raises :class:`WorkflowError`."""
    return plan_from_source(load_source(path), base_url=base_url, script_modules=script_modules)


def load_text(text: str, name: str = "<workflow>", **kwargs: object) -> Plan:
    """Like :func:`load_plan` for a document held in memory (API, Pub/Sub)."""
    return plan_from_source(parse_text(text, name), **kwargs)  # type: ignore[arg-type]
