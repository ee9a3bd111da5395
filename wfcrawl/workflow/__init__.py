"""Workflow documents: load, validate and compile into a :class:`Plan`.

No Scrapy imports here: ``wfcrawl validate``, the API and the launchers use
this package without a crawler.
"""

from __future__ import annotations

from pathlib import Path

from wfcrawl.exceptions import Problem, WorkflowError
from wfcrawl.workflow.compile import compile_source
from wfcrawl.workflow.plan import Item, Link, Plan, ScriptContext, Value
from wfcrawl.workflow.source import Source, load_source, parse_text
from wfcrawl.workflow.validate import schema, schema_problems

__all__ = [
    "Item", "Link", "Plan", "ScriptContext", "Value", "check_source", "load_plan",
    "plan_from_source", "schema",
]


def check_source(
    source: Source, *, base_url: str | None = None, script_modules: tuple[str, ...] | None = None
) -> tuple[Plan | None, list[Problem]]:
    """Validate (schema, then semantics) and compile; returns (plan, problems)."""
    problems = schema_problems(source)
    if problems:
        return None, problems
    return compile_source(source, base_url=base_url, script_modules=script_modules)


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
